"""What came in: quarantined messages, service/maintenance tasks, edge status, ingest stats.

Quarantine, edge status and counters are for operators and admins. Tasks are for every
person's role; a grid worker lists and advances only the tasks of their own grids, as
themselves (the same ``worker_id`` rule as for cases, see :mod:`hub.api.routes.cases`).
Advancing a task is recorded in the audit log.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, status

from hub.api.deps import (
    HUMANS,
    OUTSIDE_GRID,
    STAFF,
    Principal,
    ReadConnection,
    Role,
    RuntimeDep,
    forbidden,
    require_roles,
)
from hub.api.routes.cases import WorkerAct, acting_worker
from hub.db.schema import edge_status, tasks
from hub.runtime import HubRuntime
from hub.services.audit import record_audit
from hub.services.errors import InvalidAct, NotFound
from hub.services.org import advance_task, list_quarantine, list_tasks
from hub.services.quarantine import list_dropped
from hub.services.tasks import WELLBEING_TASK_KINDS

#: Task kinds: service requests from call buttons and the device tasks of issue #3
#: (``hub.services.tasks.DEVICE_TASK_KINDS``).
TaskKind = Literal[
    "service_request",
    "maintenance",
    "collection",
    "delivery",
    "door_alert",
    "bin_alert",
    "leak_check",
    "outage",
    "welfare_check",
    "check_in_call",
]

router = APIRouter(prefix="/api/v1", tags=["intake"])
WELLBEING_ONLY = "welfare tasks: grid worker, station, desk only / 关爱任务仅限网格员、社区站、热线"

Staff = Depends(require_roles(*STAFF))
Person = Annotated[Principal, Depends(require_roles(*HUMANS))]


@router.get(
    "/quarantine",
    summary="Messages and events that could not be processed, with why",
    dependencies=[Staff],
)
async def quarantine(
    conn: ReadConnection,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    return await list_quarantine(conn, limit=limit, offset=offset)


@router.get(
    "/quarantine/dropped",
    summary="Refused events not kept (over a quarantine cap), counted per edge and cause",
    dependencies=[Staff],
)
async def quarantine_dropped(conn: ReadConnection) -> list[dict[str, Any]]:
    return await list_dropped(conn)


@router.get("/tasks", summary="Non-urgent tasks: service requests, maintenance")
async def list_task_rows(
    principal: Person,
    conn: ReadConnection,
    state: Literal["open", "acknowledged", "done"] | None = None,
    kind: TaskKind | None = None,
    grid_id: Annotated[int | None, Query(gt=0)] = None,
    household_id: Annotated[int | None, Query(gt=0)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    if grid_id is not None and not principal.sees_grid(grid_id):
        raise forbidden(OUTSIDE_GRID)
    return await list_tasks(
        conn,
        state=state,
        kind=kind,
        grid_id=grid_id,
        household_id=household_id,
        limit=limit,
        offset=offset,
        grid_ids=None if principal.sees_all_grids() else principal.grid_ids,
        # welfare checks: the grid's worker, the station, the desk only (issue #15); a
        # worker sees only their grids' tasks anyway, so only an admin is left out
        exclude_kinds=WELLBEING_TASK_KINDS if principal.role is Role.ADMIN else (),
    )


@router.post("/tasks/{task_id}/acknowledge", summary="A worker takes the task (接单)")
async def acknowledge_task(
    task_id: int, body: WorkerAct, principal: Person, runtime: RuntimeDep
) -> dict[str, str]:
    await _advance(runtime, principal, task_id, body.worker_id, "acknowledged")
    return {"status": "acknowledged"}


@router.post("/tasks/{task_id}/done", summary="The task is done (已完成)")
async def finish_task(
    task_id: int, body: WorkerAct, principal: Person, runtime: RuntimeDep
) -> dict[str, str]:
    await _advance(runtime, principal, task_id, body.worker_id, "done")
    return {"status": "done"}


async def _advance(
    runtime: HubRuntime, principal: Principal, task_id: int, worker_id: int | None, to: str
) -> None:
    worker = acting_worker(principal, worker_id)
    columns = (tasks.c.grid_id, tasks.c.state, tasks.c.acknowledged_by)
    try:
        async with runtime.engine.begin() as conn:
            query = sa.select(*columns).where(tasks.c.id == task_id)
            before = (await conn.execute(query)).mappings().first()
            if before is None:
                raise NotFound(f"task {task_id} not found / 任务 {task_id} 不存在")
            if not principal.sees_grid(before["grid_id"]):
                raise forbidden(OUTSIDE_GRID)
            kind = (
                await conn.execute(sa.select(tasks.c.kind).where(tasks.c.id == task_id))
            ).scalar()
            if kind in WELLBEING_TASK_KINDS and not principal.may_see_wellbeing(before["grid_id"]):
                raise forbidden(WELLBEING_ONLY)
            now = runtime.clock()
            await advance_task(conn, task_id, worker, to, now)
            after = (await conn.execute(query)).mappings().one()
            await record_audit(
                conn,
                actor=principal,
                action=f"task.{to}",
                target_type="task",
                target_id=task_id,
                before=dict(before),
                after=dict(after),
                at=now,
            )
    except NotFound as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from err
    except InvalidAct as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from err


@router.get("/edges", summary="Last reported status of every edge agent", dependencies=[Staff])
async def edges(conn: ReadConnection) -> list[dict[str, Any]]:
    rows = (await conn.execute(sa.select(edge_status))).mappings().all()
    return [dict(r) for r in rows]


@router.get(
    "/stats", summary="Ingest and escalation counters of this hub process", dependencies=[Staff]
)
async def stats(runtime: RuntimeDep) -> dict[str, Any]:
    lateness = sorted(runtime.timer.lateness_s)
    return {
        "ingest": dict(runtime.ingest.stats),
        "ingest_backlog": runtime.ingest.backlog(),
        "escalations_fired": runtime.timer.fired,
        "escalation_lateness_p99_s": lateness[int(len(lateness) * 0.99)] if lateness else None,
        "alarm_queued_ms_p99": _p99_ms([q for q, _ in runtime.ingest.alarm_timings]),
        "alarm_handled_ms_p99": _p99_ms([h for _, h in runtime.ingest.alarm_timings]),
        "stream_delivered": runtime.streams.delivered,
        "stream_dropped": runtime.streams.dropped,
    }


def _p99_ms(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2)
