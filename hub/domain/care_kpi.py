"""Care KPIs (照护指标): how well help calls are answered, defined once, from the audit trail.

Why one module: the KPI page, its CSV and any later report must agree to the second, and
"answered within 60 s" hides several choices. They are made here, and only here:

* **The clock starts** when the hub opened the case (``cases.opened_at``), on the hub's own
  clock. The edge's ``occurred_at`` is not used: an edge clock can be wrong (a dead RTC)
  and the hub's clock judges both ends. Time an alarm spent in transit is the business of
  the edge backlog and the benchmarks, not of this figure.
* **Answered** is the first ``acknowledge`` or ``arrive`` in the case's audit trail:
  whatever stopped the escalation clock. A later reassignment by the desk does not undo
  it (the resident's call *was* answered), which is why the audit is read rather than
  ``cases.acknowledged_at``, which a reassignment clears.
* **On site** is the first ``arrive`` (a worker's tap or the presence key).
* **Within 60 s / 180 s** (the telecare standard: 97.5 % within 60 s, 99 % within 180 s):
  the share of calls answered within the limit, among the calls already *decided*. A call
  still unanswered counts as missed once it is older than the limit at ``now``; before
  that it is left out of that share (it may still make it).
* **Median and p90** use the nearest-rank method (the p-th percentile is the smallest
  value with at least p % of the values at or below it), so every figure shown is a time
  that really happened; no figure for no values.
* **Escalations per tier**: calls routed to each tier beyond the grid worker (a
  notification at that tier, whether by timeout or because earlier tiers had nobody).
  Desk reassignments are counted apart.
* **Cancelled**: the resident's cancel stood (``cases.cancel_requested`` at the end; a
  later SOS withdraws it). **False calls**: resolved with outcome ``false_alarm``.
* **Per worker**: the calls a worker was notified of or answered; their figures say how
  fast the calls sent to them were answered, by anyone, so an ignored call counts.

No I/O here: :mod:`hub.services.care_kpi` reads the rows and calls in.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from hub.domain.escalation import TIERS, Tier
from hub.domain.notification import SERVICE_CATEGORIES

#: The telecare standard: (limit in seconds, share of calls that must be answered by then).
ANSWER_TARGETS: tuple[tuple[int, float], ...] = ((60, 0.975), (180, 0.99))
#: Tiers an escalation can reach (the grid worker is where a call starts).
ESCALATION_TIERS: tuple[Tier, ...] = TIERS[1:]
#: The notification tier of a desk reassignment (``hub.services.cases.REASSIGNED``).
REASSIGNED = "reassigned"
_ANSWERING_ACTIONS = frozenset({"acknowledge", "arrive"})


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of a case's audit trail, as far as the KPIs need it."""

    at: datetime
    actor: str  # "worker:3", "device:cb100-1", "system", an operator's name
    action: str  # "acknowledge", "arrive", "escalate", ...


@dataclass(frozen=True, slots=True)
class Notified:
    """One notification of a worker about a case."""

    worker_id: int
    tier: str  # a Tier value, or REASSIGNED
    at: datetime


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the KPIs need to know about one help call, derived once by :func:`call_facts`."""

    case_id: int
    grid_id: int
    opened_at: datetime
    answered_at: datetime | None
    answered_by: int | None  # the worker whose acknowledgement answered it, if a worker's
    arrived_at: datetime | None
    outcome: str | None
    cancelled: bool
    tiers: frozenset[str]
    notified: frozenset[int]

    @property
    def seconds_to_answer(self) -> float | None:
        return _seconds(self.opened_at, self.answered_at)

    @property
    def seconds_to_on_site(self) -> float | None:
        return _seconds(self.opened_at, self.arrived_at)


def call_facts(
    *,
    case_id: int,
    grid_id: int,
    opened_at: datetime,
    outcome: str | None,
    cancel_requested: bool,
    history: Iterable[HistoryEntry],
    notified: Iterable[Notified],
) -> CallFacts:
    """The facts of one call from its case row's fields, audit trail and notifications."""
    ordered = sorted(history, key=lambda entry: entry.at)
    answer = next((e for e in ordered if e.action in _ANSWERING_ACTIONS), None)
    arrival = next((e for e in ordered if e.action == "arrive"), None)
    answered_by = None
    if answer is not None and answer.action == "acknowledge":
        answered_by = _worker_of(answer.actor)
    told = list(notified)
    return CallFacts(
        case_id=case_id,
        grid_id=grid_id,
        opened_at=opened_at,
        answered_at=answer.at if answer is not None else None,
        answered_by=answered_by,
        arrived_at=arrival.at if arrival is not None else None,
        outcome=outcome,
        cancelled=cancel_requested,
        tiers=frozenset(n.tier for n in told),
        notified=frozenset(n.worker_id for n in told),
    )


@dataclass(frozen=True, slots=True)
class Share:
    """Calls answered within ``limit_s`` among those decided, beside the standard's target."""

    limit_s: int
    target: float
    met: int
    decided: int

    @property
    def value(self) -> float | None:
        return self.met / self.decided if self.decided else None

    @property
    def meets_target(self) -> bool | None:
        value = self.value
        return None if value is None else value >= self.target


@dataclass(frozen=True, slots=True)
class CareFigures:
    """The figures of one scope (a district, street, community, grid or worker) and period."""

    help_calls: int
    answered: int
    shares: tuple[Share, ...]  # one per ANSWER_TARGETS entry, in that order
    answer_median_s: float | None
    answer_p90_s: float | None
    on_site_median_s: float | None
    on_site_p90_s: float | None
    escalations: Mapping[str, int]  # tier value → calls routed to it (ESCALATION_TIERS)
    escalated_calls: int  # calls routed to any tier beyond the grid worker
    reassigned_calls: int
    cancelled: int
    false_calls: int
    service_requests: Mapping[int, int] = field(default_factory=dict)  # category → requests
    answered_by_worker: int | None = None  # only in a worker's row

    @property
    def service_requests_total(self) -> int:
        return sum(self.service_requests.values())

    def share(self, limit_s: int) -> Share:
        return next(s for s in self.shares if s.limit_s == limit_s)


def care_figures(
    calls: Sequence[CallFacts],
    service_categories: Sequence[int],
    now: datetime,
    *,
    worker_id: int | None = None,
) -> CareFigures:
    """The KPIs of ``calls`` (opened in the period) and of the service requests filed in it.

    ``now`` decides which unanswered calls are already missed. With ``worker_id`` the
    figures are that worker's row: pass the calls from :func:`calls_of_worker`.
    """
    answer_times = sorted(t for c in calls if (t := c.seconds_to_answer) is not None)
    on_site_times = sorted(t for c in calls if (t := c.seconds_to_on_site) is not None)
    tiers = Counter(tier for c in calls for tier in c.tiers)
    beyond = {tier.value for tier in ESCALATION_TIERS}
    categories = Counter(c if c in SERVICE_CATEGORIES else 11 for c in service_categories)
    return CareFigures(
        help_calls=len(calls),
        answered=len(answer_times),
        shares=tuple(_share(calls, limit, target, now) for limit, target in ANSWER_TARGETS),
        answer_median_s=percentile(answer_times, 50),
        answer_p90_s=percentile(answer_times, 90),
        on_site_median_s=percentile(on_site_times, 50),
        on_site_p90_s=percentile(on_site_times, 90),
        escalations={tier.value: tiers[tier.value] for tier in ESCALATION_TIERS},
        escalated_calls=sum(1 for c in calls if c.tiers & beyond),
        reassigned_calls=tiers[REASSIGNED],
        cancelled=sum(1 for c in calls if c.cancelled),
        false_calls=sum(1 for c in calls if c.outcome == "false_alarm"),
        service_requests={k: categories[k] for k in sorted(categories)},
        answered_by_worker=(
            None if worker_id is None else sum(1 for c in calls if c.answered_by == worker_id)
        ),
    )


def calls_of_worker(calls: Iterable[CallFacts], worker_id: int) -> list[CallFacts]:
    """The calls a worker was notified of or answered."""
    return [c for c in calls if worker_id in c.notified or c.answered_by == worker_id]


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of values sorted ascending; None for no values."""
    if not ordered:
        return None
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is outside (0, 100]")
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def _share(calls: Sequence[CallFacts], limit_s: int, target: float, now: datetime) -> Share:
    met = decided = 0
    for call in calls:
        seconds = call.seconds_to_answer
        if seconds is not None:
            decided += 1
            met += seconds <= limit_s
        elif (now - call.opened_at).total_seconds() > limit_s:
            decided += 1  # unanswered and already past the limit: a miss
    return Share(limit_s=limit_s, target=target, met=met, decided=decided)


def _seconds(start: datetime, end: datetime | None) -> float | None:
    if end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def _worker_of(actor: str) -> int | None:
    prefix, _, rest = actor.partition(":")
    return int(rest) if prefix == "worker" and rest.isdigit() else None
