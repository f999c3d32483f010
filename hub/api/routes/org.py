"""Read-only views of the organisation: grids, workers, households, devices.

Enough for the console, the demo and scripts to find ids. Creating and editing them
(with validation and audit) is the operator API of issue #4.
"""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query

from hub.api.deps import Authenticated, ReadConnection
from hub.db.schema import devices, grids, households, residents, worker_grids, workers

router = APIRouter(prefix="/api/v1", tags=["organisation"], dependencies=[Authenticated])

Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=2**31)]


async def _rows(conn: ReadConnection, query: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in (await conn.execute(query)).mappings()]


@router.get("/grids", summary="Grids with their community and backup worker")
async def list_grids(conn: ReadConnection) -> list[dict[str, Any]]:
    return await _rows(conn, sa.select(grids).order_by(grids.c.id))


@router.get("/workers", summary="Workers with role and the grids they serve")
async def list_workers(
    conn: ReadConnection,
    role: str | None = None,
    grid_id: Annotated[int | None, Query(gt=0)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    query = sa.select(workers).order_by(workers.c.id).limit(limit).offset(offset)
    if role is not None:
        query = query.where(workers.c.role == role)
    if grid_id is not None:
        query = query.where(
            workers.c.id.in_(
                sa.select(worker_grids.c.worker_id).where(worker_grids.c.grid_id == grid_id)
            )
        )
    listed = await _rows(conn, query)
    links = await _rows(conn, sa.select(worker_grids))
    for worker in listed:
        worker["grid_ids"] = [
            link["grid_id"] for link in links if link["worker_id"] == worker["id"]
        ]
    return listed


@router.get("/households", summary="Households with residents (medical notes omitted)")
async def list_households(
    conn: ReadConnection,
    grid_id: Annotated[int | None, Query(gt=0)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    query = (
        sa.select(
            households.c.id, households.c.grid_id, households.c.address, households.c.lives_alone
        )
        .order_by(households.c.id)
        .limit(limit)
        .offset(offset)
    )
    if grid_id is not None:
        query = query.where(households.c.grid_id == grid_id)
    listed = await _rows(conn, query)
    ids = [h["id"] for h in listed]
    names = await _rows(
        conn,
        sa.select(residents.c.household_id, residents.c.name)
        .where(residents.c.household_id.in_(ids))
        .order_by(residents.c.id),
    )
    for household in listed:
        household["residents"] = [r["name"] for r in names if r["household_id"] == household["id"]]
    return listed


@router.get("/devices", summary="Registered devices with last contact and battery")
async def list_devices(
    conn: ReadConnection,
    household_id: Annotated[int | None, Query(gt=0)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    query = sa.select(devices).order_by(devices.c.id).limit(limit).offset(offset)
    if household_id is not None:
        query = query.where(devices.c.household_id == household_id)
    return await _rows(conn, query)
