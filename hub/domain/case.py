"""The help-call case (求助工单) and its state machine, as pure functions.

A case is an immutable value; every transition returns a new case together with the
:class:`AuditRecord` that explains it, so the audit trail cannot drift from the state. No
function here reads a clock or touches the database: the caller passes ``now`` and stores
the results. That keeps the life-safety logic testable exhaustively.

Lifecycle::

    open ──dispatch──▶ dispatched ──acknowledge──▶ acknowledged ──arrive──▶ on_site
      │                    │  (tier > 0 is shown as "escalated")            │
      └──────acknowledge / arrive────────────────────────────────────────────┤
                                                                             ▼
                                            resolved (with outcome) ──close──▶ closed

A cancel from the button only sets ``cancel_requested``: an unanswered cancel might have
been pressed by mistake or by someone else, so a worker still resolves and closes the case.

The hotline desk may **reassign** a case nobody is with yet (open, dispatched or
acknowledged) to a named worker: the case goes back to ``dispatched`` with that worker as
``assigned_worker_id`` and a fresh deadline, so a handover that the new worker never
confirms is escalated like any unanswered call rather than left with nobody. Anyone on the
staff may **add a note**; a note changes no state and lives in the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Literal

Channel = Literal["button", "phone"]
Language = Literal["zh", "en"]


class CaseState(StrEnum):
    OPEN = "open"
    DISPATCHED = "dispatched"
    ACKNOWLEDGED = "acknowledged"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Outcome(StrEnum):
    FALSE_ALARM = "false_alarm"
    HELPED_ON_SITE = "helped_on_site"
    AMBULANCE_CALLED = "ambulance_called"
    OTHER = "other"


#: States in which someone may still need help; escalation and new presses care about these.
ACTIVE_STATES = frozenset(
    {CaseState.OPEN, CaseState.DISPATCHED, CaseState.ACKNOWLEDGED, CaseState.ON_SITE}
)
#: States in which nobody has taken the case yet, so the escalation clock runs.
AWAITING_ACK_STATES = frozenset({CaseState.OPEN, CaseState.DISPATCHED})

#: Display labels (中文, English). "cancel_requested" and "escalated" are overlays, not states.
LABELS: dict[str, tuple[str, str]] = {
    "open": ("新建", "open"),
    "dispatched": ("已派单", "dispatched"),
    "acknowledged": ("已接单", "acknowledged"),
    "on_site": ("已到场", "on site"),
    "resolved": ("已处置", "resolved"),
    "closed": ("已关闭", "closed"),
    "cancel_requested": ("申请取消", "cancel requested"),
    "escalated": ("已升级", "escalated"),
}


class InvalidTransition(Exception):
    """The requested transition is not allowed from the case's current state."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One line of a case's audit trail: who did what, when, and what it changed."""

    case_id: int
    at: datetime
    actor: str  # "worker:3", "device:cb100-77626", "system", or an operator name
    action: str  # "open", "dispatch", "skip_tier", "escalate", "acknowledge", ...
    from_state: CaseState
    to_state: CaseState
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Case:
    """One help call and everything known about its handling. ``id`` is 0 until stored."""

    id: int
    household_id: int
    grid_id: int
    kind: str  # "sos", "fall" or "phone"
    channel: Channel
    state: CaseState
    opened_at: datetime  # when the hub opened it (UTC)
    occurred_at: datetime  # when the first press happened at the edge (UTC)
    last_press_at: datetime  # latest press joined to this case; drives the dedupe window
    tier: int = 0  # index into the escalation tiers; > 0 while dispatched shows "escalated"
    press_count: int = 1
    cancel_requested: bool = False
    ref_seq: int | None = None  # frame_seq of the FIRST button frame, echoed in feedback
    device_id: str | None = None
    deadline_at: datetime | None = None  # escalate if not acknowledged by then
    acknowledged_by: int | None = None
    acknowledged_at: datetime | None = None
    arrived_at: datetime | None = None
    resolved_at: datetime | None = None
    outcome: Outcome | None = None
    resolution_note: str = ""
    closed_at: datetime | None = None
    note: str = ""  # intake note, e.g. what the caller said on the phone
    updated_at: datetime | None = None
    assigned_worker_id: int | None = None  # set by a desk reassignment (issue #12)

    @property
    def escalated(self) -> bool:
        return self.state is CaseState.DISPATCHED and self.tier > 0


def display_key(case: Case) -> str:
    """Which :data:`LABELS` entry to show: overlays win while the case is still active."""
    if case.cancel_requested and case.state in ACTIVE_STATES:
        return "cancel_requested"
    if case.escalated:
        return "escalated"
    return case.state.value


def display_label(case: Case, language: Language = "zh") -> str:
    zh, en = LABELS[display_key(case)]
    return zh if language == "zh" else en


def open_case(
    *,
    household_id: int,
    grid_id: int,
    kind: str,
    channel: Channel,
    occurred_at: datetime,
    now: datetime,
    actor: str,
    device_id: str | None = None,
    ref_seq: int | None = None,
    note: str = "",
) -> tuple[Case, AuditRecord]:
    """A new, not yet dispatched case (id 0: the store assigns the real one)."""
    case = Case(
        id=0,
        household_id=household_id,
        grid_id=grid_id,
        kind=kind,
        channel=channel,
        state=CaseState.OPEN,
        opened_at=now,
        occurred_at=occurred_at,
        last_press_at=occurred_at,
        ref_seq=ref_seq,
        device_id=device_id,
        note=note,
        updated_at=now,
    )
    via = f"{channel} {kind}" + (f" from {device_id}" if device_id else "")
    return case, _audit(case, case, now, actor, "open", via + (f": {note}" if note else ""))


def join_press(
    case: Case,
    *,
    kind: str,
    occurred_at: datetime,
    now: datetime,
    actor: str,
    ref_seq: int | None = None,
    note: str = "",
) -> tuple[Case, AuditRecord]:
    """A repeated call for the same household joins the case instead of opening another.

    Pressing SOS again after a cancel means the resident still wants help, so it withdraws
    the cancel request. The case keeps the first press's ``ref_seq`` (the frame that opened
    it, which "case closed" answers); a repeat press gets its own feedback from the caller.
    """
    _require(case, ACTIVE_STATES, "join a new call to")
    new = replace(
        case,
        press_count=case.press_count + 1,
        last_press_at=max(case.last_press_at, occurred_at),
        ref_seq=case.ref_seq if case.ref_seq is not None else ref_seq,
        cancel_requested=False,
        updated_at=now,
    )
    detail = f"repeated {kind} (call {new.press_count})" + (f": {note}" if note else "")
    if case.cancel_requested:
        detail += "; cancel request withdrawn"
    return new, _audit(case, new, now, actor, "join", detail)


def acknowledge(case: Case, worker_id: int, now: datetime) -> tuple[Case, AuditRecord]:
    """A worker takes the case; this stops escalation."""
    if case.state is CaseState.ACKNOWLEDGED:
        raise InvalidTransition(
            f"case {case.id} is already acknowledged by worker {case.acknowledged_by}"
        )
    _require(case, AWAITING_ACK_STATES, "acknowledge")
    new = replace(
        case,
        state=CaseState.ACKNOWLEDGED,
        acknowledged_by=worker_id,
        acknowledged_at=now,
        deadline_at=None,
        updated_at=now,
    )
    return new, _audit(case, new, now, f"worker:{worker_id}", "acknowledge")


def arrive(case: Case, actor: str, now: datetime) -> tuple[Case, AuditRecord]:
    """Someone is with the resident (a worker says so, or the presence key was pressed)."""
    _require(case, {CaseState.OPEN, CaseState.DISPATCHED, CaseState.ACKNOWLEDGED}, "arrive at")
    new = replace(case, state=CaseState.ON_SITE, arrived_at=now, deadline_at=None, updated_at=now)
    detail = "" if case.state is CaseState.ACKNOWLEDGED else "arrived before acknowledgement"
    return new, _audit(case, new, now, actor, "arrive", detail)


def presence_hint(case: Case, actor: str, now: datetime) -> tuple[Case, AuditRecord]:
    """A presence press while nobody has acknowledged: recorded, not believed.

    The presence key proves only that someone pressed it (the resident, a neighbour, a
    replayed frame, a forged event), not that a responder is there. Taking it as arrival
    would clear the deadline and stop escalation with nobody on the way, so before an
    acknowledgement the press is kept on the case as a hint for whoever picks it up and
    the case, its tier and its deadline stay as they are.
    """
    _require(case, AWAITING_ACK_STATES, "record a presence hint on")
    new = replace(case, updated_at=now)
    detail = (
        "presence pressed before anyone acknowledged; escalation continues / "
        "未接单时按下到场键，仅作记录，升级继续"
    )
    return new, _audit(case, new, now, actor, "presence_hint", detail)


def resolve(
    case: Case, actor: str, outcome: Outcome, note: str, now: datetime
) -> tuple[Case, AuditRecord]:
    """Record what happened. Only a worker who has taken the case can resolve it."""
    if case.state in AWAITING_ACK_STATES:
        raise InvalidTransition(
            f"case {case.id} is {case.state.value}; acknowledge it before resolving"
        )
    _require(case, {CaseState.ACKNOWLEDGED, CaseState.ON_SITE}, "resolve")
    outcome = Outcome(outcome)  # also accepts the plain string value from an API layer
    new = replace(
        case,
        state=CaseState.RESOLVED,
        outcome=outcome,
        resolution_note=note,
        resolved_at=now,
        updated_at=now,
    )
    detail = outcome.value + (f": {note}" if note else "")
    return new, _audit(case, new, now, actor, "resolve", detail)


def close(case: Case, actor: str, now: datetime) -> tuple[Case, AuditRecord]:
    if case.state is not CaseState.RESOLVED:
        raise InvalidTransition(
            f"case {case.id} is {case.state.value}; only a resolved case can be closed"
        )
    new = replace(case, state=CaseState.CLOSED, closed_at=now, updated_at=now)
    return new, _audit(case, new, now, actor, "close")


def request_cancel(case: Case, now: datetime, actor: str = "") -> tuple[Case, AuditRecord]:
    """The resident pressed cancel. The state stays: a worker still confirms and closes."""
    _require(case, ACTIVE_STATES, "request cancellation of")
    new = replace(case, cancel_requested=True, updated_at=now)
    detail = "cancel pressed again" if case.cancel_requested else "cancel requested"
    device = f"device:{case.device_id}" if case.device_id else "resident"
    return new, _audit(case, new, now, actor or device, "request_cancel", detail)


#: States a case may be reassigned from: nobody is with the resident yet.
REASSIGNABLE_STATES = frozenset({CaseState.OPEN, CaseState.DISPATCHED, CaseState.ACKNOWLEDGED})
NOTE_MAX_CHARS = 2000


def reassign(
    case: Case, worker_id: int, actor: str, now: datetime, deadline_at: datetime, note: str = ""
) -> tuple[Case, AuditRecord]:
    """The desk hands the case to ``worker_id``, who must acknowledge it by ``deadline_at``.

    The case goes back to ``dispatched`` (a previous acknowledgement is withdrawn: the
    audit keeps it) so the escalation clock runs again from the case's current tier; the
    caller computes ``deadline_at`` from that tier's timeout.
    """
    if case.state is CaseState.ON_SITE:
        raise InvalidTransition(
            f"case {case.id} is on_site: someone is with the resident; resolve it instead"
        )
    _require(case, REASSIGNABLE_STATES, "reassign")
    if deadline_at <= now:
        raise ValueError("a reassigned case needs a deadline after now")
    holder = case.acknowledged_by if case.state is CaseState.ACKNOWLEDGED else None
    waiting_for = case.assigned_worker_id if case.state is CaseState.DISPATCHED else None
    if worker_id in (holder, waiting_for):
        raise InvalidTransition(f"case {case.id} is already with worker {worker_id}")
    new = replace(
        case,
        state=CaseState.DISPATCHED,
        assigned_worker_id=worker_id,
        acknowledged_by=None,
        acknowledged_at=None,
        deadline_at=deadline_at,
        updated_at=now,
    )
    was = f" (was acknowledged by worker {holder})" if holder is not None else ""
    detail = f"to worker {worker_id}{was}" + (f": {note}" if note else "")
    return new, _audit(case, new, now, actor, "reassign", detail)


def add_note(case: Case, actor: str, text: str, now: datetime) -> tuple[Case, AuditRecord]:
    """A note on the case's timeline (who said what on the phone, who is on the way)."""
    text = text.strip()
    if not text:
        raise InvalidTransition("a note needs some text / 备注不能为空")
    if len(text) > NOTE_MAX_CHARS:
        raise InvalidTransition(f"a note has at most {NOTE_MAX_CHARS} characters")
    new = replace(case, updated_at=now)
    return new, _audit(case, new, now, actor, "note", text)


def _require(case: Case, allowed: frozenset[CaseState] | set[CaseState], verb: str) -> None:
    if case.state not in allowed:
        raise InvalidTransition(f"case {case.id} is {case.state.value}; cannot {verb}")


def _audit(
    old: Case, new: Case, now: datetime, actor: str, action: str, detail: str = ""
) -> AuditRecord:
    return AuditRecord(
        case_id=new.id,
        at=now,
        actor=actor,
        action=action,
        from_state=old.state,
        to_state=new.state,
        detail=detail,
    )
