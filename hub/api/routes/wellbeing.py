"""The wellbeing watch's API (issue #15): consent, away periods, a household's activity and
"are you OK?" prompts (every read audited), welfare checks and their outcome.

Only the resident's grid worker, the community station (operators) and the desk (hotline)
may call these; an admin manages the system, not residents' daily lives, and gets 403.
The welfare check itself is a task (``kind=welfare_check``) in ``GET /api/v1/tasks``,
acknowledged like any other task; its outcome is recorded here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel, Field

from hub.api.deps import Principal, ReadConnection, Role, RuntimeDep, require_roles
from hub.api.errors import FORBIDDEN, READ_ONE, WRITE, translated
from hub.api.routes.cases import acting_worker
from hub.services.wellbeing import records

router = APIRouter(prefix="/api/v1/wellbeing", tags=["wellbeing"])

Carer = Annotated[Principal, Depends(require_roles(Role.OPERATOR, Role.HOTLINE, Role.WORKER))]


class ConsentBody(BaseModel):
    model_config = {"extra": "forbid"}

    consent: bool
    face_person_id: str | None = Field(default=None, min_length=1, max_length=64)
    check_in_hour: int | None = Field(default=None, ge=0, le=23, description="local hour")
    note: str = Field(default="", max_length=500, description="how consent was given")


class AwayBody(BaseModel):
    model_config = {"extra": "forbid"}

    reason: Literal["hospital", "travel", "family_visit", "other"]
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime
    note: str = Field(default="", max_length=500)


class OutcomeBody(BaseModel):
    model_config = {"extra": "forbid"}

    outcome: Literal["all_well", "helped", "hospital", "no_answer_door_opened"]
    note: str = Field(default="", max_length=1000)
    worker_id: int | None = Field(default=None, gt=0)


@router.put(
    "/households/{household_id}/consent",
    summary="Record the resident's consent to the watch (知情同意), face id, check-in hour",
    responses=WRITE,
)
async def put_consent(
    household_id: int, body: ConsentBody, principal: Carer, runtime: RuntimeDep
) -> dict[str, Any]:
    with translated():
        async with runtime.engine.begin() as conn:
            return await records.set_consent(
                conn,
                principal,
                household_id,
                consent=body.consent,
                face_person_id=body.face_person_id,
                check_in_hour=body.check_in_hour,
                note=body.note,
                now=runtime.clock(),
            )


@router.post(
    "/households/{household_id}/away",
    summary="Mark the resident away until an end date (hospital, travel, family visit)",
    responses=WRITE,
)
async def post_away(
    household_id: int, body: AwayBody, principal: Carer, runtime: RuntimeDep
) -> dict[str, Any]:
    with translated():
        async with runtime.engine.begin() as conn:
            return await records.add_away(
                conn,
                principal,
                household_id,
                reason=body.reason,
                starts_at=body.starts_at,
                ends_at=body.ends_at,
                note=body.note,
                now=runtime.clock(),
            )


@router.post("/away/{away_id}/end", summary="The resident is back early", responses=WRITE)
async def end_away(away_id: int, principal: Carer, runtime: RuntimeDep) -> dict[str, Any]:
    with translated():
        async with runtime.engine.begin() as conn:
            return await records.end_away(conn, principal, away_id, runtime.clock())


@router.get(
    "/households/{household_id}/activity",
    summary="The household's activity, sources, away periods and prompts (the read is audited)",
    responses=READ_ONE,
)
async def get_activity(
    household_id: int,
    principal: Carer,
    runtime: RuntimeDep,
    hours: Annotated[int, Query(ge=1, le=24 * 35)] = 48,
) -> dict[str, Any]:
    with translated():
        async with runtime.engine.begin() as conn:  # writes the audit row
            return await records.read_activity(
                conn, principal, household_id, hours, runtime.clock()
            )


@router.get(
    "/checks", summary="Welfare checks (关爱探访) in the caller's grids", responses=FORBIDDEN
)
async def get_checks(
    principal: Carer,
    conn: ReadConnection,
    open_only: bool = True,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    return await records.list_checks(conn, principal, open_only=open_only, limit=limit)


@router.post(
    "/checks/{task_id}/outcome",
    summary="What the visit found; closes the welfare check",
    responses=WRITE,
)
async def post_outcome(
    task_id: int, body: OutcomeBody, principal: Carer, runtime: RuntimeDep
) -> dict[str, Any]:
    worker = acting_worker(principal, body.worker_id)
    with translated():
        async with runtime.engine.begin() as conn:
            return await records.record_outcome(
                conn, principal, task_id, worker, body.outcome, body.note, runtime.clock()
            )
