"""Duty roster: weekly local-time shifts (also across midnight and the week's end),
UTC overrides that replace the weekly schedule, and overlap validation."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from hub.domain.duty import Override, Role, Shift, is_working, on_duty, validate_shifts

SHANGHAI = ZoneInfo("Asia/Shanghai")
MON, TUE, WED, SUN = 0, 1, 2, 6


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """UTC instant of a local Shanghai wall-clock time in the week of Monday 2025-03-03."""
    wall = datetime(2025, 3, 3 + day, hour, minute, tzinfo=SHANGHAI)
    return wall.astimezone(UTC)


def duty(
    shifts: list[Shift],
    at: datetime,
    overrides: list[Override] | None = None,
    grid: int | None = 1,
    role: Role = "primary",
) -> list[int]:
    return on_duty(shifts, overrides or [], grid, role, at, SHANGHAI)


DAY = Shift(10, 1, MON, time(8), time(17))
NIGHT = Shift(11, 1, MON, time(20), time(8))


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (local(MON, 8), [10]),  # start is inclusive
        (local(MON, 16, 59), [10]),
        (local(MON, 17), []),  # end is exclusive
        (local(MON, 7, 59), []),
        (local(TUE, 9), []),  # other weekday
        (local(MON, 20), [11]),
        (local(MON, 23, 30), [11]),
        (local(TUE, 0), [11]),  # across midnight
        (local(TUE, 7, 59), [11]),
        (local(TUE, 8), []),
        (local(MON, 3), []),  # Monday early morning belongs to a Sunday night shift
    ],
)
def test_day_and_night_shifts(at: datetime, expected: list[int]) -> None:
    assert duty([DAY, NIGHT], at) == expected


def test_sunday_night_shift_runs_into_monday_morning() -> None:
    sunday_night = Shift(12, 1, SUN, time(22), time(6))
    assert duty([sunday_night], local(MON, 5, 59)) == [12]
    assert duty([sunday_night], local(MON, 6)) == []
    assert duty([sunday_night], local(SUN, 22)) == [12]


def test_start_equal_to_end_is_a_whole_day() -> None:
    whole_tuesday = Shift(13, 1, TUE, time(0), time(0))
    assert duty([whole_tuesday], local(TUE, 0)) == [13]
    assert duty([whole_tuesday], local(TUE, 23, 59)) == [13]
    assert duty([whole_tuesday], local(WED, 0)) == []
    assert duty([whole_tuesday], local(MON, 23, 59)) == []


def test_the_week_is_read_in_local_time_not_utc() -> None:
    # 07:30 on Monday in Shanghai is still Sunday 23:30 in UTC.
    at = datetime(2025, 3, 2, 23, 30, tzinfo=UTC)
    assert at.weekday() == SUN
    assert duty([Shift(14, 1, MON, time(7), time(9))], at) == [14]


def test_shanghai_has_no_daylight_saving_so_shifts_map_to_the_same_utc_hour() -> None:
    shift = Shift(15, 1, MON, time(8), time(9))
    winter = datetime(2025, 1, 6, 0, 0, tzinfo=UTC)  # a Monday
    summer = datetime(2025, 7, 7, 0, 0, tzinfo=UTC)  # a Monday
    assert duty([shift], winter) == duty([shift], summer) == [15]
    assert duty([shift], summer - timedelta(minutes=1)) == []


def test_zones_with_daylight_saving_follow_the_wall_clock() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    shift = Shift(16, 1, MON, time(8), time(9))
    winter = datetime(2025, 1, 6, 7, 0, tzinfo=UTC)  # 08:00 CET
    summer = datetime(2025, 7, 7, 6, 0, tzinfo=UTC)  # 08:00 CEST
    assert on_duty([shift], [], 1, "primary", winter, berlin) == [16]
    assert on_duty([shift], [], 1, "primary", summer, berlin) == [16]


def test_grid_and_role_filter_and_order_without_repeats() -> None:
    shifts = [
        Shift(20, 1, MON, time(8), time(17)),
        Shift(21, 1, MON, time(8), time(17), role="backup"),
        Shift(22, 2, MON, time(8), time(17)),
        Shift(23, 1, MON, time(12), time(13)),
        Shift(20, 1, MON, time(9), time(10)),
    ]
    at = local(MON, 9, 30)
    assert duty(shifts, at) == [20]
    assert duty(shifts, local(MON, 12, 30)) == [20, 23]
    assert duty(shifts, at, role="backup") == [21]
    assert duty(shifts, at, grid=2) == [22]
    assert duty(shifts, at, grid=None) == []


def test_desk_shifts_without_grid_match_grid_none() -> None:
    desk = Shift(30, None, MON, time(0), time(0))
    assert duty([desk], local(MON, 3), grid=None) == [30]
    assert duty([desk], local(MON, 3), grid=1) == []


def test_override_replaces_the_weekly_schedule_of_that_role_in_its_window() -> None:
    cover = Override(40, 1, local(MON, 10), local(MON, 12), "primary")
    shifts = [DAY, Shift(21, 1, MON, time(8), time(17), role="backup")]
    assert duty(shifts, local(MON, 9, 59), [cover]) == [10]
    assert duty(shifts, local(MON, 10), [cover]) == [40]  # start inclusive
    assert duty(shifts, local(MON, 11, 59), [cover]) == [40]
    assert duty(shifts, local(MON, 12), [cover]) == [10]  # end exclusive
    assert duty(shifts, local(MON, 11), [cover], role="backup") == [21], "other role untouched"
    assert duty(shifts, local(MON, 11), [cover], grid=2) == [], "other grid untouched"


def test_override_can_add_cover_where_no_weekly_shift_exists() -> None:
    cover = Override(41, 1, local(MON - 1, 22), local(MON, 2), "backup")  # Sunday 2 March
    assert duty([], local(MON, 1), [cover], role="backup") == [41]


def test_several_overrides_share_the_window() -> None:
    overrides = [
        Override(42, 1, local(MON, 10), local(MON, 12)),
        Override(43, 1, local(MON, 11), local(MON, 13)),
    ]
    assert duty([DAY], local(MON, 11, 30), overrides) == [42, 43]
    assert duty([DAY], local(MON, 12, 30), overrides) == [43]


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        on_duty([DAY], [], 1, "primary", datetime(2025, 3, 3, 9), SHANGHAI)  # noqa: DTZ001


def test_is_working_looks_at_any_grid_and_role() -> None:
    shifts = [
        Shift(50, None, MON, time(8), time(17)),
        Shift(51, 2, MON, time(20), time(8), "backup"),
    ]
    assert is_working(shifts, [], 50, local(MON, 9), SHANGHAI)
    assert not is_working(shifts, [], 50, local(MON, 18), SHANGHAI)
    assert is_working(shifts, [], 51, local(TUE, 1), SHANGHAI)
    cover = Override(50, None, local(MON, 18), local(MON, 19))
    assert is_working(shifts, [cover], 50, local(MON, 18), SHANGHAI)


def test_validate_accepts_back_to_back_shifts_and_other_workers() -> None:
    shifts = [
        Shift(60, 1, MON, time(8), time(16)),
        Shift(60, 1, MON, time(16), time(0)),  # ends at midnight
        Shift(60, 1, TUE, time(0), time(8)),
        Shift(61, 1, MON, time(8), time(16)),  # same time, another worker
    ]
    assert validate_shifts(shifts) == []


def test_validate_accepts_a_full_week_of_whole_days() -> None:
    assert validate_shifts([Shift(62, 1, d, time(0), time(0)) for d in range(7)]) == []


def test_validate_finds_overlap_on_the_same_day() -> None:
    problems = validate_shifts(
        [Shift(63, 1, MON, time(8), time(17)), Shift(63, 2, MON, time(16), time(20))]
    )
    assert problems == [
        "worker 63: shift Mon 08:00-17:00 (grid 1, primary) "
        "overlaps shift Mon 16:00-20:00 (grid 2, primary)"
    ]


def test_validate_finds_overlap_across_midnight_and_across_the_week_end() -> None:
    night = Shift(64, 1, MON, time(20), time(8))
    tuesday_morning = Shift(64, 1, TUE, time(7), time(12))
    sunday_night = Shift(64, 1, SUN, time(22), time(6))
    monday_dawn = Shift(64, 1, MON, time(5), time(7))
    problems = validate_shifts([night, tuesday_morning, sunday_night, monday_dawn])
    assert len(problems) == 2
    assert "Mon 20:00-08:00" in problems[0] and "Tue 07:00-12:00" in problems[0]
    assert "Sun 22:00-06:00" in problems[1] and "Mon 05:00-07:00" in problems[1]


def test_validate_reports_bad_weekdays() -> None:
    problems = validate_shifts([Shift(65, 1, 7, time(8), time(9))])
    assert problems == [
        "worker 65: shift day 7 08:00-09:00 (grid 1, primary) has weekday 7, expected 0..6"
    ]
