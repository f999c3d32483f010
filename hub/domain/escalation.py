"""Who is told about a help call, and when the next tier is told: the escalation policy.

A case is routed to the first tier that has someone available, starting at ``case.tier``;
if nobody acknowledges before ``case.deadline_at`` it moves to the next tier that has
someone. Each tier keeps its own timeout. Tiers with nobody available are skipped at once
and every skip is audited, so a reviewer can see why the street centre was called at 3 am.
Earlier tiers are not "un-notified": any of them may still acknowledge.

The last tier (the 96890 hotline desk, staffed 24/7) never hands the case to nobody: when
its timeout expires it is notified again, and so on until someone acknowledges. If no tier
at all has anyone, the case stays open with a retry deadline, and every attempt is audited.

Like :mod:`hub.domain.case`, this module does no I/O. Who is on duty is asked through the
``resolve`` callable, which the service fills from the duty roster before calling in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from hub.domain.case import (
    AWAITING_ACK_STATES,
    AuditRecord,
    Case,
    CaseState,
    InvalidTransition,
)


class Tier(StrEnum):
    """Escalation tiers, in order. ``case.tier`` stores the index into :data:`TIERS`."""

    GRID_WORKER = "grid_worker"
    BACKUP_WORKER = "backup_worker"
    COMMUNITY_STATION = "community_station"
    STREET_CENTRE = "street_centre"
    HOTLINE_DESK = "hotline_desk"

    @property
    def rank(self) -> int:
        """Position in :data:`TIERS` (``index`` is taken by ``str``)."""
        return TIERS.index(self)

    @classmethod
    def at(cls, index: int) -> Tier:
        if not 0 <= index < len(TIERS):
            raise ValueError(f"tier index {index} is outside 0..{len(TIERS) - 1}")
        return TIERS[index]


TIERS: tuple[Tier, ...] = tuple(Tier)

TIER_LABELS: dict[Tier, tuple[str, str]] = {
    Tier.GRID_WORKER: ("网格员", "grid worker"),
    Tier.BACKUP_WORKER: ("后备网格员", "backup worker"),
    Tier.COMMUNITY_STATION: ("社区服务站", "community station"),
    Tier.STREET_CENTRE: ("街道市民服务中心", "street centre"),
    Tier.HOTLINE_DESK: ("96890 热线坐席", "hotline desk"),
}

DEFAULT_TIMEOUT = timedelta(seconds=60)

#: Worker ids available at a tier for the case being routed, right now.
WorkerResolver = Callable[[Tier], Sequence[int]]


@dataclass(frozen=True, slots=True)
class Notify:
    """Tell this worker about the case, on behalf of this tier."""

    worker_id: int
    tier: Tier


#: The result of one routing step: the new case, who to notify, and what to audit.
Step = tuple[Case, list[Notify], list[AuditRecord]]


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """Per-tier acknowledgement timeouts; tiers not given use :data:`DEFAULT_TIMEOUT`."""

    timeouts: Mapping[Tier, timedelta] = field(default_factory=dict)

    def __post_init__(self) -> None:
        complete = {tier: self.timeouts.get(tier, DEFAULT_TIMEOUT) for tier in TIERS}
        for tier, timeout in complete.items():
            if timeout <= timedelta(0):
                raise ValueError(f"escalation timeout for {tier.value} must be positive")
        object.__setattr__(self, "timeouts", complete)

    def timeout(self, tier: Tier) -> timedelta:
        return self.timeouts[tier]

    def dispatch(self, case: Case, now: datetime, resolve: WorkerResolver) -> Step:
        """Route a case that nobody has acknowledged, starting at ``case.tier``."""
        if case.state not in AWAITING_ACK_STATES:
            raise InvalidTransition(f"case {case.id} is {case.state.value}; cannot dispatch")
        return self._route(case, now, resolve, start=case.tier, action="dispatch")

    def escalate_if_due(self, case: Case, now: datetime, resolve: WorkerResolver) -> Step:
        """Move an unacknowledged case on once its deadline has passed; otherwise a no-op."""
        if (
            case.state not in AWAITING_ACK_STATES
            or case.deadline_at is None
            or now < case.deadline_at
        ):
            return case, [], []
        if case.state is CaseState.OPEN:
            # Nobody could be reached last time: try the same tiers again.
            return self._route(case, now, resolve, start=case.tier, action="dispatch")
        return self._route(case, now, resolve, start=case.tier + 1, action="escalate")

    def _route(
        self, case: Case, now: datetime, resolve: WorkerResolver, *, start: int, action: str
    ) -> Step:
        audits: list[AuditRecord] = []
        for index in range(start, len(TIERS)):
            tier = TIERS[index]
            workers = _unique(resolve(tier))
            if not workers:
                audits.append(
                    _record(case, case, now, "skip_tier", f"{tier.value}: nobody available")
                )
                continue
            new = replace(
                case,
                state=CaseState.DISPATCHED,
                tier=index,
                deadline_at=now + self.timeout(tier),
                updated_at=now,
            )
            audits.append(_record(case, new, now, action, _who(tier, workers)))
            return new, [Notify(w, tier) for w in workers], audits

        if case.state is CaseState.DISPATCHED:
            # No later tier has anyone: keep calling the tier we are at (at the end, the
            # hotline desk) rather than letting the case go nowhere.
            tier = TIERS[case.tier]
            workers = _unique(resolve(tier))
            if workers:
                new = replace(case, deadline_at=now + self.timeout(tier), updated_at=now)
                detail = "no later tier available; again " + _who(tier, workers)
                audits.append(_record(case, new, now, "renotify", detail))
                return new, [Notify(w, tier) for w in workers], audits

        retry = now + self.timeout(TIERS[min(case.tier, len(TIERS) - 1)])
        new = replace(case, deadline_at=retry, updated_at=now)
        detail = f"nobody available at any tier; retrying at {retry.isoformat()}"
        audits.append(_record(case, new, now, "unreachable", detail))
        return new, [], audits


def _unique(worker_ids: Sequence[int]) -> list[int]:
    return list(dict.fromkeys(worker_ids))


def _who(tier: Tier, workers: Sequence[int]) -> str:
    return f"{tier.value}: worker " + ", ".join(str(w) for w in workers)


def _record(old: Case, new: Case, now: datetime, action: str, detail: str) -> AuditRecord:
    return AuditRecord(
        case_id=old.id,
        at=now,
        actor="system",
        action=action,
        from_state=old.state,
        to_state=new.state,
        detail=detail,
    )
