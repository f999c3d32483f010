"""What came in: quarantined messages, service/maintenance tasks, edge status, ingest stats."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query

from hub.api.deps import Authenticated, ReadConnection, RuntimeDep
from hub.db.schema import edge_status
from hub.services.org import list_quarantine, list_tasks

router = APIRouter(prefix="/api/v1", tags=["intake"], dependencies=[Authenticated])


@router.get("/quarantine", summary="Messages and events that could not be processed, with why")
async def quarantine(
    conn: ReadConnection,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    return await list_quarantine(conn, limit=limit, offset=offset)


@router.get("/tasks", summary="Non-urgent tasks: service requests, maintenance")
async def tasks(
    conn: ReadConnection,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    return await list_tasks(conn, limit=limit, offset=offset)


@router.get("/edges", summary="Last reported status of every edge agent")
async def edges(conn: ReadConnection) -> list[dict[str, Any]]:
    rows = (await conn.execute(sa.select(edge_status))).mappings().all()
    return [dict(r) for r in rows]


@router.get("/stats", summary="Ingest and escalation counters of this hub process")
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
