"""Polled devices: the values a Modbus or DL/T 645 device holds, and when to read them.

Why in the profile: which register holds the water meter's total, its type, word order
and scale is a fact of the device *model*, written once by somebody with the data sheet;
the driver then only reads what the profile names. Everything that can be checked without
a device is checked at load time: scale not zero, limits in order, a cron expression that
APScheduler accepts and that ever fires.

Cron note: APScheduler 3 numbers weekdays from Monday = 0, unlike crontab (Sunday = 0),
so a numeric day-of-week field is refused; write ``mon-fri`` instead.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import Field, StrictBool, StrictInt, model_validator

from contract import Lane
from profiles.common import (
    DEFAULT_COMMAND_DEADLINE_S,
    DeadlineSeconds,
    Identifier,
    LaneName,
    Strict,
    check_limits,
    first_duplicate,
    lane_of,
    rule_error,
)
from profiles.registers import Order, Point, RegisterType, width

DEFAULT_TIMEZONE = "Asia/Shanghai"
_REFERENCE = datetime(2024, 1, 1, tzinfo=ZoneInfo("UTC"))  # a Monday: where hints start


def _in_limits(value: float, low: float | None, high: float | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


class ModbusPointSpec(Strict):
    """One value in a Modbus device's registers (``profiles.registers.Point``)."""

    name: Identifier
    table: Literal["holding", "input"]
    address: StrictInt = Field(ge=0, le=65_535)
    type: RegisterType = "u16"
    word_order: Order = "big"
    byte_order: Order = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    min: float | None = None
    max: float | None = None
    access: Literal["r", "rw"] = "r"
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> ModbusPointSpec:
        if self.scale == 0 or not math.isfinite(self.scale):
            raise rule_error("scale", f"bad scale {self.scale}: must be finite and not 0")
        if not math.isfinite(self.offset):
            raise rule_error("offset", f"offset must be finite, not {self.offset}")
        problem = check_limits(self.min, self.max)
        if problem is not None:
            raise problem
        if self.address + width(self.type) > 0x10000:
            raise rule_error("address", f"a {self.type} at {self.address} runs past register 65535")
        if self.access == "rw" and self.table == "input":
            raise rule_error("access", "input registers are read-only; use table: holding")
        return self

    @property
    def writable(self) -> bool:
        return self.access == "rw"

    def to_point(self) -> Point:
        return Point(
            name=self.name,
            address=self.address,
            kind=self.type,
            byte_order=self.byte_order,
            word_order=self.word_order,
            scale=self.scale,
            offset=self.offset,
        )

    def in_limits(self, value: float) -> bool:
        return _in_limits(value, self.min, self.max)


class DltPointSpec(Strict):
    """One DL/T 645-2007 data item: its identifier and BCD layout (``XXXXXX.XX`` = 8, 2)."""

    name: Identifier
    di: StrictInt = Field(ge=0, le=0xFFFFFFFF)
    digits: StrictInt = Field(ge=2, le=16)
    decimals: StrictInt = Field(default=0, ge=0, le=16)
    signed: StrictBool = False
    unit: str = ""
    min: float | None = None
    max: float | None = None
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> DltPointSpec:
        if self.digits % 2:
            raise rule_error("digits", f"BCD digits come in pairs; {self.digits} is odd")
        if self.decimals > self.digits:
            raise rule_error("decimals", f"{self.decimals} decimals exceed {self.digits} digits")
        problem = check_limits(self.min, self.max)
        if problem is not None:
            raise problem
        return self

    @property
    def byte_count(self) -> int:
        """Bytes the value takes in a reply."""
        return self.digits // 2

    def in_limits(self, value: float) -> bool:
        return _in_limits(value, self.min, self.max)


def _zone(timezone: tzinfo | str) -> tzinfo:
    return ZoneInfo(timezone) if isinstance(timezone, str) else timezone


class PollSpec(Strict):
    """Read ``points`` every ``every_s`` seconds or on a crontab, as one event ``kind``."""

    points: tuple[Identifier, ...] = Field(min_length=1)
    every_s: float | None = Field(default=None, gt=0, le=31 * 86_400)
    cron: str | None = None
    kind: Identifier
    lane: LaneName = "telemetry"
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> PollSpec:
        if (self.every_s is None) == (self.cron is None):
            raise rule_error("every_s", "give exactly one of every_s and cron")
        if self.cron is not None:
            _check_cron(self.cron)
        duplicate = first_duplicate(list(self.points))
        if duplicate is not None:
            index, first = duplicate
            raise rule_error(
                f"points[{index}]",
                f"duplicate point {self.points[index]!r} (also points[{first}])",
            )
        return self

    @property
    def contract_lane(self) -> Lane:
        return lane_of(self.lane)

    def trigger(self, timezone: tzinfo | str = DEFAULT_TIMEZONE) -> Any:
        """An APScheduler 3 trigger: ``IntervalTrigger`` or ``CronTrigger`` in ``timezone``."""
        zone = _zone(timezone)
        if self.cron is not None:
            return CronTrigger.from_crontab(self.cron, timezone=zone)
        assert self.every_s is not None  # the validator guarantees one of the two
        return IntervalTrigger(seconds=self.every_s, timezone=zone)

    def next_fire_times(
        self, after: datetime, count: int, timezone: tzinfo | str = DEFAULT_TIMEZONE
    ) -> list[datetime]:
        """The next ``count`` fire times of a cron poll after ``after`` (an aware datetime).

        Interval polls count from when their trigger is made, so they have no fixed
        schedule to list; for them the result is ``after + k * every_s``.
        """
        if self.every_s is not None:
            return [after + timedelta(seconds=self.every_s * k) for k in range(1, count + 1)]
        trigger = self.trigger(timezone)
        times: list[datetime] = []
        previous: datetime | None = None
        now = after + timedelta(microseconds=1)
        while len(times) < count:
            fire: datetime | None = trigger.get_next_fire_time(previous, now)
            if fire is None:
                break
            times.append(fire)
            previous, now = fire, fire + timedelta(microseconds=1)
        return times

    @property
    def interval_hint_s(self) -> float:
        """About how often the poll fires (the first gap of a cron); for offline timing."""
        if self.every_s is not None:
            return self.every_s
        start = _REFERENCE
        times = self.next_fire_times(start, 2, "UTC")
        return (times[1] - times[0]).total_seconds() if len(times) == 2 else math.inf


def _check_cron(expression: str) -> None:
    fields = expression.split()
    if len(fields) != 5:
        raise rule_error(
            "cron", f"cron needs 5 fields (minute hour day month weekday), got {len(fields)}"
        )
    if any(c.isdigit() for c in fields[4]):
        raise rule_error(
            "cron", "write the weekday field with names (mon-fri): APScheduler counts 0 = Monday"
        )
    try:
        trigger = CronTrigger.from_crontab(expression, timezone=ZoneInfo("UTC"))
    except (ValueError, TypeError, KeyError) as err:
        raise rule_error("cron", f"bad cron expression {expression!r}: {err}") from None
    start = _REFERENCE
    first = trigger.get_next_fire_time(None, start)
    if first is None:
        raise rule_error("cron", f"cron expression {expression!r} never fires")


class ModbusCommandSpec(Strict):
    """``write_point {"point", "value"}``: write an ``access: rw`` point, read it back."""

    name: Literal["write_point"]
    verify: StrictBool = True
    description: str = ""
    deadline_s: DeadlineSeconds = DEFAULT_COMMAND_DEADLINE_S
