"""Grids and their weekly duty shifts (网格与值班表).

Everyone on the staff may read; operators and admins change. Shifts are weekly, in the
community's local wall-clock time (``end_local <= start_local`` crosses midnight, equal
means 24 hours); overlapping shifts of one role in one grid are refused with a 422 that
names both shifts. ``PUT /grids/{id}/shifts`` replaces a grid's whole roster at once.
A shift ending at 23:59 is refused (it leaves a minute uncovered every night: write 00:00).

Shift overrides (临时调班, issue #16): ``/shift-overrides`` are one-off assignments between
two instants (ISO 8601 with an offset, e.g. ``2026-12-24T20:00:00+08:00``); while one is in
force for a grid and role it replaces that role's weekly roster in that grid, so the
absent worker is not called as well. A desk override (no grid) puts a desk worker on duty.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import AwareDatetime, BaseModel, Field

from hub.api.deps import ReadConnection, RuntimeDep
from hub.api.errors import CONFLICT, INVALID, NOT_FOUND, WRITE, translated, writing
from hub.api.fields import (
    PAGED,
    ClockText,
    Id,
    IdPath,
    IdQuery,
    Limit,
    LocalTime,
    Name,
    Notes,
    Offset,
    Patch,
    Reader,
    Search,
    Staff,
    set_total,
)
from hub.services import rosters, staff
from hub.services.rosters import OverrideInput, ShiftInput

router = APIRouter(prefix="/api/v1", tags=["grids and duty"])

Weekday = Annotated[int, Field(ge=0, le=6, description="0 = Monday")]
ShiftRole = Literal["primary", "backup"]


class GridCreate(BaseModel):
    model_config = {"extra": "forbid"}
    community_id: Id
    name: Name
    backup_worker_id: Id | None = Field(default=None, description="assigned to the grid too")


class GridUpdate(Patch):
    nullable: ClassVar[frozenset[str]] = frozenset({"backup_worker_id"})
    community_id: Id | None = None
    name: Name | None = None
    backup_worker_id: Id | None = None


class GridPublic(BaseModel):
    id: int
    community_id: int
    name: str
    backup_worker_id: int | None
    worker_ids: list[int]


_END = (
    "local time; end <= start crosses midnight (20:00-08:00), end == start is 24 hours "
    "(00:00-00:00); 23:59 is refused (a minute uncovered every night: write 00:00)"
)


class ShiftCreate(BaseModel):
    model_config = {"extra": "forbid"}
    worker_id: Id
    grid_id: Id | None = Field(default=None, description="null: a desk shift")
    weekday: Weekday
    start_local: LocalTime
    end_local: LocalTime = Field(description=_END)
    role: ShiftRole = "primary"

    def as_input(self) -> ShiftInput:
        return ShiftInput(**self.model_dump())


class ShiftUpdate(Patch):
    nullable: ClassVar[frozenset[str]] = frozenset({"grid_id"})
    worker_id: Id | None = None
    grid_id: Id | None = None
    weekday: Weekday | None = None
    start_local: LocalTime | None = None
    end_local: LocalTime | None = None
    role: ShiftRole | None = None


class GridShift(BaseModel):
    model_config = {"extra": "forbid"}
    worker_id: Id
    weekday: Weekday
    start_local: LocalTime
    end_local: LocalTime = Field(description=_END)
    role: ShiftRole = "primary"


class Roster(BaseModel):
    model_config = {"extra": "forbid"}
    shifts: list[GridShift] = Field(max_length=200, description="the whole week")


class ShiftPublic(BaseModel):
    id: int
    worker_id: int
    grid_id: int | None
    weekday: int
    start_local: ClockText
    end_local: ClockText
    role: str


@router.get("/grids", summary="List grids", responses=PAGED)
async def list_grids(
    _: Reader,
    conn: ReadConnection,
    response: Response,
    community_id: IdQuery = None,
    q: Search = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[GridPublic]:
    rows, total = await staff.list_grids(
        conn, community_id=community_id, q=q, limit=limit, offset=offset
    )
    set_total(response, total)
    return [GridPublic.model_validate(r) for r in rows]


@router.get("/grids/{grid_id}", summary="One grid", responses=NOT_FOUND)
async def get_grid(grid_id: IdPath, _: Reader, conn: ReadConnection) -> GridPublic:
    with translated():
        return GridPublic.model_validate(await staff.get_grid(conn, grid_id))


@router.post(
    "/grids", status_code=status.HTTP_201_CREATED, summary="Create a grid", responses=WRITE
)
async def create_grid(body: GridCreate, principal: Staff, runtime: RuntimeDep) -> GridPublic:
    async with writing(runtime) as conn:
        row = await staff.create_grid(conn, principal, **body.model_dump(), now=runtime.clock())
    return GridPublic.model_validate(row)


@router.patch("/grids/{grid_id}", summary="Change a grid", responses=WRITE)
async def update_grid(
    grid_id: IdPath, body: GridUpdate, principal: Staff, runtime: RuntimeDep
) -> GridPublic:
    async with writing(runtime) as conn:
        row = await staff.update_grid(conn, principal, grid_id, body.changes(), runtime.clock())
    return GridPublic.model_validate(row)


@router.get("/grids/{grid_id}/shifts", summary="A grid's weekly roster", responses=NOT_FOUND)
async def grid_shifts(grid_id: IdPath, _: Reader, conn: ReadConnection) -> list[ShiftPublic]:
    with translated():
        await staff.get_grid(conn, grid_id)
    return _shifts(await rosters.list_shifts(conn, grid_id=grid_id))


@router.put("/grids/{grid_id}/shifts", summary="Replace a grid's weekly roster", responses=WRITE)
async def replace_grid_shifts(
    grid_id: IdPath, body: Roster, principal: Staff, runtime: RuntimeDep
) -> list[ShiftPublic]:
    roster = [ShiftInput(grid_id=grid_id, **s.model_dump()) for s in body.shifts]
    async with writing(runtime) as conn:
        rows = await rosters.replace_grid_shifts(conn, principal, grid_id, roster, runtime.clock())
    return _shifts(rows)


@router.get("/shifts", summary="List shifts (grid and desk)")
async def list_shifts(
    _: Reader,
    conn: ReadConnection,
    grid_id: IdQuery = None,
    worker_id: IdQuery = None,
    desk: Annotated[bool | None, Query(description="true: desk shifts only")] = None,
) -> list[ShiftPublic]:
    return _shifts(await rosters.list_shifts(conn, grid_id=grid_id, worker_id=worker_id, desk=desk))


@router.post("/shifts", status_code=status.HTTP_201_CREATED, summary="Add a shift", responses=WRITE)
async def create_shift(body: ShiftCreate, principal: Staff, runtime: RuntimeDep) -> ShiftPublic:
    async with writing(runtime) as conn:
        row = await rosters.create_shift(conn, principal, body.as_input(), runtime.clock())
    return ShiftPublic.model_validate(row)


@router.patch("/shifts/{shift_id}", summary="Change a shift", responses=WRITE)
async def update_shift(
    shift_id: IdPath, body: ShiftUpdate, principal: Staff, runtime: RuntimeDep
) -> ShiftPublic:
    async with writing(runtime) as conn:
        row = await rosters.update_shift(conn, principal, shift_id, body.changes(), runtime.clock())
    return ShiftPublic.model_validate(row)


@router.delete(
    "/shifts/{shift_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a shift",
    responses=NOT_FOUND | CONFLICT | INVALID,
)
async def delete_shift(shift_id: IdPath, principal: Staff, runtime: RuntimeDep) -> None:
    async with writing(runtime) as conn:
        await rosters.delete_shift(conn, principal, shift_id, runtime.clock())


class OverrideCreate(BaseModel):
    model_config = {"extra": "forbid"}
    worker_id: Id
    grid_id: Id | None = Field(default=None, description="null: a desk worker's override")
    starts_at: AwareDatetime = Field(examples=["2026-12-24T20:00:00+08:00"])
    ends_at: AwareDatetime = Field(description="exclusive", examples=["2026-12-25T08:00:00+08:00"])
    role: ShiftRole = "primary"
    note: Notes = ""


class OverridePublic(BaseModel):
    id: int
    worker_id: int
    grid_id: int | None
    starts_at: datetime
    ends_at: datetime
    role: str
    note: str


@router.get("/shift-overrides", summary="List shift overrides (not yet over, unless all=true)")
async def list_overrides(
    _: Reader,
    conn: ReadConnection,
    runtime: RuntimeDep,
    grid_id: IdQuery = None,
    worker_id: IdQuery = None,
    all: Annotated[bool, Query(description="true: past overrides too")] = False,
) -> list[OverridePublic]:
    rows = await rosters.list_overrides(
        conn,
        grid_id=grid_id,
        worker_id=worker_id,
        ending_after=None if all else runtime.clock(),
    )
    return [OverridePublic.model_validate(r) for r in rows]


@router.post(
    "/shift-overrides",
    status_code=status.HTTP_201_CREATED,
    summary="Put a worker on duty between two instants (replaces the roster meanwhile)",
    responses=WRITE,
)
async def create_override(
    body: OverrideCreate, principal: Staff, runtime: RuntimeDep
) -> OverridePublic:
    async with writing(runtime) as conn:
        row = await rosters.create_override(
            conn, principal, OverrideInput(**body.model_dump()), runtime.clock()
        )
    return OverridePublic.model_validate(row)


@router.delete(
    "/shift-overrides/{override_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a shift override",
    responses=NOT_FOUND,
)
async def delete_override(override_id: IdPath, principal: Staff, runtime: RuntimeDep) -> None:
    async with writing(runtime) as conn:
        await rosters.delete_override(conn, principal, override_id, runtime.clock())


def _shifts(rows: list[dict[str, Any]]) -> list[ShiftPublic]:
    return [ShiftPublic.model_validate(r) for r in rows]
