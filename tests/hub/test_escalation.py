"""Escalation policy: routing, skipped tiers, deadlines per tier, re-notifying the hotline."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from hub.domain.case import Case, CaseState, InvalidTransition, acknowledge, arrive, open_case
from hub.domain.escalation import (
    DEFAULT_TIMEOUT,
    TIER_LABELS,
    TIERS,
    EscalationPolicy,
    Notify,
    Tier,
)

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
EVERYONE: dict[Tier, list[int]] = {
    Tier.GRID_WORKER: [1],
    Tier.BACKUP_WORKER: [2],
    Tier.COMMUNITY_STATION: [3],
    Tier.STREET_CENTRE: [4, 5],
    Tier.HOTLINE_DESK: [6],
}
TIMEOUTS = {
    Tier.GRID_WORKER: timedelta(seconds=60),
    Tier.BACKUP_WORKER: timedelta(seconds=90),
    Tier.COMMUNITY_STATION: timedelta(seconds=120),
    Tier.STREET_CENTRE: timedelta(seconds=150),
    Tier.HOTLINE_DESK: timedelta(seconds=30),
}


Resolver = Callable[[Tier], Sequence[int]]


def roster(table: Mapping[Tier, Sequence[int]]) -> tuple[list[Tier], Resolver]:
    """A resolver over ``table`` that also records which tiers were asked."""
    asked: list[Tier] = []

    def resolve(tier: Tier) -> Sequence[int]:
        asked.append(tier)
        return table.get(tier, [])

    return asked, resolve


def new_case() -> Case:
    case, _ = open_case(
        household_id=1, grid_id=1, kind="sos", channel="button", occurred_at=T0, now=T0, actor="d"
    )
    return replace(case, id=12)


def resolver(table: Mapping[Tier, Sequence[int]]) -> Resolver:
    return lambda tier: table.get(tier, [])


def test_tiers_are_ordered_and_labelled() -> None:
    assert [t.value for t in TIERS] == [
        "grid_worker",
        "backup_worker",
        "community_station",
        "street_centre",
        "hotline_desk",
    ]
    assert [t.rank for t in TIERS] == [0, 1, 2, 3, 4]
    assert Tier.at(4) is Tier.HOTLINE_DESK
    with pytest.raises(ValueError, match=r"outside 0\.\.4"):
        Tier.at(5)
    assert TIER_LABELS[Tier.HOTLINE_DESK] == ("96890 热线坐席", "hotline desk")


def test_policy_defaults_to_sixty_seconds_and_fills_missing_tiers() -> None:
    assert all(EscalationPolicy().timeout(t) == timedelta(seconds=60) for t in TIERS)
    policy = EscalationPolicy({Tier.STREET_CENTRE: timedelta(minutes=5)})
    assert policy.timeout(Tier.STREET_CENTRE) == timedelta(minutes=5)
    assert policy.timeout(Tier.GRID_WORKER) == DEFAULT_TIMEOUT


@pytest.mark.parametrize("bad", [timedelta(0), timedelta(seconds=-1)])
def test_policy_rejects_non_positive_timeouts(bad: timedelta) -> None:
    with pytest.raises(ValueError, match="backup_worker must be positive"):
        EscalationPolicy({Tier.BACKUP_WORKER: bad})


def test_dispatch_goes_to_the_grid_worker_first() -> None:
    case, notifies, audits = EscalationPolicy(TIMEOUTS).dispatch(new_case(), T0, resolver(EVERYONE))
    assert (case.state, case.tier, case.deadline_at) == (
        CaseState.DISPATCHED,
        0,
        T0 + timedelta(seconds=60),
    )
    assert notifies == [Notify(1, Tier.GRID_WORKER)]
    assert [(a.action, a.actor, a.from_state, a.to_state) for a in audits] == [
        ("dispatch", "system", CaseState.OPEN, CaseState.DISPATCHED)
    ]
    assert audits[0].detail == "grid_worker: worker 1"


def test_dispatch_skips_empty_tiers_at_once_and_audits_each_skip() -> None:
    table = {**EVERYONE, Tier.GRID_WORKER: [], Tier.BACKUP_WORKER: []}
    case, notifies, audits = EscalationPolicy(TIMEOUTS).dispatch(new_case(), T0, resolver(table))
    assert (case.tier, case.deadline_at) == (2, T0 + TIMEOUTS[Tier.COMMUNITY_STATION])
    assert notifies == [Notify(3, Tier.COMMUNITY_STATION)]
    assert [(a.action, a.detail) for a in audits] == [
        ("skip_tier", "grid_worker: nobody available"),
        ("skip_tier", "backup_worker: nobody available"),
        ("dispatch", "community_station: worker 3"),
    ]
    assert case.escalated


def test_dispatch_notifies_each_worker_of_a_tier_once() -> None:
    table = {Tier.GRID_WORKER: [7, 8, 7]}
    _, notifies, _ = EscalationPolicy().dispatch(new_case(), T0, resolver(table))
    assert notifies == [Notify(7, Tier.GRID_WORKER), Notify(8, Tier.GRID_WORKER)]


def test_nobody_anywhere_keeps_the_case_open_and_retries() -> None:
    policy = EscalationPolicy(TIMEOUTS)
    case, notifies, audits = policy.dispatch(new_case(), T0, resolver({}))
    assert (case.state, case.tier, notifies) == (CaseState.OPEN, 0, [])
    assert case.deadline_at == T0 + TIMEOUTS[Tier.GRID_WORKER]
    assert [a.action for a in audits] == ["skip_tier"] * 5 + ["unreachable"]
    # At the retry deadline somebody has come on duty: the case is routed from tier 0 again.
    retry_at = case.deadline_at
    case, notifies, audits = policy.escalate_if_due(case, retry_at, resolver(EVERYONE))
    assert (case.state, case.tier, notifies) == (
        CaseState.DISPATCHED,
        0,
        [Notify(1, Tier.GRID_WORKER)],
    )
    assert [a.action for a in audits] == ["dispatch"]


@pytest.mark.parametrize(
    "state", [s for s in CaseState if s not in (CaseState.OPEN, CaseState.DISPATCHED)]
)
def test_dispatch_refuses_a_case_someone_has_taken(state: CaseState) -> None:
    with pytest.raises(InvalidTransition, match=f"case 12 is {state.value}; cannot dispatch"):
        EscalationPolicy().dispatch(replace(new_case(), state=state), T0, resolver(EVERYONE))


def test_not_due_is_a_no_op() -> None:
    policy = EscalationPolicy(TIMEOUTS)
    case, _, _ = policy.dispatch(new_case(), T0, resolver(EVERYONE))
    asked, resolve = roster(EVERYONE)
    just_before = T0 + timedelta(seconds=59, microseconds=999_999)
    assert policy.escalate_if_due(case, just_before, resolve) == (case, [], [])
    assert asked == [], "nobody is looked up before the deadline"


@pytest.mark.parametrize("taken", ["acknowledge", "arrive"])
def test_acknowledged_or_on_site_never_escalates(taken: str) -> None:
    policy = EscalationPolicy(TIMEOUTS)
    case, _, _ = policy.dispatch(new_case(), T0, resolver(EVERYONE))
    later = T0 + timedelta(seconds=10)
    case, _ = acknowledge(case, 1, later) if taken == "acknowledge" else arrive(case, "x", later)
    far_future = T0 + timedelta(hours=5)
    assert policy.escalate_if_due(case, far_future, resolver(EVERYONE)) == (case, [], [])


def test_walks_every_tier_then_renotifies_the_hotline_every_timeout() -> None:
    policy = EscalationPolicy(TIMEOUTS)
    case, notifies, _ = policy.dispatch(new_case(), T0, resolver(EVERYONE))
    seen = [notifies]
    now = T0
    for expected_tier in (1, 2, 3, 4):
        assert case.deadline_at is not None
        now = case.deadline_at  # exactly at the deadline counts as due
        case, notifies, audits = policy.escalate_if_due(case, now, resolver(EVERYONE))
        assert (case.state, case.tier) == (CaseState.DISPATCHED, expected_tier)
        assert case.deadline_at == now + TIMEOUTS[TIERS[expected_tier]]
        assert [a.action for a in audits] == ["escalate"]
        seen.append(notifies)
    assert [[(n.worker_id, n.tier) for n in batch] for batch in seen] == [
        [(1, Tier.GRID_WORKER)],
        [(2, Tier.BACKUP_WORKER)],
        [(3, Tier.COMMUNITY_STATION)],
        [(4, Tier.STREET_CENTRE), (5, Tier.STREET_CENTRE)],
        [(6, Tier.HOTLINE_DESK)],
    ]
    for _ in range(3):
        assert case.deadline_at is not None
        now = case.deadline_at
        case, notifies, audits = policy.escalate_if_due(case, now, resolver(EVERYONE))
        assert case.tier == 4 and notifies == [Notify(6, Tier.HOTLINE_DESK)]
        assert case.deadline_at == now + TIMEOUTS[Tier.HOTLINE_DESK]
        assert [a.action for a in audits] == ["renotify"]


def test_escalation_skips_empty_middle_tiers() -> None:
    table = {Tier.GRID_WORKER: [1], Tier.STREET_CENTRE: [4], Tier.HOTLINE_DESK: [6]}
    policy = EscalationPolicy(TIMEOUTS)
    case, _, _ = policy.dispatch(new_case(), T0, resolver(table))
    due = T0 + TIMEOUTS[Tier.GRID_WORKER]
    case, notifies, audits = policy.escalate_if_due(case, due, resolver(table))
    assert case.tier == 3 and notifies == [Notify(4, Tier.STREET_CENTRE)]
    assert [(a.action, a.detail) for a in audits] == [
        ("skip_tier", "backup_worker: nobody available"),
        ("skip_tier", "community_station: nobody available"),
        ("escalate", "street_centre: worker 4"),
    ]
    assert all(a.from_state is CaseState.DISPATCHED for a in audits)


def test_when_no_later_tier_has_anyone_the_current_tier_is_called_again() -> None:
    table = {Tier.GRID_WORKER: [1]}
    policy = EscalationPolicy(TIMEOUTS)
    case, _, _ = policy.dispatch(new_case(), T0, resolver(table))
    due = T0 + timedelta(seconds=60)
    case, notifies, audits = policy.escalate_if_due(case, due, resolver(table))
    assert (case.tier, notifies) == (0, [Notify(1, Tier.GRID_WORKER)])
    assert case.deadline_at == due + timedelta(seconds=60)
    assert [a.action for a in audits] == ["skip_tier"] * 4 + ["renotify"]


def test_hotline_empty_at_renotify_keeps_a_retry_deadline() -> None:
    policy = EscalationPolicy(TIMEOUTS)
    case = replace(new_case(), state=CaseState.DISPATCHED, tier=4, deadline_at=T0)
    case, notifies, audits = policy.escalate_if_due(case, T0, resolver({}))
    assert (case.state, case.tier, notifies) == (CaseState.DISPATCHED, 4, [])
    assert case.deadline_at == T0 + TIMEOUTS[Tier.HOTLINE_DESK]
    assert [a.action for a in audits] == ["unreachable"]
