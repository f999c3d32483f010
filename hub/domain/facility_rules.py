"""The rules of the shared facilities (doors, parcel lockers, water meters, bins), no I/O.

Thresholds and windows live in one settings model, :class:`FacilitySettings` (the hub
configuration's ``facilities`` section), so a community can tune "full", "hot" or "the
night" without code. Every rule takes the time it is asked about as an argument: the
handlers pass the ``now`` they are given, so a test can ask about 48 hours later or
05:01 local time without waiting.

The night window is wall-clock time in the community's zone (Asia/Shanghai by default,
which has no daylight saving time): ``01:00-05:00`` is a window inside one calendar day;
``23:00-05:00`` crosses midnight. A night is named by the local date on which its window
starts, so all readings of one night land in one aggregate row.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Self
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

#: Placeholders a parcel webhook URL template may use.
PARCEL_URL_FIELDS = frozenset({"household_id", "parcel_id", "device_id", "compartment"})


class ParcelWebhookSettings(BaseModel):
    """Where a household is told that a parcel waits for it (e.g. the property company's
    resident app), with the same timeout and retry knobs as the workers' webhooks."""

    model_config = {"extra": "forbid"}

    url_template: str = Field(
        min_length=8,
        description="http(s) URL; may use {household_id}, {parcel_id}, {device_id}, {compartment}",
        examples=["https://app.example.cn/households/{household_id}/parcels"],
    )
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    attempts: int = Field(default=3, ge=1, le=10)
    backoff_s: float = Field(default=1.0, ge=0, le=60, description="first retry delay")

    @field_validator("url_template")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        except ValueError as err:
            raise ValueError(f"not a valid template: {err}") from None
        unknown = names - PARCEL_URL_FIELDS
        if unknown:
            known = ", ".join(sorted(PARCEL_URL_FIELDS))
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; known: {known}")
        sample = template.format(**dict.fromkeys(names, "1"))
        parts = urlsplit(sample)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{template!r} is not an http(s) URL")
        return template


class FacilitySettings(BaseModel):
    """Thresholds and windows of the facility rules (doors need none)."""

    model_config = {"extra": "forbid"}

    # parcels
    parcel_overdue_h: float = Field(default=48.0, gt=0, le=24 * 60)
    parcel_webhook: ParcelWebhookSettings | None = None
    # water meters: the night window (local wall-clock time, end exclusive)
    night_start: time = time(1, 0)
    night_end: time = time(5, 0)
    night_min_readings: int = Field(default=3, ge=1, le=10_000)
    #: A flow at or below this counts as "no flow" (meters report tiny noise at rest).
    zero_flow_m3h: float = Field(default=0.0, ge=0, le=10)
    #: Night aggregates are deleted this long after their night.
    water_nights_kept_days: int = Field(default=60, ge=1, le=3650)
    # bins
    bin_full_pct: float = Field(default=80.0, gt=0, le=100)
    bin_hot_c: float = Field(default=60.0, gt=0, le=500)
    bin_tilt_deg: float = Field(default=30.0, gt=0, le=180)

    @field_validator("night_start", "night_end")
    @classmethod
    def _wall_clock(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("a local wall-clock time without time zone, e.g. 01:00")
        return value

    @model_validator(mode="after")
    def _non_empty_night(self) -> Self:
        if self.night_start == self.night_end:
            raise ValueError("night_start and night_end are equal: the night window is empty")
        return self

    @property
    def parcel_overdue_after(self) -> timedelta:
        return timedelta(hours=self.parcel_overdue_h)


# --- numbers from device payloads ------------------------------------------------------


def number(value: object) -> float | None:
    """A finite int or float from a payload; bools, NaN, infinities and text are None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


# --- water: the night window -----------------------------------------------------------


def crosses_midnight(start: time, end: time) -> bool:
    return end <= start


def night_of(at: datetime, start: time, end: time, tz: tzinfo) -> date | None:
    """The night (the local date its window starts) that instant ``at`` falls in, or None
    when ``at`` is outside the window ``[start, end)`` of local wall-clock time."""
    _require_aware(at)
    local = at.astimezone(tz)
    clock = local.time().replace(tzinfo=None)
    if not crosses_midnight(start, end):
        return local.date() if start <= clock < end else None
    if clock >= start:
        return local.date()
    if clock < end:
        return local.date() - timedelta(days=1)
    return None


def night_ends_at(night: date, start: time, end: time, tz: tzinfo) -> datetime:
    """When the window of ``night`` closes, as an aware instant in ``tz``."""
    day = night + timedelta(days=1) if crosses_midnight(start, end) else night
    return datetime.combine(day, end, tzinfo=tz)


def is_zero_flow(flow_m3h: float, zero_flow_m3h: float) -> bool:
    return flow_m3h <= zero_flow_m3h


def leak_suspected(readings: int, zero_readings: int, min_readings: int) -> bool:
    """Suspect a leak when the flow never dropped to zero during a night with enough
    readings to tell (a meter heard twice all night proves nothing)."""
    return readings >= min_readings and zero_readings == 0


# --- parcels ---------------------------------------------------------------------------


def parcel_overdue(deposited_at: datetime, now: datetime, after: timedelta) -> bool:
    """A parcel still in its compartment ``after`` (48 h by default) after deposit."""
    return now - deposited_at >= after


def overdue_cutoff(now: datetime, after: timedelta) -> datetime:
    """Parcels deposited at or before this instant are overdue at ``now``."""
    return now - after


# --- bins ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BinVerdict:
    full: bool = False
    hot: bool = False
    tipped: bool = False


def judge_bin(
    settings: FacilitySettings,
    *,
    fill_pct: float | None,
    temperature_c: float | None,
    tilt_deg: float | None,
) -> BinVerdict:
    """Which alarms one reading raises; a missing value raises none."""
    return BinVerdict(
        full=fill_pct is not None and fill_pct >= settings.bin_full_pct,
        hot=temperature_c is not None and temperature_c >= settings.bin_hot_c,
        tipped=tilt_deg is not None and abs(tilt_deg) >= settings.bin_tilt_deg,
    )


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("times must be timezone-aware")
