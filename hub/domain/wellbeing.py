"""The wellbeing watch (关爱守护, issue #15): a resident's own rhythm, and when silence is news.

A resident who lives alone and falls may never press the button; the meters they already
have say it instead. This module holds the rules, with no I/O, so the hub, the month-long
simulation (``simulators/care.py``) and the tests run exactly the same code:

* **Activity** is anything that shows the resident is up and about at home: water flowing,
  electricity drawn above the home's standby load, a button press or a daily check-in; a
  face pass at the building door shows them coming or going.
* **Quiet spells** are the gaps between activities. Each is *at home* (it began with
  activity inside the home) or *maybe out* (it began with a door pass: people who walk out
  of the building are usually out, and a day at the market must not look like a fall).
* **The baseline**: for every hour of the day, separately for weekdays and weekends, the
  longest quiet spell in progress during that hour (and its neighbours), per day, over the
  last 2-4 weeks; the usual longest is the largest after ignoring the most unusual day(s),
  stretched by a margin and clamped between a floor and a ceiling (configurable).
* **The judgement** (:func:`judge`) at ``now``: a welfare alert when the silence so far is
  longer than the usual longest quiet spell at this time of day, except while the resident
  is marked away (and until the end date), and except when a meter has stopped reporting:
  silence from a dead meter is a device fault, not news about the resident.

Time: spells are measured in real elapsed time (UTC instants); the hour of the day that
picks the threshold is the community's local wall time, so a daylight-saving change moves
the slot, never the length of a spell. An activity stamped in the future by a device whose
clock runs fast counts as "now", not as a promise of future activity.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum


class Source(StrEnum):
    WATER = "water"
    ELECTRICITY = "electricity"
    DOOR = "door"
    BUTTON = "button"
    CHECK_IN = "check_in"


#: Sources that are read on a schedule: when one stops reporting, silence is a device fault.
METERED = frozenset({Source.WATER, Source.ELECTRICITY})
#: Sources whose activity shows the resident *inside* the home.
AT_HOME = frozenset({Source.WATER, Source.ELECTRICITY, Source.BUTTON, Source.CHECK_IN})

SOURCE_NAMES: dict[Source, tuple[str, str]] = {
    Source.WATER: ("用水", "water"),
    Source.ELECTRICITY: ("用电", "electricity"),
    Source.DOOR: ("门禁通行", "door pass"),
    Source.BUTTON: ("按键", "button press"),
    Source.CHECK_IN: ("报平安", "check-in"),
}


class Verdict(StrEnum):
    OK = "ok"  # silence within the resident's usual
    ALERT = "alert"  # longer than usual: a welfare check
    AWAY = "away"  # marked away (hospital, travel, family visit)
    DEVICE_FAULT = "device_fault"  # a meter stopped reporting: not evidence of silence
    NO_DATA = "no_data"  # nothing heard yet since the watch started


class Mode(StrEnum):
    HOME = "home"
    OUT = "out"


@dataclass(frozen=True, slots=True)
class Activity:
    at: datetime
    source: Source


@dataclass(frozen=True, slots=True)
class AwayPeriod:
    starts_at: datetime
    ends_at: datetime
    reason: str = "other"  # hospital | travel | family_visit | other

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


@dataclass(frozen=True, slots=True)
class MeterHealth:
    """A metered source of the household as the hub last heard it."""

    source: Source
    device_id: str
    last_report_at: datetime | None
    faulty: bool = False  # the hub's supervision has it offline or in maintenance


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """Knobs of the rhythm rules (``HubConfig.wellbeing.rules``)."""

    history_days: int = 28  # the baseline looks this far back
    min_history_days: int = 14  # before that, the fallback threshold applies
    floor_h: float = 4.5  # never alert on a silence shorter than this
    ceiling_h: float = 12.0  # always alert on a silence longer than this
    fallback_h: float = 12.0  # the fixed rule, while the rhythm is still being learnt
    out_h: float = 12.0  # a silence that began with a door pass: probably out
    spread: float = 2.0  # the usual longest spell plus this many standard deviations
    slack_h: float = 1.0  # … plus this
    neighbour_hours: int = 2  # pool the hours either side of the slot
    ignore_longest_days: int = 0  # the most unusual day(s) of the history are ignored
    meter_silent_after_h: float = 2.0  # a meter not heard for this long is a device fault

    def __post_init__(self) -> None:
        if not 0 < self.floor_h <= self.ceiling_h:
            raise ValueError("floor_h must be > 0 and <= ceiling_h")
        if self.min_history_days > self.history_days:
            raise ValueError("min_history_days must be <= history_days")


def _local_hour_start(at: datetime, tz: tzinfo) -> datetime:
    local = at.astimezone(tz)
    return local.replace(minute=0, second=0, microsecond=0)


def _slot(day: date, hour: int) -> tuple[date, int]:
    shift, hour = divmod(hour, 24)
    return day + timedelta(days=shift), hour


def _day_type(day: date) -> int:
    return 1 if day.weekday() >= 5 else 0


@dataclass(slots=True)
class QuietHistory:
    """The longest quiet spell in progress during each local hour of each day, per mode.

    Built from a sorted activity list once; :class:`Baseline` reads it. Hours spent under
    an away period count as unknown (no sample), so a week in hospital teaches nothing.
    """

    tz: tzinfo
    #: (local day, hour 0-23) → longest spell (hours) in progress then, per mode
    home: dict[tuple[date, int], float] = field(default_factory=dict)
    out: dict[tuple[date, int], float] = field(default_factory=dict)
    days: set[date] = field(default_factory=set)

    _pooled: dict[tuple[date, int], tuple[float, ...]] = field(default_factory=dict)

    def pooled(self, day: date, neighbours: int) -> tuple[float, ...]:
        """The day's 24 at-home samples, each the longest of its hour and ``neighbours``
        either side (-1: none); cached, the history is only added to before learning."""
        key = (day, neighbours)
        found = self._pooled.get(key)
        if found is None:
            wide = [self.home.get(_slot(day, h), -1.0) for h in range(-neighbours, 24 + neighbours)]
            span = 2 * neighbours + 1
            found = self._pooled[key] = tuple(max(wide[h : h + span]) for h in range(24))
        return found

    def add(self, mode: Mode, day: date, hour: int, length_h: float) -> None:
        table = self.home if mode is Mode.HOME else self.out
        key = (day, hour)
        if length_h > table.get(key, -1.0):
            table[key] = length_h


def _mode_of(source: Source) -> Mode:
    return Mode.OUT if source is Source.DOOR else Mode.HOME


def quiet_history(
    activities: Sequence[Activity],
    start: datetime,
    end: datetime,
    tz: tzinfo,
    away: Sequence[AwayPeriod] = (),
) -> QuietHistory:
    """The quiet spells of ``[start, end)`` by local hour; ``activities`` sorted by time."""
    history = QuietHistory(tz)
    events = [a for a in activities if start <= a.at < end]
    if not events:
        return history
    # a spell is sampled at each local hour boundary it spans and at its end
    for prev, nxt in zip(events, [*events[1:], None], strict=True):
        spell_start = prev.at
        spell_end = nxt.at if nxt is not None else end
        mode = _mode_of(prev.source)
        hour = _local_hour_start(spell_start, tz)
        while True:
            hour_end = hour.astimezone(UTC) + timedelta(hours=1)  # real time, not wall time
            sample_at = min(hour_end, spell_end)
            if not any(p.starts_at < sample_at and p.ends_at > spell_start for p in away):
                length_h = (sample_at - spell_start).total_seconds() / 3600
                history.add(mode, hour.date(), hour.hour, length_h)
            if hour_end >= spell_end:
                break
            hour = _local_hour_start(hour_end, tz)
    first = events[0].at.astimezone(tz).date()
    last = (end - timedelta(microseconds=1)).astimezone(tz).date()
    day = first
    while day <= last:
        history.days.add(day)
        day += timedelta(days=1)
    return history


@dataclass(frozen=True, slots=True)
class Baseline:
    """Thresholds (hours) by (day type, local hour, mode), learnt from a history."""

    trained: bool
    home: tuple[tuple[float, ...], tuple[float, ...]]  # [weekday|weekend][hour]
    out: tuple[tuple[float, ...], tuple[float, ...]]
    days: int

    def threshold_h(self, at: datetime, tz: tzinfo, mode: Mode, s: WatchSettings) -> float:
        if not self.trained:
            return s.fallback_h
        local = at.astimezone(tz)
        table = self.home if mode is Mode.HOME else self.out
        return table[_day_type(local.date())][local.hour]


def learn_baseline(history: QuietHistory, s: WatchSettings, until: date | None = None) -> Baseline:
    """The usual longest quiet spell per slot, stretched and clamped (see module doc).

    ``until``: learn from the ``history_days`` local days before it (default: all)."""
    days = sorted(history.days)
    if until is not None:
        first = until - timedelta(days=s.history_days)
        days = [d for d in days if first <= d < until]
    trained = len(days) >= s.min_history_days
    home: list[tuple[float, ...]] = []
    for day_type in (0, 1):
        rows = [history.pooled(d, s.neighbour_hours) for d in days if _day_type(d) == day_type]
        home.append(
            tuple(_threshold([v for row in rows if (v := row[hour]) >= 0], s) for hour in range(24))
        )
    out = (min(s.ceiling_h, s.out_h),) * 24
    return Baseline(trained=trained, home=(home[0], home[1]), out=(out, out), days=len(days))


def _threshold(per_day: list[float], s: WatchSettings) -> float:
    """The usual longest at-home quiet spell plus its spread and some slack, clamped."""
    if len(per_day) < 2:
        return s.ceiling_h
    ordered = sorted(per_day, reverse=True)
    usual = ordered[min(s.ignore_longest_days, len(ordered) - 1)]
    mean = sum(ordered) / len(ordered)
    spread = math.sqrt(sum((v - mean) ** 2 for v in ordered) / len(ordered))
    return min(s.ceiling_h, max(s.floor_h, usual + s.spread * spread + s.slack_h))


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    now: datetime
    silent_since: datetime | None = None
    silence_h: float = 0.0
    threshold_h: float = 0.0
    mode: Mode = Mode.HOME
    last_by_source: dict[Source, datetime] = field(default_factory=dict)
    faulty_meters: tuple[str, ...] = ()
    away: AwayPeriod | None = None

    @property
    def usual_by(self) -> datetime | None:
        """When activity usually shows again at the latest, from the silence's start."""
        if self.silent_since is None:
            return None
        return self.silent_since + timedelta(hours=self.threshold_h)


def judge(
    now: datetime,
    last_by_source: dict[Source, datetime],
    baseline: Baseline,
    tz: tzinfo,
    s: WatchSettings,
    *,
    watch_started_at: datetime,
    away: Iterable[AwayPeriod] = (),
    meters: Iterable[MeterHealth] = (),
) -> Judgement:
    """Is the silence at ``now`` news? ``last_by_source``: each source's latest activity."""
    periods = list(away)
    current = next((p for p in periods if p.covers(now)), None)
    last = {src: min(at, now) for src, at in last_by_source.items()}  # fast clocks: "now"
    if current is not None:
        return Judgement(Verdict.AWAY, now, last_by_source=last, away=current)
    latest_source = max(last, key=lambda src: last[src]) if last else None
    starts = [watch_started_at, *(p.ends_at for p in periods if p.ends_at <= now)]
    if latest_source is not None:
        starts.append(last[latest_source])
    silent_since = max(starts)
    back_home = latest_source is None or silent_since > last[latest_source]
    mode = Mode.HOME if back_home or latest_source is None else _mode_of(latest_source)
    silence_h = (now - silent_since).total_seconds() / 3600
    threshold = baseline.threshold_h(now, tz, mode, s)
    base = Judgement(Verdict.OK, now, silent_since, silence_h, threshold, mode, last)
    if silence_h <= threshold:
        return base
    blind_after = now - timedelta(hours=s.meter_silent_after_h)
    faulty = tuple(
        sorted(
            m.device_id
            for m in meters
            if m.faulty or m.last_report_at is None or m.last_report_at < blind_after
        )
    )
    if faulty:
        return _replace(base, Verdict.DEVICE_FAULT, faulty)
    if not last and silent_since == watch_started_at:
        return _replace(base, Verdict.NO_DATA, ())
    return _replace(base, Verdict.ALERT, ())


def _replace(j: Judgement, verdict: Verdict, faulty: tuple[str, ...]) -> Judgement:
    return Judgement(
        verdict,
        j.now,
        j.silent_since,
        j.silence_h,
        j.threshold_h,
        j.mode,
        j.last_by_source,
        faulty,
        j.away,
    )


def _span(hours: float) -> tuple[str, str]:
    if hours >= 48:
        days = int(hours // 24)
        return f"{days} 天", f"{days} days"
    if hours >= 1:
        return f"{hours:.1f} 小时", f"{hours:.1f} h"
    minutes = max(1, round(hours * 60))
    return f"{minutes} 分钟", f"{minutes} min"


def evidence(j: Judgement, tz: tzinfo, sources: Iterable[Source]) -> tuple[str, str]:
    """What the worker reads (Chinese, English): e.g. "no water since 07:10, usually by
    08:00; no door pass for 2 days". ``sources``: those the household has."""
    zh: list[str] = []
    en: list[str] = []
    usual_by = j.usual_by.astimezone(tz) if j.usual_by is not None else None
    for source in sorted(set(sources), key=list(Source).index):
        name_zh, name_en = SOURCE_NAMES[source]
        at = j.last_by_source.get(source)
        if at is None:
            zh.append(f"一直无{name_zh}记录")
            en.append(f"no {name_en} on record")
            continue
        ago_h = (j.now - at).total_seconds() / 3600
        if ago_h >= 24:
            span_zh, span_en = _span(ago_h)
            zh.append(f"{span_zh}无{name_zh}")
            en.append(f"no {name_en} for {span_en}")
        else:
            local = at.astimezone(tz)
            zh.append(f"自 {local:%H:%M} 起无{name_zh}")
            en.append(f"no {name_en} since {local:%H:%M}")
    if usual_by is not None and zh:
        zh[0] += f"，平时 {usual_by:%H:%M} 前会有动静"
        en[0] += f", usually by {usual_by:%H:%M}"
    span_zh, span_en = _span(j.silence_h)
    zh.append(f"已安静 {span_zh}（平时此时段最长约 {j.threshold_h:.1f} 小时）")
    en.append(f"quiet for {span_en} (usual longest at this hour about {j.threshold_h:.1f} h)")
    return "；".join(zh), "; ".join(en)


def electricity_active(
    prev_kwh: float, prev_at: datetime, kwh: float, at: datetime, standby_w: float
) -> bool | None:
    """Did the home draw more than its standby load (fridge, router) between two energy
    readings? None when the pair says nothing (out of order, counter reset, too close)."""
    seconds = (at - prev_at).total_seconds()
    if seconds < 30 or kwh < prev_kwh:
        return None
    watts = (kwh - prev_kwh) * 3_600_000 / seconds
    return watts > standby_w


def missed_check_in(
    now: datetime,
    check_in_hour: int,
    last_check_in_at: datetime | None,
    tz: tzinfo,
    watch_started_at: datetime,
) -> date | None:
    """The local day whose daily check-in (报平安) is missed at ``now``, or None.

    A check-in counts for the day it was made in local time; it is missed once the
    resident's chosen hour has passed without one (days before the watch started don't)."""
    local_now = now.astimezone(tz)
    due = datetime.combine(local_now.date(), time(check_in_hour), tzinfo=tz)
    if local_now < due or due.astimezone(UTC) < watch_started_at:
        return None
    day_start = datetime.combine(local_now.date(), time(0), tzinfo=tz)
    if last_check_in_at is not None and last_check_in_at >= day_start:
        return None
    return local_now.date()


def last_activity_by_source(activities: Iterable[Activity]) -> dict[Source, datetime]:
    """Each source's latest activity time."""
    last: dict[Source, datetime] = {}
    for a in activities:
        if a.source not in last or a.at > last[a.source]:
            last[a.source] = a.at
    return last


def latest_before(times: Sequence[datetime], at: datetime) -> datetime | None:
    """The latest of sorted ``times`` at or before ``at``."""
    i = bisect.bisect_right(times, at)
    return times[i - 1] if i else None
