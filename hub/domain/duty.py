"""Who is on duty: a weekly roster in local time, with one-off overrides in UTC.

Grid workers think in wall-clock shifts ("Monday 20:00 to Tuesday 08:00"), so weekly shifts
are stored in the community's local time and matched against ``now`` converted to that
zone; a shift whose end is not after its start crosses midnight into the next day, and a
shift whose start equals its end lasts 24 hours. Overrides (sick leave cover, holidays)
are exact instants in UTC; while any override for a grid and role is in force it replaces
the weekly schedule of that role in that grid, so cover never doubles up with the absentee.

Pure functions: the service loads the rows and passes ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, tzinfo
from itertools import combinations
from typing import Literal

Role = Literal["primary", "backup"]

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY = 24 * 60 * 60  # seconds
_WEEK = 7 * _DAY


@dataclass(frozen=True, slots=True)
class Shift:
    """A weekly shift. ``weekday`` follows :meth:`datetime.weekday` (0 = Monday)."""

    worker_id: int
    grid_id: int | None  # None: not tied to a grid (desks of the community, street, hotline)
    weekday: int
    start: time  # local wall-clock time
    end: time  # end <= start: ends on the next day; end == start: a 24-hour shift
    role: Role = "primary"

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def covers(self, local: datetime) -> bool:
        """Whether this shift is in force at the (naive or aware) local wall-clock time."""
        clock = local.time()  # naive wall-clock time, comparable with start and end
        today = local.weekday()
        if (
            today == self.weekday
            and clock >= self.start
            and (self.crosses_midnight or clock < self.end)
        ):
            return True
        yesterday = (today - 1) % 7
        return yesterday == self.weekday and self.crosses_midnight and clock < self.end

    def describe(self) -> str:
        grid = f"grid {self.grid_id}" if self.grid_id is not None else "no grid"
        day = WEEKDAY_NAMES[self.weekday] if 0 <= self.weekday < 7 else f"day {self.weekday}"
        return f"{day} {self.start:%H:%M}-{self.end:%H:%M} ({grid}, {self.role})"


@dataclass(frozen=True, slots=True)
class Override:
    """A one-off assignment between two UTC instants (start inclusive, end exclusive)."""

    worker_id: int
    grid_id: int | None
    start: datetime
    end: datetime
    role: Role = "primary"

    def covers(self, now_utc: datetime) -> bool:
        return self.start <= now_utc < self.end


#: Why a shift may not end at 23:59 (the API and the import both refuse it).
LAST_MINUTE = (
    "a shift that ends at 23:59 leaves the last minute of every day uncovered; write 00:00 "
    "(midnight: end <= start crosses midnight), and start == end (00:00-00:00) for 24 hours / "
    "23:59 结束会漏掉每晚最后一分钟；请写 00:00（结束时间不晚于开始时间即跨过午夜），"
    "全天 24 小时请写 00:00-00:00"
)


def leaves_last_minute(clock: time) -> bool:
    """A time in the last minute of the day: as a shift's end, almost surely a mistake."""
    return clock >= time(23, 59)


def on_duty(
    shifts: Iterable[Shift],
    overrides: Iterable[Override],
    grid_id: int | None,
    role: Role,
    now_utc: datetime,
    tz: tzinfo,
) -> list[int]:
    """Worker ids on duty for this grid and role at ``now_utc``, in roster order, no repeats."""
    _require_aware(now_utc)
    covering = [
        o.worker_id
        for o in overrides
        if o.grid_id == grid_id and o.role == role and o.covers(now_utc)
    ]
    if covering:
        return list(dict.fromkeys(covering))
    local = now_utc.astimezone(tz)
    weekly = [
        s.worker_id for s in shifts if s.grid_id == grid_id and s.role == role and s.covers(local)
    ]
    return list(dict.fromkeys(weekly))


def is_working(
    shifts: Iterable[Shift],
    overrides: Iterable[Override],
    worker_id: int,
    now_utc: datetime,
    tz: tzinfo,
) -> bool:
    """Whether the worker has any shift or override (any grid, any role) at ``now_utc``."""
    _require_aware(now_utc)
    if any(o.worker_id == worker_id and o.covers(now_utc) for o in overrides):
        return True
    local = now_utc.astimezone(tz)
    return any(s.worker_id == worker_id and s.covers(local) for s in shifts)


def validate_shifts(shifts: Sequence[Shift]) -> list[str]:
    """Readable problems with a roster: bad weekdays and overlapping shifts of one worker.

    Overlap is checked on the weekly circle, so a Sunday night shift running into Monday
    morning collides with a Monday morning shift.
    """
    problems = [
        f"worker {s.worker_id}: shift {s.describe()} has weekday {s.weekday}, expected 0..6"
        for s in shifts
        if not 0 <= s.weekday <= 6
    ]
    valid = [s for s in shifts if 0 <= s.weekday <= 6]
    for a, b in combinations(valid, 2):
        if a.worker_id == b.worker_id and _overlap(_interval(a), _interval(b)):
            problems.append(
                f"worker {a.worker_id}: shift {a.describe()} overlaps shift {b.describe()}"
            )
    return problems


def shifts_overlap(a: Shift, b: Shift) -> bool:
    """Whether two weekly shifts share an instant, on the weekly circle (Sun night → Mon)."""
    return _overlap(_interval(a), _interval(b))


def _interval(shift: Shift) -> tuple[int, int]:
    """The shift as [start, end) seconds from Monday 00:00; end may pass the week's end."""
    start = shift.weekday * _DAY + _seconds(shift.start)
    length = _seconds(shift.end) - _seconds(shift.start)
    if length <= 0:
        length += _DAY
    return start, start + length


def _seconds(clock: time) -> int:
    return clock.hour * 3600 + clock.minute * 60 + clock.second


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return any(
        a[0] + shift_a < b[1] + shift_b and b[0] + shift_b < a[1] + shift_a
        for shift_a, shift_b in ((0, 0), (_WEEK, 0), (0, _WEEK))
    )


def _require_aware(now_utc: datetime) -> None:
    if now_utc.tzinfo is None or now_utc.utcoffset() is None:
        raise ValueError("now_utc must be timezone-aware")
