"""The help-call state machine: every legal and illegal transition, labels, audit records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from hub.domain.case import (
    ACTIVE_STATES,
    LABELS,
    AuditRecord,
    Case,
    CaseState,
    InvalidTransition,
    Outcome,
    acknowledge,
    arrive,
    close,
    display_key,
    display_label,
    join_press,
    open_case,
    presence_hint,
    request_cancel,
    resolve,
)

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=3)

Transition = Callable[[Case], tuple[Case, AuditRecord]]


def make_case(state: CaseState = CaseState.DISPATCHED, **changes: Any) -> Case:
    case, _ = open_case(
        household_id=7,
        grid_id=2,
        kind="sos",
        channel="button",
        occurred_at=T0,
        now=T0,
        actor="device:cb100-77626",
        device_id="cb100-77626",
        ref_seq=41,
    )
    return replace(case, id=12, state=state, deadline_at=T0 + timedelta(seconds=60), **changes)


TRANSITIONS: dict[str, tuple[Transition, set[CaseState]]] = {
    "acknowledge": (
        lambda c: acknowledge(c, 3, LATER),
        {CaseState.OPEN, CaseState.DISPATCHED},
    ),
    "arrive": (
        lambda c: arrive(c, "worker:3", LATER),
        {CaseState.OPEN, CaseState.DISPATCHED, CaseState.ACKNOWLEDGED},
    ),
    "resolve": (
        lambda c: resolve(c, "worker:3", Outcome.HELPED_ON_SITE, "扶起，无外伤", LATER),
        {CaseState.ACKNOWLEDGED, CaseState.ON_SITE},
    ),
    "close": (lambda c: close(c, "worker:3", LATER), {CaseState.RESOLVED}),
    "request_cancel": (lambda c: request_cancel(c, LATER), set(ACTIVE_STATES)),
    "join_press": (
        lambda c: join_press(c, kind="sos", occurred_at=LATER, now=LATER, actor="device:x"),
        set(ACTIVE_STATES),
    ),
}
EXPECTED_STATE = {
    "acknowledge": CaseState.ACKNOWLEDGED,
    "arrive": CaseState.ON_SITE,
    "resolve": CaseState.RESOLVED,
    "close": CaseState.CLOSED,
}

ACTIONS = {"join_press": "join"}

LEGAL = [(n, s) for n, (_, ok) in TRANSITIONS.items() for s in CaseState if s in ok]
ILLEGAL = [(n, s) for n, (_, ok) in TRANSITIONS.items() for s in CaseState if s not in ok]


@pytest.mark.parametrize(("name", "state"), LEGAL, ids=[f"{n}-{s}" for n, s in LEGAL])
def test_legal_transition_returns_new_case_and_matching_audit(name: str, state: CaseState) -> None:
    old = make_case(state)
    new, audit = TRANSITIONS[name][0](old)
    assert new.state is EXPECTED_STATE.get(name, state)
    assert old.state is state, "cases are immutable values"
    assert (audit.case_id, audit.at, audit.action) == (12, LATER, ACTIONS.get(name, name))
    assert (audit.from_state, audit.to_state) == (state, new.state)
    assert new.updated_at == LATER


@pytest.mark.parametrize(("name", "state"), ILLEGAL, ids=[f"{n}-{s}" for n, s in ILLEGAL])
def test_illegal_transition_raises_readable_error(name: str, state: CaseState) -> None:
    with pytest.raises(InvalidTransition, match=r"^case 12 is ") as caught:
        TRANSITIONS[name][0](make_case(state))
    assert state.value in str(caught.value) or "acknowledged" in str(caught.value)


def test_messages_read_well() -> None:
    with pytest.raises(InvalidTransition, match=r"^case 12 is closed; cannot acknowledge$"):
        acknowledge(make_case(CaseState.CLOSED), 3, LATER)
    with pytest.raises(InvalidTransition, match="already acknowledged by worker 5"):
        acknowledge(make_case(CaseState.ACKNOWLEDGED, acknowledged_by=5), 3, LATER)
    with pytest.raises(InvalidTransition, match="dispatched; acknowledge it before resolving"):
        resolve(make_case(CaseState.DISPATCHED), "worker:3", Outcome.OTHER, "", LATER)
    with pytest.raises(InvalidTransition, match="on_site; only a resolved case can be closed"):
        close(make_case(CaseState.ON_SITE), "worker:3", LATER)


def test_open_case_starts_open_at_tier_zero() -> None:
    case, audit = open_case(
        household_id=1,
        grid_id=1,
        kind="phone",
        channel="phone",
        occurred_at=T0,
        now=T0,
        actor="郑芳",
        note="女儿来电：母亲电话无人接听",
    )
    assert (case.id, case.state, case.tier, case.press_count) == (0, CaseState.OPEN, 0, 1)
    assert case.device_id is None and case.deadline_at is None and not case.cancel_requested
    assert (audit.action, audit.actor, audit.from_state, audit.to_state) == (
        "open",
        "郑芳",
        CaseState.OPEN,
        CaseState.OPEN,
    )
    assert "母亲电话无人接听" in audit.detail


def test_acknowledge_records_worker_and_stops_escalation() -> None:
    new, audit = acknowledge(make_case(CaseState.DISPATCHED, tier=2), 9, LATER)
    assert (new.acknowledged_by, new.acknowledged_at, new.deadline_at) == (9, LATER, None)
    assert new.tier == 2, "the tier that was reached is kept for the record"
    assert audit.actor == "worker:9"


def test_arrive_clears_deadline_and_notes_skipped_acknowledgement() -> None:
    new, audit = arrive(make_case(CaseState.DISPATCHED), "device:cb100-77626", LATER)
    assert (new.arrived_at, new.deadline_at) == (LATER, None)
    assert audit.detail == "arrived before acknowledgement"
    _, audit = arrive(make_case(CaseState.ACKNOWLEDGED), "worker:3", LATER)
    assert audit.detail == ""


def test_resolve_keeps_outcome_and_note_and_accepts_plain_string() -> None:
    new, audit = resolve(
        make_case(CaseState.ON_SITE), "worker:3", Outcome.FALSE_ALARM, "误按", LATER
    )
    assert (new.outcome, new.resolution_note, new.resolved_at) == (
        Outcome.FALSE_ALARM,
        "误按",
        LATER,
    )
    assert audit.detail == "false_alarm: 误按"
    plain: Any = "ambulance_called"  # what an API layer might pass through
    new, _ = resolve(make_case(CaseState.ON_SITE), "w", plain, "", LATER)
    assert new.outcome is Outcome.AMBULANCE_CALLED


def test_close_after_resolve() -> None:
    resolved, _ = resolve(make_case(CaseState.ACKNOWLEDGED), "worker:3", Outcome.OTHER, "", T0)
    closed, audit = close(resolved, "郑芳", LATER)
    assert (closed.state, closed.closed_at, audit.actor) == (CaseState.CLOSED, LATER, "郑芳")


@pytest.mark.parametrize("state", sorted(ACTIVE_STATES))
def test_cancel_only_flags_the_case(state: CaseState) -> None:
    old = make_case(state)
    new, audit = request_cancel(old, LATER)
    assert new.cancel_requested and new.state is state
    assert new.deadline_at == old.deadline_at, "escalation continues: safety first"
    assert (audit.actor, audit.detail) == ("device:cb100-77626", "cancel requested")
    again, audit = request_cancel(new, LATER)
    assert again.cancel_requested and audit.detail == "cancel pressed again"


def test_join_counts_calls_keeps_the_first_ref_seq_and_withdraws_cancel() -> None:
    cancelled, _ = request_cancel(make_case(CaseState.DISPATCHED), T0)
    assert cancelled.ref_seq == 41
    joined, audit = join_press(
        cancelled, kind="fall", occurred_at=LATER, now=LATER, actor="device:x", ref_seq=42
    )
    # "case closed" answers the frame that opened the case (issue #16), not the latest.
    assert (joined.press_count, joined.last_press_at, joined.ref_seq) == (2, LATER, 41)
    assert not joined.cancel_requested
    assert "cancel request withdrawn" in audit.detail and "call 2" in audit.detail
    # A late-arriving older press neither moves the window back nor loses the ref_seq.
    older, _ = join_press(joined, kind="sos", occurred_at=T0, now=LATER, actor="device:x")
    assert (older.last_press_at, older.ref_seq, older.press_count) == (LATER, 41, 3)
    # A case opened without a frame number takes the first one a press brings.
    unnumbered = replace(make_case(CaseState.DISPATCHED), ref_seq=None)
    numbered, _ = join_press(
        unnumbered, kind="sos", occurred_at=LATER, now=LATER, actor="device:x", ref_seq=7
    )
    assert numbered.ref_seq == 7


def test_presence_hint_changes_nothing_but_is_audited() -> None:
    for state in (CaseState.OPEN, CaseState.DISPATCHED):
        case = make_case(state)
        new, audit = presence_hint(case, "device:cb100-77626", LATER)
        assert replace(new, updated_at=case.updated_at) == case
        assert (audit.action, audit.from_state, audit.to_state) == ("presence_hint", state, state)
        assert "escalation continues" in audit.detail and "升级继续" in audit.detail
    for state in set(CaseState) - {CaseState.OPEN, CaseState.DISPATCHED}:
        with pytest.raises(InvalidTransition):
            presence_hint(make_case(state), "device:x", LATER)


def test_full_lifecycle_audit_chain_is_continuous() -> None:
    case, first = open_case(
        household_id=1, grid_id=1, kind="sos", channel="button", occurred_at=T0, now=T0, actor="d"
    )
    records = [first]
    case = replace(case, state=CaseState.DISPATCHED)
    for step in (
        lambda c: acknowledge(c, 1, T0),
        lambda c: arrive(c, "worker:1", T0),
        lambda c: resolve(c, "worker:1", Outcome.HELPED_ON_SITE, "", T0),
        lambda c: close(c, "worker:1", T0),
    ):
        case, record = step(case)
        records.append(record)
    assert [r.to_state for r in records[1:]] == [
        CaseState.ACKNOWLEDGED,
        CaseState.ON_SITE,
        CaseState.RESOLVED,
        CaseState.CLOSED,
    ]
    assert all(a.to_state == b.from_state for a, b in pairwise(records[1:]))


@pytest.mark.parametrize(
    ("changes", "key", "zh", "en"),
    [
        ({"state": CaseState.OPEN}, "open", "新建", "open"),
        ({"state": CaseState.DISPATCHED}, "dispatched", "已派单", "dispatched"),
        ({"state": CaseState.DISPATCHED, "tier": 2}, "escalated", "已升级", "escalated"),
        ({"state": CaseState.ACKNOWLEDGED, "tier": 2}, "acknowledged", "已接单", "acknowledged"),
        ({"state": CaseState.ON_SITE}, "on_site", "已到场", "on site"),
        ({"state": CaseState.RESOLVED}, "resolved", "已处置", "resolved"),
        ({"state": CaseState.CLOSED}, "closed", "已关闭", "closed"),
        (
            {"state": CaseState.DISPATCHED, "tier": 3, "cancel_requested": True},
            "cancel_requested",
            "申请取消",
            "cancel requested",
        ),
        ({"state": CaseState.RESOLVED, "cancel_requested": True}, "resolved", "已处置", "resolved"),
    ],
)
def test_display_labels(changes: dict[str, Any], key: str, zh: str, en: str) -> None:
    case = replace(make_case(), **changes)
    assert display_key(case) == key
    assert (display_label(case), display_label(case, "en")) == (zh, en)


def test_every_state_has_a_label() -> None:
    assert {s.value for s in CaseState} | {"cancel_requested", "escalated"} == set(LABELS)
