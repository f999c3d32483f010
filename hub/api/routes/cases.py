"""Help-call cases: list, read, and the acts of the people who handle them.

State changes are written in one transaction together with their audit-log row (actor,
time, case, state before and after); button feedback and notifications go out after the
commit (``EffectDispatcher``). Illegal acts (acknowledging a closed case) get 409 with a
readable reason; unknown cases 404; malformed bodies 422.

Who may do what: every person's role may read and act on cases; a grid worker only on
cases of their own grids (403 otherwise) and only as themselves: the ``worker_id`` of an
act is taken from their account, and a different one is refused. Other roles act for a
worker by naming its ``worker_id``. Opening a case for a phone call is for the hotline
desk, operators and admins. Medical notes in a case are shown only to operators and to
workers of the household's grid, and each showing is recorded as ``medical_notes.read``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import AwareDatetime, BaseModel, Field, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.api.deps import (
    HUMANS,
    OUTSIDE_GRID,
    Principal,
    ReadConnection,
    Role,
    RuntimeDep,
    forbidden,
    require_roles,
)
from hub.db.schema import cases
from hub.domain.case import Outcome
from hub.domain.effects import Effects
from hub.runtime import HubRuntime
from hub.services.audit import record_audit
from hub.services.case_queries import case_list, redact_medical_notes
from hub.services.errors import InvalidAct, NotFound
from hub.services.records import not_found

#: A case state, or one of the display overlays "escalated" and "cancel_requested".
StateFilter = Literal[
    "open",
    "dispatched",
    "acknowledged",
    "on_site",
    "resolved",
    "closed",
    "escalated",
    "cancel_requested",
]

router = APIRouter(prefix="/api/v1/cases", tags=["cases"])

Person = Annotated[Principal, Depends(require_roles(*HUMANS))]
Desk = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPERATOR, Role.HOTLINE))]


class WorkerAct(BaseModel):
    model_config = {"extra": "forbid"}
    worker_id: int | None = Field(
        default=None, gt=0, description="the worker who acts; a worker's own account sets it"
    )


class ResolveBody(WorkerAct):
    outcome: Outcome
    note: str = Field(default="", max_length=2000)


class CloseBody(BaseModel):
    """Closed by a worker (``worker_id``) or by a desk operator (``operator``), not both.

    With an account, a worker closes as themselves and an operator under their username;
    only the static API token must name one of the two.
    """

    model_config = {"extra": "forbid"}
    worker_id: int | None = Field(default=None, gt=0)
    operator: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_actor(self) -> CloseBody:
        if self.worker_id is not None and self.operator is not None:
            raise ValueError("give at most one of worker_id and operator")
        return self


class PhoneCaseBody(BaseModel):
    model_config = {"extra": "forbid"}
    household_id: int = Field(gt=0)
    note: str = Field(default="", max_length=2000, description="what the caller said")
    operator: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="hotline desk operator; an account's username when omitted",
    )


class CaseCreated(BaseModel):
    case_id: int


class _Forbidden(Exception):
    """Raised inside a transaction when the case is missing or outside the caller's grids."""


def _case_not_found(case_id: int) -> HTTPException:
    """One answer for a case that does not exist and one of another grid (issue #11)."""
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=str(not_found("case", case_id)))


async def _snapshot(conn: AsyncConnection, case_id: int) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                select(cases.c.grid_id, cases.c.state, cases.c.tier, cases.c.acknowledged_by).where(
                    cases.c.id == case_id
                )
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


async def act_on_case(
    runtime: HubRuntime,
    principal: Principal,
    case_id: int,
    verb: str,
    action: Callable[[AsyncConnection], Awaitable[Effects]],
) -> None:
    """Run one act on a case in a transaction with its grid check and audit-log row."""
    try:
        async with runtime.engine.begin() as conn:
            before = await _snapshot(conn, case_id)
            if before is None or not principal.sees_grid(before["grid_id"]):
                raise _Forbidden
            effects = await action(conn)
            await record_audit(
                conn,
                actor=principal,
                action=f"case.{verb}",
                target_type="case",
                target_id=case_id,
                before=before,
                after=await _snapshot(conn, case_id),
                at=runtime.clock(),
            )
    except _Forbidden:  # another grid's case is answered as a missing one (issue #11)
        raise _case_not_found(case_id) from None
    except NotFound as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from err
    except InvalidAct as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from err
    await runtime.effects.dispatch(effects)


def acting_worker(principal: Principal, worker_id: int | None) -> int:
    """The worker an act is recorded for: a worker's own, or the one named in the body."""
    if principal.role is Role.WORKER:
        if principal.worker_id is None:
            raise forbidden("this account is not linked to a worker / 此账号未关联网格员")
        if worker_id is not None and worker_id != principal.worker_id:
            raise forbidden("a worker acts only as themselves / 网格员只能以本人身份操作")
        return principal.worker_id
    if worker_id is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="worker_id: required unless a worker acts as themselves / 须指定 worker_id",
        )
    return worker_id


def _operator_name(principal: Principal, operator: str | None) -> str:
    """An account speaks for itself; only the static API token names an operator."""
    if principal.kind == "user":
        if operator is not None and operator != principal.name:
            raise forbidden("an account acts only as itself / 账号只能以本人身份操作")
        return principal.name
    if operator is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="operator: required with the API token / 使用 API 令牌时须指定 operator",
        )
    return operator


@router.get("", summary="List cases, newest first (a worker: of their grids)")
async def list_cases(
    principal: Person,
    conn: ReadConnection,
    state: StateFilter | None = None,
    grid_id: Annotated[int | None, Query(gt=0)] = None,
    household_id: Annotated[int | None, Query(gt=0)] = None,
    since: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    if grid_id is not None and not principal.sees_grid(grid_id):
        raise forbidden(OUTSIDE_GRID)
    return await case_list(
        conn,
        state=state,
        grid_id=grid_id,
        household_id=household_id,
        since=since,
        limit=limit,
        offset=offset,
        grid_ids=None if principal.sees_all_grids() else principal.grid_ids,
    )


@router.get("/{case_id}", summary="One case with its audit trail and notifications")
async def get_case(
    case_id: int, principal: Person, runtime: RuntimeDep, conn: ReadConnection
) -> dict[str, Any]:
    try:
        detail = await runtime.service.get_case(conn, case_id)
    except NotFound as err:
        raise _case_not_found(case_id) from err
    if not principal.sees_grid(detail["grid_id"]):
        raise _case_not_found(case_id)
    household = detail["household"]
    may_read = principal.may_read_medical_notes(household["grid_id"])
    if redact_medical_notes(detail, may_read):
        # Recorded before the notes leave the hub: no audit row, no notes.
        async with runtime.engine.begin() as write:
            await record_audit(
                write,
                actor=principal,
                action="medical_notes.read",
                target_type="household",
                target_id=household["id"],
                after={"via": "case", "case_id": case_id},
                at=runtime.clock(),
            )
    return detail


@router.post("", status_code=status.HTTP_201_CREATED, summary="Open a case for a hotline call")
async def open_phone_case(body: PhoneCaseBody, principal: Desk, runtime: RuntimeDep) -> CaseCreated:
    operator = _operator_name(principal, body.operator)
    try:
        async with runtime.engine.begin() as conn:
            now = runtime.clock()
            case_id, effects = await runtime.service.open_phone_case(
                conn, body.household_id, body.note, operator, now
            )
            await record_audit(
                conn,
                actor=principal,
                action="case.open_phone",
                target_type="case",
                target_id=case_id,
                after=await _snapshot(conn, case_id),
                at=now,
            )
    except NotFound as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from err
    except InvalidAct as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from err
    await runtime.effects.dispatch(effects)
    return CaseCreated(case_id=case_id)


@router.post("/{case_id}/acknowledge", summary="A worker takes the case (接单)")
async def acknowledge(
    case_id: int, body: WorkerAct, principal: Person, runtime: RuntimeDep
) -> dict[str, str]:
    worker = acting_worker(principal, body.worker_id)
    await act_on_case(
        runtime,
        principal,
        case_id,
        "acknowledge",
        lambda c: runtime.service.acknowledge(c, case_id, worker, runtime.clock()),
    )
    return {"status": "acknowledged"}


@router.post("/{case_id}/on-site", summary="The worker has arrived (已到场)")
async def on_site(
    case_id: int, body: WorkerAct, principal: Person, runtime: RuntimeDep
) -> dict[str, str]:
    worker = acting_worker(principal, body.worker_id)
    await act_on_case(
        runtime,
        principal,
        case_id,
        "on_site",
        lambda c: runtime.service.arrive(c, case_id, worker, runtime.clock()),
    )
    return {"status": "on_site"}


@router.post("/{case_id}/resolve", summary="Record the outcome (已处置)")
async def resolve(
    case_id: int, body: ResolveBody, principal: Person, runtime: RuntimeDep
) -> dict[str, str]:
    worker = acting_worker(principal, body.worker_id)
    await act_on_case(
        runtime,
        principal,
        case_id,
        "resolve",
        lambda c: runtime.service.resolve(
            c, case_id, worker, body.outcome, body.note, runtime.clock()
        ),
    )
    return {"status": "resolved"}


@router.post("/{case_id}/close", summary="Close the case (已关闭)")
async def close(
    case_id: int, body: CloseBody, principal: Person, runtime: RuntimeDep
) -> dict[str, str]:
    actor: int | str
    if principal.role is Role.WORKER and body.operator is not None:
        raise forbidden("a worker closes as themselves / 网格员只能以本人身份关闭工单")
    if principal.role is Role.WORKER or body.worker_id is not None:
        actor = acting_worker(principal, body.worker_id)
    else:
        actor = f"operator:{_operator_name(principal, body.operator)}"
    await act_on_case(
        runtime,
        principal,
        case_id,
        "close",
        lambda c: runtime.service.close(c, case_id, actor, runtime.clock()),
    )
    return {"status": "closed"}
