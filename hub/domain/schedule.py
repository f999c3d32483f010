"""Which weekly shifts may not coexist, with messages an operator can act on.

The duty roster decides who is called first when a resident presses the button, so a
roster must be unambiguous. Two shifts clash when they overlap in time (on the weekly
circle, see :func:`hub.domain.duty.shifts_overlap`) and

* are in the same grid with the same role: two primary workers at once leaves the first
  call to chance, and two backups the second one; or
* belong to the same worker in the same grid (or both at a desk): a worker cannot be the
  primary and the backup of one grid, nor sit two desk shifts at once.

One worker may cover two different grids at the same time (grids share workers when a
colleague is away), so that is allowed.

Pure: callers load the roster and pass it in; ids are ``None`` for shifts not stored yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

from hub.domain.duty import Shift, shifts_overlap

WEEKDAYS_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
WEEKDAYS_EN = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_ROLE_ZH = {"primary": "主班", "backup": "备班"}


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """A shift with its stored id (``None``: not stored yet) and its place in a request."""

    shift_id: int | None
    shift: Shift
    label: str = ""  # how the request names it when unstored, e.g. "shifts[2]"


@dataclass(frozen=True, slots=True)
class Clash:
    """Two shifts that may not coexist, and why, in English and Chinese."""

    first: RosterEntry
    second: RosterEntry

    @property
    def message(self) -> str:
        a, b = self.first, self.second
        return (
            f"{_name_en(a)} ({_describe_en(a.shift)}) overlaps {_name_en(b)} "
            f"({_describe_en(b.shift)}) / "
            f"{_name_zh(a)}（{_describe_zh(a.shift)}）与{_name_zh(b)}"
            f"（{_describe_zh(b.shift)}）时间重叠"
        )


def clash(a: Shift, b: Shift) -> bool:
    """Whether the two shifts may not both be in the roster (see the module docstring)."""
    if a.grid_id != b.grid_id:
        return False
    same_slot = a.grid_id is not None and a.role == b.role
    if not (same_slot or a.worker_id == b.worker_id):
        return False
    return shifts_overlap(a, b)


def clashes_with(candidate: RosterEntry, roster: Iterable[RosterEntry]) -> list[Clash]:
    """Clashes of ``candidate`` with the others (an entry with the same id is itself)."""
    return [
        Clash(candidate, other)
        for other in roster
        if not (candidate.shift_id is not None and other.shift_id == candidate.shift_id)
        and clash(candidate.shift, other.shift)
    ]


def roster_clashes(roster: Sequence[RosterEntry]) -> list[Clash]:
    """Every clashing pair within ``roster``, in roster order."""
    return [Clash(a, b) for a, b in combinations(roster, 2) if clash(a.shift, b.shift)]


def _name_en(entry: RosterEntry) -> str:
    if entry.shift_id is not None:
        return f"shift {entry.shift_id}"
    return entry.label or "the new shift"


def _name_zh(entry: RosterEntry) -> str:
    if entry.shift_id is not None:
        return f"班次 {entry.shift_id}"
    return entry.label or "新班次"


def _hours(shift: Shift) -> str:
    whole_day = " (24h)" if shift.start == shift.end else ""
    return f"{shift.start:%H:%M}-{shift.end:%H:%M}{whole_day}"


def _describe_en(shift: Shift) -> str:
    where = f"grid {shift.grid_id}" if shift.grid_id is not None else "desk"
    day = WEEKDAYS_EN[shift.weekday % 7]
    return f"{day} {_hours(shift)}, {where}, {shift.role}, worker {shift.worker_id}"


def _describe_zh(shift: Shift) -> str:
    where = f"网格 {shift.grid_id}" if shift.grid_id is not None else "坐席"
    role = _ROLE_ZH.get(shift.role, shift.role)
    day = WEEKDAYS_ZH[shift.weekday % 7]
    return f"{day} {_hours(shift)}，{where}，{role}，工作人员 {shift.worker_id}"
