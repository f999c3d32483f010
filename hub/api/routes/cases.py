"""Help-call cases: list, read, and the acts of the people who handle them.

State changes are written in one transaction; button feedback and notifications go out
after the commit (``EffectDispatcher``). Illegal acts (acknowledging a closed case) get
409 with a readable reason; unknown cases 404; malformed bodies 422.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.api.deps import Authenticated, ReadConnection, RuntimeDep
from hub.domain.case import Outcome
from hub.runtime import HubRuntime
from hub.services.cases import Effects
from hub.services.errors import InvalidAct, NotFound

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

router = APIRouter(prefix="/api/v1/cases", tags=["cases"], dependencies=[Authenticated])


class WorkerAct(BaseModel):
    model_config = {"extra": "forbid"}
    worker_id: int = Field(gt=0, description="the worker who acts")


class ResolveBody(WorkerAct):
    outcome: Outcome
    note: str = Field(default="", max_length=2000)


class CloseBody(BaseModel):
    """Closed by a worker (``worker_id``) or by a desk operator (``operator``), not both."""

    model_config = {"extra": "forbid"}
    worker_id: int | None = Field(default=None, gt=0)
    operator: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_actor(self) -> CloseBody:
        if (self.worker_id is None) == (self.operator is None):
            raise ValueError("give exactly one of worker_id and operator")
        return self

    @property
    def actor(self) -> int | str:
        return self.worker_id if self.worker_id is not None else f"operator:{self.operator}"


class PhoneCaseBody(BaseModel):
    model_config = {"extra": "forbid"}
    household_id: int = Field(gt=0)
    note: str = Field(default="", max_length=2000, description="what the caller said")
    operator: str = Field(min_length=1, max_length=100, description="hotline desk operator")


class CaseCreated(BaseModel):
    case_id: int


async def _act(
    runtime: HubRuntime,
    action: Callable[[AsyncConnection], Awaitable[Effects]],
) -> None:
    try:
        async with runtime.engine.begin() as conn:
            effects = await action(conn)
    except NotFound as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from err
    except InvalidAct as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from err
    await runtime.effects.dispatch(effects)


@router.get("", summary="List cases, newest first")
async def list_cases(
    runtime: RuntimeDep,
    conn: ReadConnection,
    state: StateFilter | None = None,
    grid_id: Annotated[int | None, Query(gt=0)] = None,
    household_id: Annotated[int | None, Query(gt=0)] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    return await runtime.service.list_cases(
        conn,
        state=state,
        grid_id=grid_id,
        household_id=household_id,
        since=since,
        limit=limit,
        offset=offset,
    )


@router.get("/{case_id}", summary="One case with its audit trail and notifications")
async def get_case(case_id: int, runtime: RuntimeDep, conn: ReadConnection) -> dict[str, Any]:
    try:
        return await runtime.service.get_case(conn, case_id)
    except NotFound as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from err


@router.post("", status_code=status.HTTP_201_CREATED, summary="Open a case for a hotline call")
async def open_phone_case(body: PhoneCaseBody, runtime: RuntimeDep) -> CaseCreated:
    created: list[int] = []

    async def action(conn: AsyncConnection) -> Effects:
        case_id, effects = await runtime.service.open_phone_case(
            conn, body.household_id, body.note, body.operator, runtime.clock()
        )
        created.append(case_id)
        return effects

    await _act(runtime, action)
    return CaseCreated(case_id=created[0])


@router.post("/{case_id}/acknowledge", summary="A worker takes the case (接单)")
async def acknowledge(case_id: int, body: WorkerAct, runtime: RuntimeDep) -> dict[str, str]:
    await _act(
        runtime, lambda c: runtime.service.acknowledge(c, case_id, body.worker_id, runtime.clock())
    )
    return {"status": "acknowledged"}


@router.post("/{case_id}/on-site", summary="The worker has arrived (已到场)")
async def on_site(case_id: int, body: WorkerAct, runtime: RuntimeDep) -> dict[str, str]:
    await _act(
        runtime, lambda c: runtime.service.arrive(c, case_id, body.worker_id, runtime.clock())
    )
    return {"status": "on_site"}


@router.post("/{case_id}/resolve", summary="Record the outcome (已处置)")
async def resolve(case_id: int, body: ResolveBody, runtime: RuntimeDep) -> dict[str, str]:
    await _act(
        runtime,
        lambda c: runtime.service.resolve(
            c, case_id, body.worker_id, body.outcome, body.note, runtime.clock()
        ),
    )
    return {"status": "resolved"}


@router.post("/{case_id}/close", summary="Close the case (已关闭)")
async def close(case_id: int, body: CloseBody, runtime: RuntimeDep) -> dict[str, str]:
    await _act(runtime, lambda c: runtime.service.close(c, case_id, body.actor, runtime.clock()))
    return {"status": "closed"}
