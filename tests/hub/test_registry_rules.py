"""Pure registry rules: which shifts clash, and what is wrong with a device entry."""

from __future__ import annotations

from datetime import time

import pytest

from hub.domain.device_rows import Placement, RegistryView, check_placement
from hub.domain.duty import Shift
from hub.domain.schedule import RosterEntry, clash, clashes_with, roster_clashes


def shift(
    worker: int = 1,
    grid: int | None = 1,
    day: int = 0,
    start: str = "08:00",
    end: str = "20:00",
    role: str = "primary",
) -> Shift:
    return Shift(worker, grid, day, time.fromisoformat(start), time.fromisoformat(end), role)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b", "clashes"),
    [
        # same grid, same role, overlapping: two primaries at once
        (shift(worker=1), shift(worker=2, start="19:00", end="23:00"), True),
        # touching is not overlapping
        (shift(worker=1), shift(worker=2, start="20:00", end="08:00"), False),
        # same grid, other role: a primary and a backup at the same time is the point
        (shift(worker=1), shift(worker=2, role="backup"), False),
        # the same worker as primary and backup of one grid at once
        (shift(worker=1), shift(worker=1, role="backup"), True),
        # one worker covering two grids at once is allowed
        (shift(worker=1, grid=1), shift(worker=1, grid=2), False),
        # Sunday night into Monday morning, on the weekly circle
        (
            shift(worker=1, day=6, start="22:00", end="06:00"),
            shift(worker=2, day=0, start="05:00", end="09:00"),
            True,
        ),
        # a 24-hour shift covers the whole day
        (shift(worker=1, start="00:00", end="00:00"), shift(worker=2, start="12:00"), True),
        # desk shifts: different workers may overlap, the same worker may not
        (shift(worker=4, grid=None), shift(worker=5, grid=None), False),
        (shift(worker=4, grid=None), shift(worker=4, grid=None, start="10:00"), True),
        # different days do not overlap
        (shift(worker=1, day=0), shift(worker=2, day=1), False),
    ],
)
def test_clash_rules(a: Shift, b: Shift, clashes: bool) -> None:
    assert clash(a, b) is clashes
    assert clash(b, a) is clashes


def test_clash_message_names_both_shifts_in_both_languages() -> None:
    stored = RosterEntry(7, shift(worker=2, start="18:00", end="02:00"))
    new = RosterEntry(None, shift(worker=3))
    [found] = clashes_with(new, [stored])
    assert found.message == (
        "the new shift (Mon 08:00-20:00, grid 1, primary, worker 3) overlaps shift 7 "
        "(Mon 18:00-02:00, grid 1, primary, worker 2) / "
        "新班次（周一 08:00-20:00，网格 1，主班，工作人员 3）与班次 7"
        "（周一 18:00-02:00，网格 1，主班，工作人员 2）时间重叠"
    )


def test_an_updated_shift_does_not_clash_with_itself() -> None:
    stored = RosterEntry(7, shift())
    assert clashes_with(RosterEntry(7, shift(start="09:00")), [stored]) == []


def test_roster_clashes_lists_every_pair_with_request_labels() -> None:
    roster = [
        RosterEntry(None, shift(worker=1), "shifts[0]"),
        RosterEntry(None, shift(worker=2, day=1), "shifts[1]"),
        RosterEntry(None, shift(worker=3, start="10:00", end="11:00"), "shifts[2]"),
    ]
    [found] = roster_clashes(roster)
    assert (found.first.label, found.second.label) == ("shifts[0]", "shifts[2]")
    assert "shifts[0] (Mon 08:00-20:00" in found.message


# --- device entries -------------------------------------------------------------------

VIEW = RegistryView(
    profiles=frozenset({"cb-100"}),
    grids=frozenset({1, 2}),
    household_grids={10: 1},
    slots={("edge-1", "/dev/ttyUSB0", "77626"): "cb100-77626"},
)


def test_a_household_device_takes_the_household_grid() -> None:
    stored_grid, problems = check_placement(Placement("d1", "cb-100", household_id=10), VIEW)
    assert (stored_grid, problems) == (None, [])


def test_a_device_outside_households_keeps_its_grid() -> None:
    stored_grid, problems = check_placement(Placement("gate-1", "cb-100", grid_id=2), VIEW)
    assert (stored_grid, problems) == (2, [])


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        (Placement("d", "cb-200"), "profile", "unknown device profile 'cb-200' (known: cb-100)"),
        (Placement("d", "cb-100", household_id=99), "household_id", "household 99 does not exist"),
        (
            Placement("d", "cb-100", grid_id=99),
            "grid_id",
            "grid 99 does not exist / 网格 99 不存在",
        ),
        (
            Placement("d", "cb-100", household_id=10, grid_id=2),
            "grid_id",
            "household 10 is in grid 1, not in grid 2",
        ),
        (Placement("d", "cb-100", bus="/dev/ttyUSB0"), "edge_id", "a bus needs its edge_id"),
        (Placement("d", "cb-100", edge_id="e", address="5"), "bus", "an address needs its bus"),
        (
            Placement("d", "cb-100", edge_id="edge-1", bus="/dev/ttyUSB0", address="77626"),
            "address",
            "address 77626 on bus /dev/ttyUSB0 of edge edge-1 is taken by device cb100-77626",
        ),
    ],
)
def test_entry_problems_name_the_field(entry: Placement, field: str, message: str) -> None:
    _, problems = check_placement(entry, VIEW)
    assert [p.field for p in problems] == [field]
    assert message in problems[0].message
    assert " / " in problems[0].message  # English / Chinese


def test_a_device_keeps_its_own_slot_and_an_unchanged_profile_is_not_rechecked() -> None:
    entry = Placement("cb100-77626", "cb100", edge_id="edge-1", bus="/dev/ttyUSB0", address="77626")
    assert check_placement(entry, VIEW, check_profile=False) == (None, [])
