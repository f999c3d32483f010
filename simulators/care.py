"""``python -m simulators care``: a simulated month of the wellbeing watch (issue #15).

Thousands of residents who live alone, each with a daily rhythm of their own, are played
through a month on an accelerated clock, in process, and judged by the hub's own rules
(:func:`hub.domain.wellbeing.judge`) every ``--check-min`` minutes, the way the hub's
periodic check does. Three rules are compared on the same month: the learnt rhythm with
the "are you OK?" prompt first, the learnt rhythm alone, and the fixed 12-hour rule the
water utilities use (the same ``judge`` with an untrained baseline), with the same signals,
away marks and meter-fault handling, so only the threshold differs. Residents are
independent, so they are played in ``--jobs`` worker processes (the figures do not depend
on how many). Beside each rule's figures: its false checks by what the resident was
really doing (which no rule sees), and the delay of falls near bedtime apart. What any
rule could do at best on the same residents: :mod:`simulators.care_bound`.

What a resident does (all drawn from a seeded RNG; see ``docs/care.md`` for the numbers):
a wake and bed time of their own (early risers, night owls; later at weekends), water and
electricity use while up at a rate of their own with quiet spells (naps, reading), night
toilet visits, outings most days (market, park; now and then a whole day out), a door pass
when entering (face recognition) and, only where the door reads faces on the way out too
(``TWO_WAY_SHARE`` of residents), when leaving; trips away for some days
(travel, hospital, a stay with family) that the worker marks away most of the time, water
meters that stop reporting for a while. Before the measured month, 28 days of the same
life teach the baseline, relearnt every simulated day as the hub does.

Incidents: some residents fall once in the month, at a random moment while they are up and
about at home (falls happen while moving, not in bed), and from then on nothing moves;
sometimes an appliance left on keeps drawing power for a few hours. An incident counts as
detected when the rule raises a welfare check within 48 h; every other welfare check is a
false one.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import time as walltime
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hub.domain.wellbeing import (
    SLOT_MIN,
    Activity,
    AwayPeriod,
    Baseline,
    MeterHealth,
    QuietHistory,
    Source,
    Verdict,
    WatchSettings,
    judge,
    learn_baseline,
    learn_prompt_baseline,
    quiet_history,
)

TZ = ZoneInfo("Asia/Shanghai")
WARMUP_DAYS = 28
DETECT_WITHIN = timedelta(hours=48)
ELECTRICITY_READ = timedelta(minutes=15)  # the poll the watch needs (docs/care.md)


Span = tuple[datetime, datetime]


@dataclass(slots=True)
class Resident:
    activities: list[Activity] = field(default_factory=list)
    marked_away: list[AwayPeriod] = field(default_factory=list)
    meter_faults: list[Span] = field(default_factory=list)
    incident_at: datetime | None = None
    # what the resident is doing, for the answer to a prompt only (the rules never see it)
    awake: list[Span] = field(default_factory=list)  # up, from waking to going to bed
    naps: list[Span] = field(default_factory=list)
    outside: list[Span] = field(default_factory=list)  # outings and trips
    has_mobile: bool = False  # a mobile phone on file: the automated call reaches them out

    def doing(self, at: datetime) -> str:
        """fallen | out | asleep | napping | awake (at home and up)."""
        if self.incident_at is not None and at >= self.incident_at:
            return "fallen"
        if any(t0 <= at < t1 for t0, t1 in self.outside):
            return "out"
        if not any(t0 <= at < t1 for t0, t1 in self.awake):
            return "asleep"
        if any(t0 <= at < t1 for t0, t1 in self.naps):
            return "napping"
        return "awake"


def _hours(rng: random.Random, mean: float, sd: float, low: float, high: float) -> float:
    return min(high, max(low, rng.gauss(mean, sd)))


def _at(day_start: datetime, hours: float) -> datetime:
    return day_start + timedelta(hours=hours)


#: Share of residents whose building or compound gate recognises faces on the way out too
#: (a reader on both sides); elsewhere the way out is a push button that logs nobody.
TWO_WAY_SHARE = 0.5


def simulate_resident(
    rng: random.Random,
    start: datetime,
    days: int,
    *,
    door_sees_exits: bool = False,
    two_way_share: float = TWO_WAY_SHARE,
) -> Resident:
    """One resident's life, ``days`` long from local midnight ``start``; with
    ``door_sees_exits`` every outing leaves by a door that recognises faces both ways."""
    wake = _hours(rng, 6.5, 1.0, 4.5, 9.5)  # early risers … night owls
    awake_h = _hours(rng, 16.0, 0.8, 14.0, 18.0)
    water_rate = rng.uniform(0.5, 2.0)  # toilet, kitchen, washing: uses an hour while up
    tv_share = rng.uniform(0.2, 0.7)  # share of the waking day with an appliance on
    out_per_day = rng.uniform(0.3, 1.3)
    two_way = rng.random() < two_way_share
    # leaving by a two-way face door (others: by car, a side gate, with a neighbour)
    exit_seen = rng.uniform(0.8, 0.95) if two_way else 0.0
    if door_sees_exits:
        exit_seen = 1.0
    nocturia = rng.uniform(0.3, 2.0)  # night toilet visits
    res = Resident()
    events: list[Activity] = []
    trips: list[tuple[datetime, datetime]] = []
    for d in range(days):
        day_start = start + timedelta(days=d)
        weekend = day_start.weekday() >= 5
        if any(t0 <= day_start and day_start + timedelta(days=1) <= t1 for t0, t1 in trips):
            continue  # a whole day away
        up = wake + (rng.uniform(0, 1.5) if weekend else 0) + rng.gauss(0, 0.5)
        down = up + awake_h + rng.gauss(0, 0.6)
        if rng.random() < 0.03:
            up += rng.uniform(1, 2.5)  # a poor night, a late morning
        gone = bool(trips) and trips[-1][1] >= day_start
        if d > 0 and not gone and rng.random() < 1 / 60:  # travel, hospital, family visit
            leave = _at(day_start, up + rng.uniform(1, 8))
            back = leave + timedelta(days=rng.uniform(1.5, 9))
            trips.append((leave, back))
            events.append(Activity(leave, Source.DOOR))
            events.append(Activity(back, Source.DOOR))
            events.append(Activity(back + timedelta(minutes=10), Source.WATER))
            if rng.random() < 0.95:  # the worker or desk marks it, end date a bit generous
                res.marked_away.append(
                    AwayPeriod(leave - timedelta(hours=1), back + timedelta(hours=12), "travel")
                )
        quiet: list[tuple[float, float]] = []  # nap, reading: at home, nothing moves
        outs: list[tuple[float, float]] = []
        for _ in range(_poisson(rng, out_per_day)):
            begin = rng.uniform(up + 0.5, down - 1.5)
            length = min(rng.lognormvariate(math.log(1.8), 0.5), 6.0)
            if rng.random() < 0.02:
                length = rng.uniform(6, 11)  # a whole day out
            outs.append((begin, begin + length))
        if rng.random() < 0.5:
            nap = rng.uniform(12.5, 14.5)
            quiet.append((nap, nap + rng.uniform(0.5, 2.0)))
            res.naps.append((_at(day_start, quiet[-1][0]), _at(day_start, quiet[-1][1])))
        if rng.random() < 0.3:
            read = rng.uniform(up + 1, down - 2)
            quiet.append((read, read + rng.uniform(0.5, 2.0)))
        busy = sorted(quiet + outs)
        res.awake.append((_at(day_start, up), _at(day_start, down)))
        res.outside.extend((_at(day_start, b0), _at(day_start, b1)) for b0, b1 in outs)

        def free(h: float, busy: list[tuple[float, float]] = busy) -> bool:
            return not any(b0 <= h < b1 for b0, b1 in busy)

        for b0, b1 in outs:
            if rng.random() < exit_seen:
                events.append(Activity(_at(day_start, b0), Source.DOOR))
            if rng.random() < 0.95:
                events.append(Activity(_at(day_start, b1), Source.DOOR))
        h = up
        while h < down:  # water uses
            h += rng.expovariate(water_rate)
            if h < down and free(h):
                events.append(Activity(_at(day_start, h), Source.WATER))
        h = up
        while h < down:  # appliance sessions (TV, cooking, lights): drawn power
            gap = rng.expovariate(1 / max(0.2, 1.5 * (1 - tv_share)))
            length = rng.expovariate(1 / max(0.2, 1.5 * tv_share))
            h += gap
            end = min(down, h + length)
            while h < end:
                if free(h):
                    events.append(Activity(_at(day_start, h), Source.ELECTRICITY))
                h += 0.25
        for _ in range(_poisson(rng, nocturia)):  # night toilet: a flush
            events.append(Activity(_at(day_start, rng.uniform(down, up + 24)), Source.WATER))
        if rng.random() < 0.004:  # the water meter stops reporting for a while
            fault = _at(day_start, rng.uniform(0, 24))
            res.meter_faults.append((fault, fault + timedelta(hours=rng.uniform(2, 30))))
    events = [
        e for e in events if e.source is Source.DOOR or not any(t0 <= e.at < t1 for t0, t1 in trips)
    ]
    res.outside.extend(trips)
    res.activities = _observed(sorted(events, key=lambda a: a.at), res.meter_faults)
    return res


def _observed(events: list[Activity], faults: list[tuple[datetime, datetime]]) -> list[Activity]:
    """What the hub sees: water use is lost while the meter is down; electricity shows at
    the end of the 15-minute read in which it was drawn."""
    seen: list[Activity] = []
    for a in events:
        if a.source is Source.WATER and any(f0 <= a.at < f1 for f0, f1 in faults):
            continue
        if a.source is Source.ELECTRICITY:
            epoch = datetime(2000, 1, 1, tzinfo=UTC)
            reads = math.ceil((a.at - epoch) / ELECTRICITY_READ)
            a = Activity(epoch + reads * ELECTRICITY_READ, a.source)
        seen.append(a)
    seen.sort(key=lambda a: a.at)
    return seen


def _poisson(rng: random.Random, mean: float) -> int:
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def inject_incident(rng: random.Random, res: Resident, first: datetime, last: datetime) -> None:
    """A fall at a random moment while the resident is up at home; nothing moves after
    (but an appliance left on may go on drawing power for a while)."""
    home = [a for a in res.activities if first <= a.at < last and a.source is not Source.DOOR]
    home = [a for a in home if not any(p.covers(a.at) for p in res.marked_away)]
    if not home:
        return
    anchor = rng.choice(home).at
    at = anchor + timedelta(minutes=rng.uniform(0, 20))
    res.incident_at = at
    kept = [a for a in res.activities if a.at <= at]
    if rng.random() < 0.25:  # the TV or a heater stays on
        left_on = at + timedelta(hours=rng.uniform(1, 4))
        t = at + ELECTRICITY_READ
        while t < left_on:
            kept.append(Activity(t, Source.ELECTRICITY))
            t += ELECTRICITY_READ
    res.activities = kept


@dataclass(frozen=True, slots=True)
class AnswerModel:
    """Who answers an "are you OK?" prompt within ``prompt_wait_min`` (assumed, not
    measured; ``docs/care.md``). At home the CB-100 beeps and blinks: pressing the green key
    answers. Out, only a mobile phone on file can ask (the automated call), if heard. A
    fallen resident never answers (conservative: some could reach the key or the phone)."""

    awake: float = 0.93  # at home and up (a quiet read included)
    napping: float = 0.75  # the beep may not wake them, or they are slow to get up
    asleep: float = 0.5  # still in bed past their usual hour (prompts avoid the usual night)
    mobile_share: float = 0.6  # residents with a mobile on file
    mobile_heard: float = 0.7  # out (or away, unmarked), the call is heard and answered

    def answers(self, res: Resident, at: datetime, rng: random.Random) -> bool:
        chance = self.chance(res.doing(at), res.has_mobile)
        return chance > 0 and rng.random() < chance

    def chance(self, doing: str, has_mobile: bool) -> float:
        """The chance that a resident ``doing`` this (:meth:`Resident.doing`) answers."""
        if doing == "fallen":
            return 0.0
        if doing == "out":
            return self.mobile_heard if has_mobile else 0.0
        return {"asleep": self.asleep, "napping": self.napping}.get(doing, self.awake)


ANSWER_MODELS = {
    "low": AnswerModel(0.85, 0.6, 0.35, 0.4, 0.5),
    "default": AnswerModel(),
    "high": AnswerModel(0.97, 0.9, 0.7, 0.8, 0.85),
    "button-only": AnswerModel(mobile_share=0.0),  # the hub as built: no automated call yet
}


@dataclass(slots=True)
class Outcome:
    delays_h: list[float] = field(default_factory=list)
    missed: int = 0
    false_checks: int = 0
    prompts: int = 0  # prompts to residents who had not fallen (the burden on them)
    answered: int = 0
    #: false checks by what the resident was doing (:func:`_false_kind`)
    false_by: dict[str, int] = field(default_factory=dict)
    #: delays of the falls within :data:`LATE_FALL_H` of the resident's bedtime
    late_delays_h: list[float] = field(default_factory=list)

    def merge(self, other: Outcome) -> None:
        self.delays_h.extend(other.delays_h)
        self.missed += other.missed
        self.false_checks += other.false_checks
        self.prompts += other.prompts
        self.answered += other.answered
        for kind, n in other.false_by.items():
            self.false_by[kind] = self.false_by.get(kind, 0) + n
        self.late_delays_h.extend(other.late_delays_h)


#: A fall this close to the resident's bedtime looks like going to bed early.
LATE_FALL_H = 3.0
#: What a resident was doing when a welfare check came for nothing (printed in this order).
FALSE_KINDS = (
    "out, left unseen",
    "out, left by the face door",
    "away, not marked",
    "asleep or in bed late",
    "napping",
    "at home, up",
)


def _false_kind(res: Resident, at: datetime) -> str:
    doing = res.doing(at)
    if doing == "out":
        if any(t1 - t0 > timedelta(days=1) and t0 <= at < t1 for t0, t1 in res.outside):
            return "away, not marked"
        last = max((a for a in res.activities if a.at <= at), key=lambda a: a.at, default=None)
        seen = last is not None and last.source is Source.DOOR
        return "out, left by the face door" if seen else "out, left unseen"
    return {"asleep": "asleep or in bed late", "napping": "napping"}.get(doing, "at home, up")


def _grid(at: datetime, step: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    return epoch + math.ceil((at - epoch) / step) * step


@dataclass(slots=True)
class Watched:
    alerts: list[datetime] = field(default_factory=list)
    prompts: list[tuple[datetime, bool]] = field(default_factory=list)  # (when, answered)


def welfare_alerts(
    res: Resident,
    baselines: dict[date, Baseline] | Baseline,
    history: QuietHistory | None,
    s: WatchSettings,
    first: datetime,
    end: datetime,
    check: timedelta,
    watch_started_at: datetime,
    *,
    prompts: dict[date, Baseline] | None = None,
    answers: AnswerModel | None = None,
    rng: random.Random | None = None,
) -> Watched:
    """When the hub's periodic check would raise a welfare check (one per silence) and,
    with ``prompts`` (the prompt baselines by day, learnt as the days come), when it would
    ask the resident first; an answer (``answers``) is an activity that ends the silence."""
    events = [a for a in res.activities if a.at < end]
    last: dict[Source, datetime] = {}
    out = Watched()
    lowest = s.floor_h if isinstance(baselines, dict) else s.fallback_h
    if prompts is not None:
        lowest = min(lowest, s.prompt_floor_h)
    wait = timedelta(minutes=s.prompt_wait_min)
    stream = [*events, Activity(end, Source.BUTTON)]
    gap_start = first
    meters_ok = [MeterHealth(Source.WATER, "wm", None)]
    idx = 0
    while idx < len(stream):
        a = stream[idx]
        t = _grid(max(first, gap_start + timedelta(hours=lowest)), check)
        prompted_at: datetime | None = None
        answered_at: datetime | None = None
        while t < a.at:
            baseline = _baseline_for(baselines, history, s, t)
            fault = next((f0 for f0, f1 in res.meter_faults if f0 <= t < f1), t)
            meters_ok[0] = MeterHealth(Source.WATER, "wm", fault)
            asking = None if prompts is None else _baseline_for(prompts, history, s, t, True)
            j = judge(
                t,
                last,
                baseline,
                TZ,
                s,
                watch_started_at=watch_started_at,
                away=res.marked_away,
                meters=meters_ok,
                prompt_baseline=asking,
                prompted_at=prompted_at,
                prompt_out=res.has_mobile,
            )
            if j.verdict is Verdict.ALERT:
                out.alerts.append(t)
                break
            if j.verdict is Verdict.PROMPT:
                assert answers is not None and rng is not None
                prompted_at = t
                said = answers.answers(res, t, rng)
                out.prompts.append((t, said))
                reply = t + rng.uniform(0.05, 0.95) * wait
                if said and reply < a.at:
                    answered_at = reply
                    break
            t += check
            slot_end = _grid(j.now + timedelta(microseconds=1), timedelta(minutes=SLOT_MIN))
            if j.verdict is Verdict.OK:  # no change before the silence reaches a threshold
                reach = j.now + timedelta(hours=j.next_h - j.silence_h)
                t = max(t, _grid(min(reach, slot_end), check))
            elif j.verdict is Verdict.PROMPTED and asking is not None and prompted_at is not None:
                # no change before the wait is over and the silence is past the hold
                hold = timedelta(hours=asking.unanswered_h(j.now, TZ) - j.silence_h)
                due = max(prompted_at + wait, j.now + hold)
                reach = j.now + timedelta(hours=j.threshold_h - j.silence_h)
                t = max(t, _grid(min(due, reach, slot_end), check))
        if answered_at is not None:  # the silence ends here; the rest of the gap goes on
            last[Source.ANSWER] = answered_at
            gap_start = answered_at
            continue
        if a.at < end:
            last[a.source] = a.at
        gap_start = a.at
        idx += 1
    return out


def _baseline_for(
    baselines: dict[date, Baseline] | Baseline,
    history: QuietHistory | None,
    s: WatchSettings,
    t: datetime,
    prompt: bool = False,
) -> Baseline:
    if isinstance(baselines, Baseline):
        return baselines
    day = t.astimezone(TZ).date()
    found = baselines.get(day)
    if found is None:
        assert history is not None
        learn = learn_prompt_baseline if prompt else learn_baseline
        found = baselines[day] = learn(history, s, until=day)
    return found


@dataclass(frozen=True, slots=True)
class _Month:
    """The measured month, the same for every resident: what a worker process needs."""

    seed: int
    sim_start: datetime
    first: datetime
    end: datetime
    incident_last: datetime
    check: timedelta
    s: WatchSettings
    door_sees_exits: bool
    answers: AnswerModel | None
    without: bool = True

    def rules(self) -> list[str]:
        names = ["learnt rhythm + prompt"] if self.answers is not None else []
        return names + (["learnt rhythm", "fixed 12 h"] if self.without else [])

    def resident(self, n: int) -> tuple[bool, dict[str, Outcome]]:
        """Resident ``n``'s month under every rule: (fell, outcome by rule)."""
        rng = random.Random(self.seed * 1_000_003 + n)
        res = simulate_resident(
            rng,
            self.sim_start,
            WARMUP_DAYS + (self.end - self.first).days,
            door_sees_exits=self.door_sees_exits,
        )
        if rng.random() < 0.25:  # a quarter of residents fall once in the month
            inject_incident(rng, res, self.first, self.incident_last)
        # the answers draw from generators of their own: the month lived stays the same
        answer_rng = random.Random(self.seed * 1_000_003 + n + 500_000_000)
        if self.answers is not None:
            res.has_mobile = answer_rng.random() < self.answers.mobile_share
        history = quiet_history(res.activities, self.sim_start, self.end, TZ, res.marked_away)
        learnt: dict[date, Baseline] = {}
        fixed = Baseline(False, ((0.0,) * 24,) * 2, ((0.0,) * 24,) * 2, 0)
        scored: dict[str, Outcome] = {}
        for name in self.rules():
            watched = welfare_alerts(
                res,
                fixed if name.startswith("fixed") else learnt,
                history,
                self.s,
                self.first,
                self.end,
                self.check,
                watch_started_at=self.sim_start,
                prompts={} if name.endswith("prompt") else None,
                answers=self.answers,
                rng=answer_rng,
            )
            scored[name] = outcome = Outcome()
            _score(outcome, res, watched)
        return res.incident_at is not None, scored


def run(
    households: int,
    days: int,
    seed: int,
    check_min: float,
    s: WatchSettings,
    *,
    door_sees_exits: bool = False,
    answers: AnswerModel | None = None,
    without: bool = True,
    jobs: int = 1,
) -> str:
    """The month for every resident under the learnt rule with prompts (when ``answers``),
    and, with ``without``, the learnt rule without prompts and the fixed 12 h rule."""
    check = timedelta(minutes=check_min)
    sim_start = datetime(2026, 3, 2, tzinfo=TZ)  # a Monday
    first = sim_start + timedelta(days=WARMUP_DAYS)
    end = first + timedelta(days=days)
    incident_last = end - DETECT_WITHIN
    began = walltime.monotonic()
    month = _Month(
        seed, sim_start, first, end, incident_last, check, s, door_sees_exits, answers, without
    )
    rules = {name: Outcome() for name in month.rules()}
    # residents are independent and each draws from generators of its own, so the result
    # is the same whatever the number of processes (map keeps the residents' order)
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            lived = list(pool.map(month.resident, range(households), chunksize=20))
    else:
        lived = [month.resident(n) for n in range(households)]
    incidents = sum(fell for fell, _ in lived)
    for _, scored in lived:
        for name, outcome in rules.items():
            outcome.merge(scored[name])
    weeks = households * days / 7
    elapsed = walltime.monotonic() - began
    table = _table(households, days, seed, check_min, incidents, weeks, rules, elapsed, s, answers)
    return f"what if: the door sees every exit\n{table}" if door_sees_exits else table


def _score(outcome: Outcome, res: Resident, watched: Watched) -> None:
    incident = res.incident_at
    detected = False
    for at in watched.alerts:
        if incident is not None and incident <= at <= incident + DETECT_WITHIN and not detected:
            delay = (at - incident).total_seconds() / 3600
            outcome.delays_h.append(delay)
            bed = next((t1 for t0, t1 in res.awake if t0 <= incident < t1), incident)
            if bed - incident <= timedelta(hours=LATE_FALL_H):
                outcome.late_delays_h.append(delay)
            detected = True
        elif incident is None or at < incident:
            outcome.false_checks += 1
            kind = _false_kind(res, at)
            outcome.false_by[kind] = outcome.false_by.get(kind, 0) + 1
    for at, said in watched.prompts:
        if incident is None or at < incident:
            outcome.prompts += 1
            outcome.answered += said
    if incident is not None and not detected:
        outcome.missed += 1


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _table(
    households: int,
    days: int,
    seed: int,
    check_min: float,
    incidents: int,
    weeks: float,
    rules: dict[str, Outcome],
    elapsed: float,
    s: WatchSettings,
    answers: AnswerModel | None,
) -> str:
    def row(name: str, o: Outcome) -> str:
        found = len(o.delays_h)
        share = 100 * found / incidents if incidents else float("nan")
        median = statistics.median(o.delays_h) if o.delays_h else float("nan")
        asked = (
            f"{100 * o.prompts / weeks:.1f} ({100 * o.answered / o.prompts:.0f} %)"
            if o.prompts
            else ("0" if name.endswith("prompt") else "-")
        )
        return (
            f"| {name} | {found}/{incidents} ({share:.1f} %) | {o.missed} | {median:.1f} | "
            f"{_pct(o.delays_h, 0.9):.1f} | {max(o.delays_h, default=float('nan')):.1f} | "
            f"{100 * o.false_checks / weeks:.2f} | {asked} |"
        )

    cpu = _cpu_model()
    lines = [
        f"care simulation: {households} residents living alone, {days} days "
        f"(after {WARMUP_DAYS} days of learning), seed {seed}, checked every {check_min:g} min",
        f"date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: nproc {os.cpu_count()}, "
        f"{cpu}; Python {platform.python_version()}; {elapsed:.0f} s",
        f"rules: floor {s.floor_h} h, ceiling {s.ceiling_h} h, out {s.out_h} h, usual longest "
        f"× {1 + s.stretch:g} + {s.slack_h} h (or up to {s.late_min} min earlier), history "
        f"{s.history_days} days, ignore longest {s.ignore_longest_days}; while up: risk "
        f"{s.daily_risk:g} a day, tail from {s.tail_from_h} h",
        f"doors: {100 * TWO_WAY_SHARE:.0f} % of residents have a face reader on the way out "
        "too (it sees 80-95 % of their exits), the rest an anonymous exit button",
    ]
    if answers is not None:
        lines += [
            f"prompt: risk {s.prompt_daily_risk:g} a day, floor {s.prompt_floor_h} h, usual "
            f"longest × {1 + s.prompt_stretch:g} + {s.prompt_slack_h} h, out {s.prompt_out_h} h "
            f"(mobile only), wait {s.prompt_wait_min:g} min"
            f"{' and past the unseen outings' if s.prompt_hold_for_outings else ''}, "
            "not in the learnt sleep window",
            f"answers within the wait: awake at home {answers.awake:g}, napping "
            f"{answers.napping:g}, in bed late {answers.asleep:g}, out by mobile "
            f"{answers.mobile_heard:g} ({100 * answers.mobile_share:.0f} % have one on file), "
            "fallen never",
        ]
    lines += [
        "",
        "| rule | incidents detected (≤ 48 h) | missed | median delay h | p90 h | max h "
        "| false checks / 100 residents / week | prompts / 100 / week (answered) |",
        "|---|---|---|---|---|---|---|---|",
        *(row(name, o) for name, o in rules.items()),
        "",
    ]
    for name, o in rules.items():
        kinds = [f"{k} {100 * o.false_by[k] / weeks:.2f}" for k in FALSE_KINDS if k in o.false_by]
        late = o.late_delays_h
        day = list(o.delays_h)
        for d in late:
            day.remove(d)
        lines.append(
            f"{name}: false checks / 100 / week while the resident was: "
            f"{'; '.join(kinds) or 'none'}. Delay median / p90 h: falls more than "
            f"{LATE_FALL_H:g} h before bedtime {_median(day):.1f} / {_pct(day, 0.9):.1f} "
            f"({len(day)}), within {LATE_FALL_H:g} h of it {_median(late):.1f} / "
            f"{_pct(late, 0.9):.1f} ({len(late)})"
        )
    return "\n".join(lines)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--households", type=int, default=2000, help="residents living alone")
    parser.add_argument("--days", type=int, default=30, help="days measured (after learning)")
    parser.add_argument("--seed", type=int, default=1, help="RNG seed (report more than one)")
    parser.add_argument("--check-min", type=float, default=10.0, help="the periodic check")
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (the figures do not depend on it; default: one per core)",
    )
    parser.add_argument(
        "--daily-risk",
        type=float,
        default=WatchSettings().daily_risk,
        help="the rule's accepted daily risk for quiet spells while up (the trade-off knob)",
    )
    parser.add_argument(
        "--door-sees-exits",
        action="store_true",
        help="what if: every outing passes a door that recognises faces both ways",
    )
    d = WatchSettings()
    parser.add_argument(
        "--answers",
        choices=[*ANSWER_MODELS, "none"],
        default="default",
        help="how readily residents answer the prompt (none: no prompt step)",
    )
    parser.add_argument("--prompt-daily-risk", type=float, default=d.prompt_daily_risk)
    parser.add_argument("--prompt-floor-h", type=float, default=d.prompt_floor_h)
    parser.add_argument("--prompt-stretch", type=float, default=d.prompt_stretch)
    parser.add_argument("--prompt-slack-h", type=float, default=d.prompt_slack_h)
    parser.add_argument("--prompt-out-h", type=float, default=d.prompt_out_h)
    parser.add_argument("--prompt-wait-min", type=float, default=d.prompt_wait_min)
    parser.add_argument(
        "--prompt-at-once",
        action="store_true",
        help="an unanswered prompt is a welfare check after the wait, even where the "
        "resident's outings are often not seen leaving",
    )
    parser.add_argument(
        "--prompt-only",
        action="store_true",
        help="only the rule with prompts (not the rules without, e.g. for the sensitivity)",
    )


def main(args: argparse.Namespace) -> int:
    if args.households < 1 or args.days < 3 or not 0 < args.daily_risk < 1 or args.jobs < 1:
        print(
            "--households ≥ 1, --days ≥ 3, 0 < --daily-risk < 1, --jobs ≥ 1 / "
            "住户数至少 1，天数至少 3，每日风险在 0 与 1 之间，进程数至少 1"
        )
        return 2
    try:
        s = WatchSettings(
            daily_risk=args.daily_risk,
            prompt_daily_risk=args.prompt_daily_risk,
            prompt_floor_h=args.prompt_floor_h,
            prompt_stretch=args.prompt_stretch,
            prompt_slack_h=args.prompt_slack_h,
            prompt_out_h=args.prompt_out_h,
            prompt_wait_min=args.prompt_wait_min,
            prompt_hold_for_outings=not args.prompt_at_once,
        )
    except ValueError as exc:
        print(f"设置无效 / invalid settings: {exc}")
        return 2
    table = run(
        args.households,
        args.days,
        args.seed,
        args.check_min,
        s,
        door_sees_exits=args.door_sees_exits,
        answers=None if args.answers == "none" else ANSWER_MODELS[args.answers],
        without=not args.prompt_only or args.answers == "none",
        jobs=args.jobs,
    )
    print(table)
    return 0
