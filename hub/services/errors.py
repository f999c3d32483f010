"""Errors raised by the hub's services, for the API and ingest layers to translate.

::

    ServiceError
     ├── NotFound               no such case, household, worker or task   (API: 404)
     ├── Forbidden              outside the caller's grids or rights      (API: 403)
     ├── InvalidInput           values that name nothing or break a rule  (API: 422)
     ├── InvalidAct             the act is not allowed now                (API: 409)
     │    ├── InvalidTransition the case's state machine refuses the step
     │    ├── Conflict          the record changed meanwhile; reload, retry
     │    └── AlreadyExists     a record with that id or natural key exists
     └── UnknownDevice          an event the hub cannot place            (ingest: quarantine)

Messages are written for the operator who reads them in an API error body or in the
quarantine list, so they name the case, device or worker concerned. ``on_event`` raises
only :class:`UnknownDevice` for bad input; odd data in an event from a known device is
handled leniently (a resident's request is never dropped for a garbled field).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ServiceError(Exception):
    """Base of every error a hub service raises on purpose."""


class NotFound(ServiceError):
    """The case, household, worker or task named does not exist."""


class InvalidAct(ServiceError):
    """The requested act is not allowed in the current state of the record."""


class InvalidTransition(InvalidAct):
    """The case cannot make this step from its current state."""


class Conflict(InvalidAct):
    """Another transaction changed the record between our read and our write."""


class Forbidden(ServiceError):
    """The caller may not see or change this record (e.g. a household of another grid)."""


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One bad value: the field it is in, a readable (bilingual) message, the CSV row if any."""

    field: str
    message: str
    row: int | None = None


class InvalidInput(ServiceError):
    """Values that are well-formed but wrong: an unknown grid, overlapping shifts, …"""

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = tuple(problems)


class AlreadyExists(InvalidAct):
    """A record with this id or natural key (phone, address in a grid, …) already exists."""


class UnknownDevice(ServiceError):
    """The device is not registered, or cannot be placed in a household for this event."""

    def __init__(self, device_id: str, reason: str) -> None:
        super().__init__(reason)
        self.device_id = device_id
        self.reason = reason
