"""What an act on the hub leaves to do once its transaction has committed.

Why a value type in the domain: the case service, every device-event handler, ingest, the
escalation timer and the API all return or consume it, so it lives below all of them (as
``edge/sink.py`` does on the edge); it holds values only and does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contract import Command, Event
from hub.domain.notification import Notification


@dataclass(slots=True)
class Effects:
    """What to do after commit: notify these workers, publish these device commands.

    ``refused``: events a device-event handler could not act on, each with the reason (an
    SOS from a button bound to no household); ingest quarantines and marks them in the same
    transaction, as it does events it could not place.
    """

    notifications: list[Notification] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    refused: list[tuple[Event, str]] = field(default_factory=list)

    def extend(self, other: Effects) -> None:
        self.notifications.extend(other.notifications)
        self.commands.extend(other.commands)
        self.refused.extend(other.refused)
