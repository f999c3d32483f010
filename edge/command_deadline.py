"""When a hub command stops being worth executing, as the edge sees it (issue #11).

Why two clocks: an ``open_door`` that waited in the broker while the edge was down must
not open the door minutes later, and the edge cannot tell how long a message waited
without comparing clocks. So a command carries both an absolute ``deadline`` (hub clock)
and ``ttl_s`` (seconds left when the hub published it):

* ``ttl_s`` is measured from receipt on the edge's monotonic clock: it bounds how long the
  edge itself may hold a command (bus queue, a slow device), whatever the wall clocks say;
* the ``deadline`` is compared with the edge's wall clock plus ``tolerance_s`` (edge config
  ``command_clock_tolerance_s``, 2 s): it catches a command delivered late by the broker.

The command expires at the earlier of the two. Skew: an edge clock *ahead* of the hub's by
more than the tolerance makes commands expire early (refused, never late: the safe side;
the edge logs the apparent lateness); an edge clock *behind* by S lets a command that waited
in the broker run up to S - tolerance late. Edges keep NTP time; docs/security.md says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

#: Edge default for ``command_clock_tolerance_s``.
DEFAULT_TOLERANCE_S = 2.0


@dataclass(frozen=True, slots=True)
class CommandDeadline:
    """A command's deadline on the edge's monotonic clock."""

    expires_at: float  # monotonic seconds
    why: str  # what set it, for the ``expired`` detail
    clock: Callable[[], float] = time.monotonic

    def remaining_s(self) -> float:
        return self.expires_at - self.clock()

    def expired(self) -> bool:
        return self.remaining_s() <= 0

    def detail(self, stage: str) -> str:
        """The ``expired`` result's text: where the command was stopped, and why."""
        late = -self.remaining_s()
        return f"expired {stage}, {late:.1f} s past its deadline ({self.why}); not executed"


def on_receipt(
    deadline: datetime,
    ttl_s: float,
    *,
    received_mono: float,
    received_wall: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    clock: Callable[[], float] = time.monotonic,
) -> CommandDeadline:
    """The deadline of a command received at ``received_mono`` / ``received_wall``."""
    by_clock = deadline.timestamp() + tolerance_s - received_wall
    if by_clock < ttl_s:
        why = f"deadline {deadline.isoformat(timespec='milliseconds')} by the edge's clock"
        return CommandDeadline(received_mono + by_clock, why, clock)
    return CommandDeadline(received_mono + ttl_s, f"time to live {ttl_s:g} s from receipt", clock)
