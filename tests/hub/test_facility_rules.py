"""The facility rules without a database: the night window, thresholds, overdue parcels,
and the settings' own checks."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from hub.domain.facility_rules import (
    FacilitySettings,
    ParcelWebhookSettings,
    is_zero_flow,
    judge_bin,
    leak_suspected,
    night_ends_at,
    night_of,
    number,
    overdue_cutoff,
    parcel_overdue,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    """An instant given as Shanghai wall-clock time, returned in UTC."""
    return datetime(y, mo, d, h, mi, tzinfo=SHANGHAI).astimezone(UTC)


# --- night window ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "night"),
    [
        (local(2025, 3, 4, 0, 59), None),
        (local(2025, 3, 4, 1, 0), date(2025, 3, 4)),  # start inclusive
        (local(2025, 3, 4, 4, 59), date(2025, 3, 4)),
        (local(2025, 3, 4, 5, 0), None),  # end exclusive
        (local(2025, 3, 4, 23, 30), None),
    ],
)
def test_default_window_inside_one_day(at: datetime, night: date | None) -> None:
    assert night_of(at, time(1), time(5), SHANGHAI) == night


@pytest.mark.parametrize(
    ("at", "night"),
    [
        (local(2025, 3, 3, 22, 59), None),
        (local(2025, 3, 3, 23, 0), date(2025, 3, 3)),
        (local(2025, 3, 3, 23, 59), date(2025, 3, 3)),
        (local(2025, 3, 4, 0, 0), date(2025, 3, 3)),  # after midnight: the same night
        (local(2025, 3, 4, 4, 59), date(2025, 3, 3)),
        (local(2025, 3, 4, 5, 0), None),
        (local(2025, 3, 4, 12, 0), None),
        (local(2025, 3, 4, 23, 10), date(2025, 3, 4)),  # the next night
    ],
)
def test_window_across_midnight_is_named_by_its_first_evening(
    at: datetime, night: date | None
) -> None:
    assert night_of(at, time(23), time(5), SHANGHAI) == night


def test_the_zone_decides_not_utc() -> None:
    # 18:30 UTC on 3 March is 02:30 on 4 March in Shanghai (UTC+8, no daylight saving).
    at = datetime(2025, 3, 3, 18, 30, tzinfo=UTC)
    assert night_of(at, time(1), time(5), SHANGHAI) == date(2025, 3, 4)
    assert night_of(at, time(1), time(5), UTC) is None


def test_shanghai_has_no_daylight_saving_so_every_night_is_four_hours() -> None:
    for month in range(1, 13):
        night = date(2025, month, 15)
        start = datetime.combine(night, time(1), tzinfo=SHANGHAI)
        end = night_ends_at(night, time(1), time(5), SHANGHAI)
        assert end - start == timedelta(hours=4)
        assert end.astimezone(UTC) == datetime(2025, month, 14, 21, 0, tzinfo=UTC)


def test_window_end_of_a_night_across_midnight_is_the_next_morning() -> None:
    end = night_ends_at(date(2025, 3, 3), time(23), time(5), SHANGHAI)
    assert end == datetime(2025, 3, 4, 5, 0, tzinfo=SHANGHAI)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        night_of(datetime(2025, 3, 4, 2, 0), time(1), time(5), SHANGHAI)  # noqa: DTZ001


# --- leak ------------------------------------------------------------------------------


def test_leak_needs_enough_readings_and_no_zero() -> None:
    assert leak_suspected(readings=3, zero_readings=0, min_readings=3)
    assert not leak_suspected(readings=2, zero_readings=0, min_readings=3)
    assert not leak_suspected(readings=40, zero_readings=1, min_readings=3)


def test_zero_flow_tolerance() -> None:
    assert is_zero_flow(0.0, 0.0)
    assert not is_zero_flow(0.001, 0.0)
    assert is_zero_flow(0.001, 0.002)


# --- bins ------------------------------------------------------------------------------


def test_bin_thresholds_are_inclusive_and_configurable() -> None:
    s = FacilitySettings()
    assert judge_bin(s, fill_pct=80, temperature_c=59.9, tilt_deg=29.9).full
    verdict = judge_bin(s, fill_pct=79.9, temperature_c=60, tilt_deg=-30)
    assert (verdict.full, verdict.hot, verdict.tipped) == (False, True, True)
    assert judge_bin(s, fill_pct=None, temperature_c=None, tilt_deg=None) == judge_bin(
        s, fill_pct=0, temperature_c=20, tilt_deg=0
    )
    strict = FacilitySettings(bin_full_pct=90, bin_hot_c=50, bin_tilt_deg=45)
    verdict = judge_bin(strict, fill_pct=85, temperature_c=55, tilt_deg=40)
    assert (verdict.full, verdict.hot, verdict.tipped) == (False, True, False)


def test_payload_numbers() -> None:
    assert number(3) == 3.0
    assert number(2.5) == 2.5
    for bad in (True, "3", None, float("nan"), float("inf"), [1]):
        assert number(bad) is None


# --- parcels ---------------------------------------------------------------------------


def test_parcel_overdue_after_48_hours_by_default() -> None:
    deposited = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
    after = FacilitySettings().parcel_overdue_after
    assert after == timedelta(hours=48)
    assert not parcel_overdue(deposited, deposited + timedelta(hours=47, minutes=59), after)
    assert parcel_overdue(deposited, deposited + timedelta(hours=48), after)
    assert overdue_cutoff(deposited + timedelta(hours=48), after) == deposited
    assert FacilitySettings(parcel_overdue_h=6).parcel_overdue_after == timedelta(hours=6)


# --- settings --------------------------------------------------------------------------


def test_settings_parse_wall_clock_times_from_text() -> None:
    s = FacilitySettings.model_validate({"night_start": "23:30", "night_end": "04:00"})
    assert (s.night_start, s.night_end) == (time(23, 30), time(4, 0))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"night_start": "02:00", "night_end": "02:00"}, "empty"),
        ({"bin_full_pct": 0}, "bin_full_pct"),
        ({"parcel_overdue_h": -1}, "parcel_overdue_h"),
        ({"night_min_readings": 0}, "night_min_readings"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_settings_name_the_field(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FacilitySettings.model_validate(values)


def test_webhook_template_placeholders_are_checked() -> None:
    ok = ParcelWebhookSettings(url_template="https://app.example.cn/h/{household_id}/p/{parcel_id}")
    assert "{household_id}" in ok.url_template
    with pytest.raises(ValidationError, match="unknown placeholder"):
        ParcelWebhookSettings(url_template="https://app.example.cn/{phone}")
    with pytest.raises(ValidationError, match="not an http"):
        ParcelWebhookSettings(url_template="ftp://app.example.cn/{household_id}")
    with pytest.raises(ValidationError, match="not a valid template"):
        ParcelWebhookSettings(url_template="https://app.example.cn/{household_id")
