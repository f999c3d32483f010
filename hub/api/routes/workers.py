"""Workers (工作人员): grid workers and desk staff, with the grids they serve.

Everyone on the staff may read (a grid worker needs the numbers of colleagues and desks);
operators and admins create and change. ``grid_ids`` in an update replaces the worker's
grid assignments; a grid the worker still has shifts in cannot be taken away (422).
Notification streams of a worker are in :mod:`hub.api.routes.stream`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field

from hub.api.deps import ReadConnection, RuntimeDep
from hub.api.errors import NOT_FOUND, WRITE, translated, writing
from hub.api.fields import (
    PAGED,
    Id,
    IdPath,
    IdQuery,
    Limit,
    Name,
    Offset,
    Patch,
    Phone,
    Reader,
    Search,
    Staff,
    set_total,
)
from hub.services import staff
from hub.services.staff import WorkerRole

router = APIRouter(prefix="/api/v1/workers", tags=["workers"])

GridIds = Annotated[list[Id], Field(max_length=100, description="grids served (grid workers)")]


class WorkerCreate(BaseModel):
    model_config = {"extra": "forbid"}
    name: Name
    phone: Phone
    role: WorkerRole
    community_id: Id | None = Field(default=None, description="required for community_station")
    street_id: Id | None = Field(default=None, description="required for street_centre")
    grid_ids: GridIds = []
    active: bool = True


class WorkerUpdate(Patch):
    nullable: ClassVar[frozenset[str]] = frozenset({"community_id", "street_id"})
    name: Name | None = None
    phone: Phone | None = None
    role: WorkerRole | None = None
    community_id: Id | None = None
    street_id: Id | None = None
    grid_ids: GridIds | None = None
    active: bool | None = None


class WorkerPublic(BaseModel):
    id: int
    name: str
    phone: str
    role: str
    community_id: int | None
    street_id: int | None
    active: bool
    grid_ids: list[int]


@router.get("", summary="List workers; q searches name and phone", responses=PAGED)
async def list_workers(
    _: Reader,
    conn: ReadConnection,
    response: Response,
    role: WorkerRole | None = None,
    grid_id: IdQuery = None,
    q: Search = None,
    active: Annotated[bool | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[WorkerPublic]:
    rows, total = await staff.list_workers(
        conn, role=role, grid_id=grid_id, q=q, active=active, limit=limit, offset=offset
    )
    set_total(response, total)
    return [WorkerPublic.model_validate(r) for r in rows]


@router.get("/{worker_id}", summary="One worker", responses=NOT_FOUND)
async def get_worker(worker_id: IdPath, _: Reader, conn: ReadConnection) -> WorkerPublic:
    with translated():
        return WorkerPublic.model_validate(await staff.get_worker(conn, worker_id))


@router.post("", status_code=status.HTTP_201_CREATED, summary="Add a worker", responses=WRITE)
async def create_worker(body: WorkerCreate, principal: Staff, runtime: RuntimeDep) -> WorkerPublic:
    async with writing(runtime) as conn:
        row = await staff.create_worker(conn, principal, **body.model_dump(), now=runtime.clock())
    return WorkerPublic.model_validate(row)


@router.patch("/{worker_id}", summary="Change a worker or their grids", responses=WRITE)
async def update_worker(
    worker_id: IdPath, body: WorkerUpdate, principal: Staff, runtime: RuntimeDep
) -> WorkerPublic:
    async with writing(runtime) as conn:
        row = await staff.update_worker(conn, principal, worker_id, body.changes(), runtime.clock())
    return WorkerPublic.model_validate(row)
