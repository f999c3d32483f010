"""The wellbeing watch (关爱守护, issue #15): a resident's own rhythm, and when silence is news.

A resident who lives alone and falls may never press the button; the meters they already
have say it instead. This module holds the rules, with no I/O, so the hub, the month-long
simulation (``simulators/care.py``) and the tests run exactly the same code:

* **Activity** is anything that shows the resident is up and about at home: water flowing,
  electricity drawn above the home's standby load, a button press or a daily check-in; a
  face pass at the building door shows them coming or going.
* **Silences**: at every quarter hour, how long the resident has been quiet. A silence is
  *at home* (it began with activity inside the home) or *maybe out* (it began with a door
  pass: where the door reads faces on the way out too, people who walk out of the building
  are usually out, and a day at the market must not look like a fall).
* **The baseline**, per resident, from the last 2-4 weeks, weekdays apart from weekends
  (which learn from every day), for each quarter hour of the local day, the larger of:

  - *this time of day*: the longest silence seen at this quarter hour or up to
    ``late_min`` earlier, × (1 + ``stretch``) + ``slack_h``. It holds the resident's own
    night (bedtime and wake-up learnt, not assumed): the night's silence seen at 06:00
    still covers a morning that starts later than any before, and a silence at 23:00
    longer than any seen then is news the same night, not the next morning;
  - *while up*: a silence while the resident is usually up (a nap, a read, an outing by
    a gate that does not see exits) can come at any hour, so it is judged by a model of
    the resident's own quiet spells while up (an exponential tail over ``tail_from_h``)
    at an accepted risk of ``daily_risk`` a day. Four weeks show a few dozen such spells;
    the rule must hold far beyond the longest of them.

  Clamped between a floor and a ceiling (configurable).
* **The judgement** (:func:`judge`) at ``now``: a welfare alert when the silence so far is
  longer than the baseline at this quarter hour, except while the resident is marked away
  (and until the end date), and except when a meter has stopped reporting: silence from a
  dead meter is a device fault, not news about the resident.

Time: spells are measured in real elapsed time (UTC instants); the quarter hour of the day that
picks the threshold is the community's local wall time, so a daylight-saving change moves
the slot, never the length of a spell. An activity stamped in the future by a device whose
clock runs fast counts as "now", not as a promise of future activity.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum


class Source(StrEnum):
    WATER = "water"
    ELECTRICITY = "electricity"
    DOOR = "door"
    BUTTON = "button"
    CHECK_IN = "check_in"
    #: An answer to an "are you OK?" prompt (关爱询问): the green key pressed while a prompt
    #: waits, or an answered automated call. It ends the silence like any activity, but the
    #: baseline never learns from it (:func:`quiet_history` skips it): a spell cut short by a
    #: prompt would otherwise teach shorter spells, lower thresholds and ever more prompts.
    ANSWER = "answer"


#: Sources that are read on a schedule: when one stops reporting, silence is a device fault.
METERED = frozenset({Source.WATER, Source.ELECTRICITY})
#: Sources whose activity shows the resident *inside* the home.
AT_HOME = frozenset(
    {Source.WATER, Source.ELECTRICITY, Source.BUTTON, Source.CHECK_IN, Source.ANSWER}
)

SOURCE_NAMES: dict[Source, tuple[str, str]] = {
    Source.WATER: ("用水", "water"),
    Source.ELECTRICITY: ("用电", "electricity"),
    Source.DOOR: ("门禁通行", "door pass"),
    Source.BUTTON: ("按键", "button press"),
    Source.CHECK_IN: ("报平安", "check-in"),
    Source.ANSWER: ("关爱询问应答", "answer to a prompt"),
}


class Verdict(StrEnum):
    OK = "ok"  # silence within the resident's usual
    ALERT = "alert"  # longer than usual: a welfare check
    AWAY = "away"  # marked away (hospital, travel, family visit)
    DEVICE_FAULT = "device_fault"  # a meter stopped reporting: not evidence of silence
    NO_DATA = "no_data"  # nothing heard yet since the watch started
    PROMPT = "prompt"  # past the prompt threshold: ask the resident "are you OK?" now
    PROMPTED = "prompted"  # asked, waiting up to prompt_wait_min for an answer


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
    floor_h: float = 2.0  # never alert on a silence shorter than this
    ceiling_h: float = 16.0  # always alert on a silence longer than this
    fallback_h: float = 12.0  # the fixed rule, while the rhythm is still being learnt
    out_h: float = 12.0  # a silence that began with a door pass: probably out
    stretch: float = 0.25  # the usual longest silence at this time of day × (1 + stretch) …
    slack_h: float = 1.0  # … plus this
    late_min: int = 150  # compare with the silences seen up to this long earlier in the day
    ignore_longest_days: int = 0  # the most unusual day(s) of the history are ignored
    daily_risk: float = 0.0005  # accepted chance a day that a quiet spell while up runs past
    tail_from_h: float = 1.0  # quiet spells while up longer than this make the tail …
    tail_prior_h: float = 1.0  # … whose mean excess starts from this prior
    meter_silent_after_h: float = 2.0  # a meter not heard for this long is a device fault
    # the "are you OK?" prompt (关爱询问): a lower threshold learnt the same way
    prompt_daily_risk: float = 0.02  # accepted chance a day of a prompt on an ordinary spell
    prompt_floor_h: float = 1.5  # never prompt on a silence shorter than this
    prompt_stretch: float = 0.1  # the usual longest at this time of day × (1 + this) …
    prompt_slack_h: float = 0.5  # … plus this
    prompt_out_h: float = 8.0  # a silence that began with a door pass: ask by phone after this
    prompt_wait_min: float = 30.0  # unanswered this long: the welfare check …
    prompt_hold_for_outings: bool = True  # … once past the outings no door saw leave, too

    def __post_init__(self) -> None:
        if not 0 < self.floor_h <= self.ceiling_h:
            raise ValueError("floor_h must be > 0 and <= ceiling_h")
        if self.min_history_days > self.history_days:
            raise ValueError("min_history_days must be <= history_days")
        if not 0 < self.prompt_floor_h <= self.floor_h:
            raise ValueError("prompt_floor_h must be > 0 and <= floor_h")
        if not self.daily_risk <= self.prompt_daily_risk < 1:
            raise ValueError("prompt_daily_risk must be >= daily_risk and < 1")
        if not 0 < self.prompt_wait_min <= 240:
            raise ValueError("prompt_wait_min must be > 0 and <= 240")

    def prompt_rules(self) -> WatchSettings:
        """The same rules with the prompt's knobs: what :func:`learn_prompt_baseline` uses."""
        return replace(
            self,
            daily_risk=self.prompt_daily_risk,
            floor_h=self.prompt_floor_h,
            stretch=self.prompt_stretch,
            slack_h=self.prompt_slack_h,
            out_h=min(self.prompt_out_h, self.ceiling_h),
        )


#: The baseline's resolution: quarter hours of the local day (DL/T 645 meters read every 15 min).
SLOT_MIN = 15
SLOTS = 24 * 60 // SLOT_MIN


def _slot_of(local: datetime, slots: int = SLOTS) -> int:
    return (local.hour * 60 + local.minute) * slots // 1440


def _day_type(day: date) -> int:
    return 1 if day.weekday() >= 5 else 0


#: A quarter hour spent marked away (no sample) or in a silence that began at the door.
UNKNOWN = -1.0
OUT = -2.0


@dataclass(slots=True)
class QuietHistory:
    """How long the resident had been quiet at home at each quarter hour of each local day.

    ``home[day][slot]`` is the silence in progress at that instant (hours since the last
    activity), :data:`OUT` when that silence began with a door pass (an outing) and
    :data:`UNKNOWN` under an away period, so a week in hospital teaches nothing (an outing's
    silence gets the fixed ``out_h``). Built from a sorted activity list once;
    :class:`Baseline` reads it.
    """

    tz: tzinfo
    home: dict[date, list[float]] = field(default_factory=dict)
    days: set[date] = field(default_factory=set)
    #: The silences that ended with a door pass (the resident came back in: an outing whose
    #: exit no door saw); the same values as ``home`` there, :data:`UNKNOWN` elsewhere.
    unseen_out: dict[date, list[float]] = field(default_factory=dict)

    def day(self, day: date) -> list[float]:
        row = self.home.get(day)
        if row is None:
            row = self.home[day] = [UNKNOWN] * SLOTS
            self.unseen_out[day] = [UNKNOWN] * SLOTS
        return row

    def indoor(self, day: date) -> list[float]:
        """``home`` without the outings whose exit was not seen: the quiet spells that ended
        inside the home (a nap, a read, a late morning) and the night."""
        out = self.unseen_out[day]
        return [OUT if o >= 0 else v for o, v in zip(out, self.home[day], strict=True)]


def _mode_of(source: Source) -> Mode:
    return Mode.OUT if source is Source.DOOR else Mode.HOME


def quiet_history(
    activities: Sequence[Activity],
    start: datetime,
    end: datetime,
    tz: tzinfo,
    away: Sequence[AwayPeriod] = (),
) -> QuietHistory:
    """The silences of ``[start, end)`` sampled every quarter hour of real (UTC) time and
    filed under the local wall-clock slot; ``activities`` sorted by time."""
    history = QuietHistory(tz)
    events = [a for a in activities if start <= a.at < end and a.source is not Source.ANSWER]
    if not events:
        return history
    step = timedelta(minutes=SLOT_MIN)
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    t = epoch + math.ceil((events[0].at - epoch) / step) * step
    periods = sorted(away, key=lambda p: p.starts_at)
    i = 0  # events[i - 1] is the latest at or before t
    while t < end:
        while i < len(events) and events[i].at <= t:
            i += 1
        last = events[i - 1]
        local = t.astimezone(tz)
        row = history.day(local.date())
        if any(p.starts_at < t and p.ends_at > last.at for p in periods):
            value = UNKNOWN
        elif last.source is Source.DOOR:
            value = OUT
        else:
            value = (t - last.at) / timedelta(hours=1)
        slot = _slot_of(local)
        if value >= 0:  # twice on the night the clocks go back: the longer counts
            if value >= row[slot] and _came_back_in(events, i):
                history.unseen_out[local.date()][slot] = value
            row[slot] = max(row[slot], value)
        elif row[slot] < 0:
            row[slot] = value
        t += step
    first = events[0].at.astimezone(tz).date()
    last_day = (end - timedelta(microseconds=1)).astimezone(tz).date()
    day = first
    while day <= last_day:
        history.days.add(day)
        day += timedelta(days=1)
    return history


def _came_back_in(events: Sequence[Activity], i: int) -> bool:
    """Was ``events[i]`` the resident coming back in? A door pass with no direction: one
    followed by another door pass before anything moves at home was a way out (seen)."""
    if i >= len(events) or events[i].source is not Source.DOOR:
        return False
    return i + 1 >= len(events) or events[i + 1].source is not Source.DOOR


@dataclass(frozen=True, slots=True)
class Baseline:
    """Thresholds (hours) by (day type, local quarter hour, mode), learnt from a history.

    The tables may have any number of slots a day (24 in baselines stored before the
    quarter-hour resolution): the slot is picked by the share of the day gone."""

    trained: bool
    home: tuple[tuple[float, ...], tuple[float, ...]]  # [weekday|weekend][slot]
    out: tuple[tuple[float, ...], tuple[float, ...]]
    days: int
    #: The prompt's only: how long a silence at home may run, unanswered, before it is a
    #: welfare check, [weekday|weekend] (0: at once; see :func:`learn_prompt_baseline`).
    unanswered: tuple[float, float] = (0.0, 0.0)

    def unanswered_h(self, at: datetime, tz: tzinfo) -> float:
        return self.unanswered[_day_type(at.astimezone(tz).date())]

    def threshold_h(self, at: datetime, tz: tzinfo, mode: Mode, s: WatchSettings) -> float:
        if not self.trained:
            return s.fallback_h
        local = at.astimezone(tz)
        row = (self.home if mode is Mode.HOME else self.out)[_day_type(local.date())]
        return row[_slot_of(local, len(row))]


def learn_baseline(history: QuietHistory, s: WatchSettings, until: date | None = None) -> Baseline:
    """The usual longest silence at each quarter hour, stretched and clamped (module doc).

    Two parts, the larger wins: the longest silence seen at this time of day or up to
    ``late_min`` earlier (a morning may start that much later than usual without news, and
    the night's silence, seen at 06:00, still covers 07:30), and the longest silence seen at
    any time the resident is usually up (an outing through a gate that does not see exits,
    a nap: these come at any hour, not at the same one every day). Weekdays learn from
    weekdays; weekends, with only 8 in four weeks, from every day (a lie-in at the weekend
    then also counts, which only makes weekends more patient).
    ``until``: learn from the ``history_days`` local days before it (default: all)."""
    days = sorted(history.days)
    if until is not None:
        first = until - timedelta(days=s.history_days)
        days = [d for d in days if first <= d < until]
    trained = len(days) >= s.min_history_days
    back = s.late_min // SLOT_MIN
    home: list[tuple[float, ...]] = []
    for day_type in (0, 1):
        rows = [
            history.home[d] for d in days if d in history.home and (day_type or _day_type(d) == 0)
        ]
        home.append(_thresholds(rows, back, s))
    out = (min(s.ceiling_h, s.out_h),) * SLOTS
    return Baseline(trained=trained, home=(home[0], home[1]), out=(out, out), days=len(days))


def learn_prompt_baseline(
    history: QuietHistory, s: WatchSettings, until: date | None = None
) -> Baseline:
    """The thresholds of the "are you OK?" prompt: :func:`learn_baseline` with the prompt's
    knobs (:meth:`WatchSettings.prompt_rules`), and never in the resident's own sleep window.

    The prompt learns from the quiet spells that ended inside the home (naps, reads, late
    mornings, the night), not from the outings whose exit no door saw (the silence ended with
    the resident walking back in): those are the ones a button at home cannot answer, and
    ``unanswered`` holds them instead (an unanswered prompt waits for that long).

    The sleep window is learnt, not assumed: a quarter hour where the resident is *not*
    usually up (most days nothing within the hour before), or within ``prompt_wait_min``
    before one, gets the ceiling, so :func:`judge` does not prompt there (no button beeping
    and no phone ringing at night; an unanswered prompt must not turn an early night into a
    welfare check). At night the welfare threshold alone applies, as without prompts."""
    p = s.prompt_rules()
    days = sorted(history.days)
    if until is not None:
        first = until - timedelta(days=p.history_days)
        days = [d for d in days if first <= d < until]
    trained = len(days) >= p.min_history_days
    back = p.late_min // SLOT_MIN
    wait = math.ceil(s.prompt_wait_min / SLOT_MIN)
    home: list[tuple[float, ...]] = []
    hold: list[float] = []
    for day_type in (0, 1):
        kept = [d for d in days if d in history.home and (day_type or _day_type(d) == 0)]
        indoor = [history.indoor(d) for d in kept]
        home.append(_thresholds(indoor, back, p, awake_wait=wait))
        hold.append(_unseen_outings_h([history.unseen_out[d] for d in kept], s))
    out = (min(p.ceiling_h, p.out_h),) * SLOTS
    return Baseline(
        trained=trained,
        home=(home[0], home[1]),
        out=(out, out),
        days=len(days),
        unanswered=(hold[0], hold[1]),
    )


def _unseen_outings_h(rows: list[list[float]], s: WatchSettings) -> float:
    """How long an outing whose exit no door saw may run (at the welfare rule's risk): an
    unanswered prompt is no news before then, for the resident may simply be out.

    Learnt from the silences that ended with the resident walking back in through the face
    door; 0 for a resident with none in the history (every exit seen: an unanswered prompt
    is news at once)."""
    if len(rows) < 2 or not any(v >= 0 for row in rows for v in row):
        return 0.0
    up = [True] * SLOTS  # outings happen while up; each row holds only outing spells
    return min(s.ceiling_h, _while_up_threshold(rows, up, s))


def _kth(values: list[float], s: WatchSettings) -> float | None:
    """The largest of ``values`` after ignoring the ``ignore_longest_days`` largest."""
    if len(values) < 2:
        return None
    if s.ignore_longest_days == 0:
        return max(values)
    ordered = sorted(values, reverse=True)
    return ordered[min(s.ignore_longest_days, len(ordered) - 1)]


def _while_up_threshold(rows: list[list[float]], up: list[bool], s: WatchSettings) -> float:
    """How long a silence while the resident is usually up may last, from their own quiet
    spells (a nap, a read, an outing through a gate that does not see exits).

    Four weeks hold a few dozen spells longer than ``tail_from_h``; the rule must hold for
    a risk of ``daily_risk`` a day, far beyond the longest of them. So the tail is modelled
    (peaks over a threshold, exponential): spells longer than ``tail_from_h`` come ``rate``
    times a day and run on by ``mean`` hours on average, so one runs past
    ``tail_from_h + x`` on a given day with a chance of about ``rate · exp(-x / mean)``.
    The mean starts from a prior of ``tail_prior_h`` weighing like two spells, so a resident
    with few long spells is not judged by one or two of them."""
    # how long the resident had been up at each slot: a silence counts as "while up" only
    # if it began after that (not the night running into a late morning)
    up_for = [0] * SLOTS
    for k in range(SLOTS):
        up_for[k] = (up_for[k - 1] + 1 if k else 1) if up[k] else 0
    excess: list[float] = []
    for row in rows:
        peak = -1.0
        for k in range(SLOTS):
            v = row[k]
            inside = up[k] and v >= 0 and v * 60 / SLOT_MIN < up_for[k]
            if inside and v >= peak:
                peak = v  # the spell goes on
                continue
            if peak > s.tail_from_h:  # it ended (or left the waking window) at its peak
                excess.append(peak - s.tail_from_h)
            peak = v if inside else -1.0
        if peak > s.tail_from_h:
            excess.append(peak - s.tail_from_h)
    rate = (len(excess) + 0.5) / len(rows)
    mean = (sum(excess) + 2 * s.tail_prior_h) / (len(excess) + 2)
    return s.tail_from_h + mean * max(0.0, math.log(rate / s.daily_risk))


def _look_back(row: list[float], back: int) -> tuple[float, ...]:
    """Each slot's value, the largest of it and the ``back`` slots before (wrapping round
    the same day: the evening stands in for the previous one)."""
    return _look_back_of(tuple(row), back)


@functools.lru_cache(maxsize=8192)
def _look_back_of(row: tuple[float, ...], back: int) -> tuple[float, ...]:
    # cached: a baseline is relearnt every day from a window that moved by one day, so
    # the same day's row comes back many times (28 times in the simulated month)
    wide = row[-back:] + row if back else row
    return tuple(max(wide[k : k + back + 1]) for k in range(SLOTS))


def _thresholds(
    rows: list[list[float]], back: int, s: WatchSettings, awake_wait: int | None = None
) -> tuple[float, ...]:
    """Per slot: the larger of the time-of-day and the while-up thresholds, clamped; with
    ``awake_wait`` (slots), the ceiling wherever the resident is not usually up now and
    ``awake_wait`` slots later (the prompt's sleep window)."""
    if len(rows) < 2:
        return (s.ceiling_h,) * SLOTS
    known = [[v for row in rows if (v := row[k]) >= 0] for k in range(SLOTS)]
    # usually up: most days, something happened within the last hour at this time of day
    up = [len(v) >= 2 and sorted(v)[len(v) // 2] < 1.0 for v in known]
    asleep = (
        [not (up[k] and up[(k + awake_wait) % SLOTS]) for k in range(SLOTS)]
        if awake_wait is not None
        else [False] * SLOTS
    )
    day_h = _while_up_threshold(rows, up, s)
    looking_back = [_look_back(row, back) for row in rows]
    out: list[float] = []
    for k in range(SLOTS):
        usual = _kth([v for row in looking_back if (v := row[k]) >= 0], s)
        if usual is None or asleep[k]:
            out.append(s.ceiling_h)
            continue
        usual_h = max(usual * (1 + s.stretch) + s.slack_h, day_h)
        out.append(min(s.ceiling_h, max(s.floor_h, usual_h)))
    return tuple(out)


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
    #: The prompt's threshold here (inf: no prompt here, e.g. asleep or no way to ask).
    prompt_threshold_h: float = math.inf
    #: The prompt of this silence, if one was sent (an answer would have ended the silence).
    prompted_at: datetime | None = None

    @property
    def next_h(self) -> float:
        """The silence (h) at which the verdict may next change from OK at this slot."""
        return min(self.threshold_h, self.prompt_threshold_h)

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
    prompt_baseline: Baseline | None = None,
    prompted_at: datetime | None = None,
    prompt_home: bool = True,
    prompt_out: bool = False,
) -> Judgement:
    """Is the silence at ``now`` news? ``last_by_source``: each source's latest activity.

    With a trained ``prompt_baseline`` the first step is softer: past the prompt threshold
    (lower than the welfare one) the verdict is :attr:`Verdict.PROMPT` (ask the resident);
    with ``prompted_at`` in this silence, :attr:`Verdict.PROMPTED` while the answer may still
    come, and :attr:`Verdict.ALERT` once ``prompt_wait_min`` has passed unanswered and the
    silence is longer than the resident's outings whose exit no door saw may run
    (:attr:`Baseline.unanswered`: a button at home cannot reach someone out). Any
    activity, an answer included, ends the silence and so the prompt. The welfare threshold
    stays the backstop. ``prompt_home``: the household can be asked at home (a CB-100 button
    or a phone on file); ``prompt_out``: a silence that began with a door pass can be asked
    about too (a mobile phone on file: a button beeping in an empty flat answers nothing)."""
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
    prompt_h = math.inf
    if (
        prompt_baseline is not None
        and prompt_baseline.trained
        and (prompt_home if mode is Mode.HOME else prompt_out)
    ):
        prompt_h = prompt_baseline.threshold_h(now, tz, mode, s.prompt_rules())
        if prompt_h >= threshold:
            prompt_h = math.inf  # asleep, or the prompt would not come first
    asked = prompted_at if prompted_at is not None and prompted_at >= silent_since else None
    base = Judgement(
        Verdict.OK, now, silent_since, silence_h, threshold, mode, last, (), None, prompt_h, asked
    )
    verdict = Verdict.ALERT
    if silence_h <= threshold:
        if asked is not None:
            waited = now - asked >= timedelta(minutes=s.prompt_wait_min)
            hold_h = 0.0
            if mode is Mode.HOME and prompt_baseline is not None and s.prompt_hold_for_outings:
                hold_h = prompt_baseline.unanswered_h(now, tz)  # maybe out: no news before
            verdict = Verdict.ALERT if waited and silence_h > hold_h else Verdict.PROMPTED
        elif silence_h > prompt_h:
            verdict = Verdict.PROMPT
        else:
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
    return _replace(base, verdict, ())


def _replace(j: Judgement, verdict: Verdict, faulty: tuple[str, ...]) -> Judgement:
    return replace(j, verdict=verdict, faulty_meters=faulty)


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
