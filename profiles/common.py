"""Building blocks every part of a device profile shares: strict models and rule errors.

Why one module: the transport, point, JSON and CB-100 parts of a profile live in their own
modules, and each must forbid unknown keys, be immutable and report a broken cross-field
rule the same way (``rule_error(path, problem)``), so that the loader can print every
mistake as ``file: field.path: problem`` whichever part it sits in.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from contract import Lane

LaneName = Literal["alarm", "normal", "telemetry"]
Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
#: A dotted path into a JSON object: ``person_id``, ``data.similarity`` (keys only).
JsonPath = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", min_length=1, max_length=200)
]

#: Error type of cross-field rule violations; ``ctx["path"]`` is relative to the error loc.
RULE_ERROR = "profile_rule"

#: Tags of the profile's discriminated unions. Pydantic puts the chosen tag into an error's
#: location (``points[0].modbus.table``); the loader drops it so authors read
#: ``points[0].table``.
UNION_TAGS = frozenset(
    {"serial", "modbus-rtu", "modbus-tcp", "mqtt", "cb100", "json", "modbus", "dlt645"}
)


def rule_error(path: str, problem: str) -> PydanticCustomError:
    """A cross-field rule failed at ``path`` (relative to the model that raises it)."""
    return PydanticCustomError(RULE_ERROR, "{problem}", {"path": path, "problem": problem})


def lane_of(name: LaneName) -> Lane:
    return Lane[name.upper()]


def check_limits(
    low: float | None, high: float | None, path: str = "min"
) -> PydanticCustomError | None:
    """The error for limits that are not finite or where min > max, else None."""
    for label, value in (("min", low), ("max", high)):
        if value is not None and not math.isfinite(value):
            return rule_error(label, f"{label} must be a finite number, not {value}")
    if low is not None and high is not None and low > high:
        return rule_error(path, f"min {low} is greater than max {high}")
    return None


def first_duplicate(values: list[str]) -> tuple[int, int] | None:
    """(index, index of its first occurrence) of the first repeated value, else None."""
    first: dict[str, int] = {}
    for index, value in enumerate(values):
        if value in first:
            return index, first[value]
        first[value] = index
    return None


#: How long a hub command may take to reach its device before it is ``expired`` (issue
#: #11); a command's ``deadline_s`` in its profile overrides it.
DEFAULT_COMMAND_DEADLINE_S = 60.0
#: A command's ``deadline_s``: seconds from when the hub accepts it, 0.5 s to a day.
DeadlineSeconds = Annotated[float, Field(ge=0.5, le=86_400)]


class Strict(BaseModel):
    """Unknown keys are errors (a typo never becomes a silently ignored setting); frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
