"""``python -m simulators care-bound``: the least that *any* silence rule could do (issue #15).

The care simulation (:mod:`simulators.care`) scores the hub's rules on a simulated month.
When a rule misses the goals (median delay ≤ 4 h, p90 ≤ 8 h, ≤ 1 false welfare check per
100 residents a week), is the rule weak, or is the problem this hard with these signals?
This module answers that on the same simulated residents.

The argument. At any moment of a silence a rule knows when the silence began, what the last
activity was (something at home, or a door pass) and everything before; a fall and an
ordinary quiet spell (a nap, an outing whose exit no door saw, an early night) that began
in the same circumstances look exactly alike until the quiet spell ends. So a rule comes
down to a waiting time per circumstance: raise the welfare check when a silence that began
in circumstance ``c`` has lasted ``T(c)``. Here the circumstance is the resident, weekday
or weekend, the local quarter hour the silence began and whether it began at the door,
which is everything the hub's :func:`~hub.domain.wellbeing.judge` looks at within one
silence (its baselines are the resident's habits, which the oracle below knows exactly).

The oracle knows each resident's habits exactly: how often *that* resident's ordinary
silences that begin in ``c`` run past any ``T`` (counted on a long simulated life of the
same resident, ``--days``), and where their falls come (at a random moment of activity at
home, as in the month). It picks ``T(c)`` for every resident and circumstance to meet a
delay goal with the fewest false checks. That choice is a linear programme; its Lagrangian
dual gives a **lower bound** (weak duality): no waiting-time rule, learnt or fixed, raises
fewer false checks for that goal on these residents. Every approximation is in the rule's
favour: a fall's delay is counted as if it came 20 minutes after the last activity (the
most it does), an appliance left on after a fall is ignored, silences that overlap a meter
fault or a marked absence raise nothing; and the counts are estimates from ``--days`` of
life, whose noise also tilts the bound down (a circumstance that happened to stay quiet
looks free).

With the "are you OK?" prompt a silence can end in an answer: the same bound is computed
for a rule that asks at ``T(c)`` and raises the welfare check ``prompt_wait_min`` later if
nobody answered, with the answer chances of the month's
:class:`~simulators.care.AnswerModel` (the button only, as the hub is built; and with an
automated call to a mobile on file), asking at any hour (the hub does not, at night).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import math
import os
import random
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from hub.domain.wellbeing import SLOT_MIN, Source
from simulators.care import ANSWER_MODELS, TZ, AnswerModel, Resident, simulate_resident

#: The fall comes up to this long after the last activity (``care.inject_incident``).
FALL_AFTER_H = 1 / 3
#: The delay the goals allow: the median within 4 h, the 90th percentile within 8 h.
GOALS = ((0.5, 4.0), (0.9, 8.0))
#: A welfare check later than this does not count as detecting the fall (``care``).
LATEST_H = 48.0
#: The delay levels tried (hours), and the false-check budgets (per 100 residents a week).
LEVELS = tuple(h / 2 for h in range(4, 33))
BUDGETS = (1.0, 2.0, 4.0)
WAIT_H = 0.5  # the prompt's wait (prompt_wait_min, 30 min)

#: (weekend, the local quarter hour the silence began, began at the door)
Context = tuple[int, int, bool]


class _Spans:
    """Merged time spans with a fast "is this moment inside one?"."""

    def __init__(self, spans: Iterable[tuple[datetime, datetime]]) -> None:
        merged: list[list[datetime]] = []
        for t0, t1 in sorted(spans):
            if merged and t0 <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], t1)
            else:
                merged.append([t0, t1])
        self.starts = [m[0] for m in merged]
        self.ends = [m[1] for m in merged]

    def covers(self, at: datetime) -> bool:
        i = bisect.bisect_right(self.starts, at) - 1
        return i >= 0 and at < self.ends[i]

    def overlaps(self, t0: datetime, t1: datetime) -> bool:
        i = bisect.bisect_right(self.ends, t0)  # the first span ending after t0
        return i < len(self.starts) and self.starts[i] < t1


@dataclass(frozen=True, slots=True)
class Silence:
    context: Context
    start: datetime
    hours: float


def _context(at: datetime, door: bool) -> Context:
    local = at.astimezone(TZ)
    return (1 if local.weekday() >= 5 else 0, (local.hour * 60 + local.minute) // SLOT_MIN, door)


def silences(res: Resident, at_least_h: float = 1.0) -> list[Silence]:
    """The resident's silences (between two activities) of at least ``at_least_h``,
    restarted at the end of a marked absence (as the hub's judgement does); dropped where a
    meter fault or an absence would keep the hub quiet anyway (in the rule's favour)."""
    away = _Spans((p.starts_at, p.ends_at) for p in res.marked_away)
    faults = _Spans(res.meter_faults)
    found: list[Silence] = []
    acts = res.activities
    for a, b in itertools.pairwise(acts):
        start, door = a.at, a.source is Source.DOOR
        if away.overlaps(start, b.at):
            ends = [p.ends_at for p in res.marked_away if start < p.ends_at < b.at]
            if not ends:
                continue  # away until the next activity
            start, door = max(ends), False
        hours = (b.at - start).total_seconds() / 3600
        if hours >= at_least_h and not faults.overlaps(start, b.at):
            found.append(Silence(_context(start, door), start, hours))
    return found


def fall_mass(res: Resident) -> dict[Context, float]:
    """Where this resident's falls begin their silence, as shares: a fall comes at a random
    moment of activity at home (``care.inject_incident``), never while marked away."""
    away = _Spans((p.starts_at, p.ends_at) for p in res.marked_away)
    counts: dict[Context, int] = {}
    for a in res.activities:
        if a.source is not Source.DOOR and not away.covers(a.at):
            c = _context(a.at, False)
            counts[c] = counts.get(c, 0) + 1
    total = sum(counts.values())
    return {c: n / total for c, n in counts.items()} if total else {}


@dataclass(frozen=True, slots=True)
class Variant:
    """How the rule reacts when a silence reaches ``T(c)``."""

    name: str
    answers: AnswerModel | None  # None: no prompt, the welfare check at T(c)


VARIANTS = (
    Variant("silence only (no prompt)", None),
    Variant("prompt on the button (the hub as built)", ANSWER_MODELS["button-only"]),
    Variant("prompt, and a call to a mobile on file", ANSWER_MODELS["default"]),
)


def _doing(res: Resident, spans: dict[str, _Spans], at: datetime) -> str:
    if spans["outside"].covers(at):
        return "out"
    if not spans["awake"].covers(at):
        return "asleep"
    return "napping" if spans["naps"].covers(at) else "awake"


def costs(
    res: Resident, found: Sequence[Silence], delay_h: float, v: Variant, draw: float = 1.0
) -> dict[Context, float]:
    """False welfare checks (count over the resident's simulated life) per circumstance,
    when the rule acts so that a fall is found within ``delay_h``. ``draw``: the resident's
    uniform draw that decides, as in the month, whether a mobile is on file."""
    t_h = delay_h + FALL_AFTER_H - (WAIT_H if v.answers else 0.0)
    spans = {
        "outside": _Spans(res.outside),
        "awake": _Spans(res.awake),
        "naps": _Spans(res.naps),
    }
    out: dict[Context, float] = {}
    for s in found:
        if v.answers is None:
            if s.hours > t_h:
                out[s.context] = out.get(s.context, 0.0) + 1.0
            continue
        if s.hours > t_h + WAIT_H:  # asked at T, still quiet when the wait is over
            doing = _doing(res, spans, s.start + timedelta(hours=t_h))
            unanswered = 1.0 - v.answers.chance(doing, draw < v.answers.mobile_share)
            if unanswered > 0:
                out[s.context] = out.get(s.context, 0.0) + unanswered
    return out


@dataclass(slots=True)
class Item:
    """One resident's circumstance: its share of all falls, and what each level costs."""

    fall: float
    #: delay level (h) → false checks: counts of a resident's life in :meth:`_Life.resident`,
    #: per 100 residents a week in :func:`run`
    cost: dict[float, float]


def lower_bound(
    items: Sequence[Item], fast: tuple[float, float], slow: tuple[float, float] | None = None
) -> float:
    """The least false checks of any choice of waiting times that finds a share ``q`` of
    falls within ``d`` hours for ``fast = (q, d)`` and, if given, ``slow = (q2, d2)`` with
    ``q2 > q`` and ``d2 > d``, the rest within :data:`LATEST_H`.

    The Lagrangian dual of that linear programme (a valid lower bound at any multipliers,
    by weak duality), maximised: exactly over the first multiplier (the dual is piecewise
    linear in it), by golden-section search over the second (it is concave)."""
    if slow is None:
        return _dual(items, fast, None, 0.0)
    return _golden(lambda lam: _dual(items, fast, slow, lam))


def _dual(
    items: Sequence[Item], fast: tuple[float, float], slow: tuple[float, float] | None, lam2: float
) -> float:
    """max over λ1 ≥ 0 of the Lagrangian at (λ1, ``lam2``)."""
    q1, d1 = fast
    total = slow[0] * lam2 if slow is not None else 0.0
    switch: list[tuple[float, float]] = []  # (λ1 from which the fast level is the cheaper, share)
    rest: list[tuple[float, float, float]] = []  # (fast level's cost at λ1 = 0, share, other)
    for it in items:
        other = it.cost[LATEST_H]
        if slow is not None:
            other = min(other, it.cost[slow[1]] - it.fall * lam2)
        a0 = it.cost[d1] - it.fall * lam2
        rest.append((a0, it.fall, other))
        if it.fall > 0:
            switch.append(((a0 - other) / it.fall, it.fall))
    # the slope in λ1 is q1 minus the shares already switched to the fast level: the
    # maximum is where those shares reach q1
    switch.sort()
    covered, lam1 = 0.0, math.inf
    for t, share in switch:
        covered += share
        if covered >= q1 - 1e-12:
            lam1 = max(0.0, t)
            break
    if math.isinf(lam1):
        return math.inf  # not even every circumstance at the fast level covers q1
    return total + q1 * lam1 + sum(min(a0 - f * lam1, other) for a0, f, other in rest)


def _golden(g: Callable[[float], float]) -> float:
    """The maximum over x ≥ 0 of a concave g, by golden-section search on a log scale."""
    lo, hi = -4.0, 8.0
    ratio = (5**0.5 - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = g(10**a), g(10**b)
    for _ in range(40):
        if fa < fb:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = g(10**b)
        else:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = g(10**a)
    return max(fa, fb, g(0.0))


def best_delay(
    items: Sequence[Item], share: float, budget: float, levels: Sequence[float]
) -> float:
    """The shortest of ``levels`` within which a ``share`` of falls could be found with no
    more than ``budget`` false checks (a lower bound on the delay: no rule does better);
    inf when none of them can."""
    for d in sorted(levels):
        if lower_bound(items, (share, d)) <= budget:
            return d
    return math.inf


@dataclass(frozen=True, slots=True)
class _Life:
    seed: int
    days: int
    delays: tuple[float, ...]

    def resident(self, n: int) -> dict[str, list[Item]]:
        """Resident ``n``: their circumstances under each variant (costs still as counts)."""
        rng = random.Random(self.seed * 1_000_003 + n)
        res = simulate_resident(rng, datetime(2026, 3, 2, tzinfo=TZ), self.days)
        draw = random.Random(self.seed * 1_000_003 + n + 500_000_000).random()
        found = silences(res)
        mass = fall_mass(res)
        by_variant: dict[str, list[Item]] = {}
        for v in VARIANTS:
            levels = {d: costs(res, found, d, v, draw) for d in self.delays}
            by_variant[v.name] = [
                Item(share, {d: levels[d].get(c, 0.0) for d in self.delays})
                for c, share in mass.items()
            ]
        return by_variant


def run(households: int, days: int, seed: int, jobs: int = 1) -> str:
    life = _Life(seed, days, (*LEVELS, LATEST_H))
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            lived = list(pool.map(life.resident, range(households), chunksize=10))
    else:
        lived = [life.resident(n) for n in range(households)]
    weeks = days / 7
    (q1, d1), (q2, d2) = GOALS
    lines = [
        f"the best any silence rule could do: {households} simulated residents, {days} days "
        f"each, seed {seed}",
        "an oracle that knows each resident's habits (by weekday or weekend, the quarter "
        "hour a silence began, at home or at the door); lower bounds (LP duality), every "
        "approximation in the rule's favour",
        "",
        "| rule | least false checks / 100 / week for median ≤ 4 h and p90 ≤ 8 h | "
        + " | ".join(f"best median, p90 h with ≤ {b:g} false / 100 / week" for b in BUDGETS)
        + " |",
        "|---|---|" + "---|" * len(BUDGETS),
    ]
    for v in VARIANTS:
        # each resident equally likely to fall; costs per 100 residents a week
        items = [
            Item(
                it.fall / households,
                {d: 100 * c / (households * weeks) for d, c in it.cost.items()},
            )
            for resident in lived
            for it in resident[v.name]
        ]
        goal = lower_bound(items, (q1, d1), (q2, d2))
        best = [
            f"{best_delay(items, q1, b, LEVELS):g}, {best_delay(items, q2, b, LEVELS):g}"
            for b in BUDGETS
        ]
        lines.append(f"| {v.name} | {goal:.2f} | " + " | ".join(best) + " |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--households", type=int, default=500, help="simulated residents")
    parser.add_argument("--days", type=int, default=364, help="days of each resident's life")
    parser.add_argument("--seed", type=int, default=1, help="RNG seed (as in `care`)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")


def main(args: argparse.Namespace) -> int:
    if args.households < 1 or args.days < 28 or args.jobs < 1:
        print("--households ≥ 1, --days ≥ 28, --jobs ≥ 1 / 住户数至少 1，天数至少 28，进程数至少 1")
        return 2
    print(run(args.households, args.days, args.seed, args.jobs))
    return 0
