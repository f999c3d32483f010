"""Facilities (issue #3): a door's access log, and the parcels waiting in lockers.

The access log names people (face ids, card numbers), so it is for admins, operators and
the grid worker of the door's grid, not the hotline desk. Parcels are for every person's
role: the hotline answers "is my parcel there?"; a grid worker sees only the parcels of
their grids (a parcel is in its household's grid, else in the locker's). Alerts from
doors, lockers, meters and bins are tasks, listed and advanced under ``/api/v1/tasks``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime, BaseModel

from hub.api.deps import Principal, ReadConnection, Role, require_roles
from hub.api.errors import READ_ONE, translated
from hub.api.fields import PAGED, DeviceIdPath, IdQuery, Limit, Offset, set_total
from hub.domain.device_rows import DEVICE_ID
from hub.handlers.facilities.doors import list_access_log
from hub.handlers.facilities.parcels import household_grid, list_parcels
from hub.services import registry
from hub.services.records import require_grid

router = APIRouter(prefix="/api/v1", tags=["facilities"])

AccessReader = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPERATOR, Role.WORKER))]
ParcelReader = Annotated[
    Principal, Depends(require_roles(Role.ADMIN, Role.OPERATOR, Role.HOTLINE, Role.WORKER))
]
DoorKind = Literal["face_pass", "face_unknown", "card_pass", "door_forced", "door_held_open"]
ParcelState = Literal["waiting", "overdue", "picked_up"]


class AccessEntry(BaseModel):
    id: int
    device_id: str
    kind: str
    person_id: str | None
    card_id: str | None
    similarity: float | None
    seconds: int | None
    at: datetime


class ParcelPublic(BaseModel):
    id: int
    device_id: str
    place: str | None
    compartment: int
    parcel_id: str
    household_id: int | None
    household_address: str | None
    grid_id: int | None
    state: ParcelState
    deposited_at: datetime
    picked_up_at: datetime | None
    overdue_at: datetime | None
    delivery_task_id: int | None
    notice_state: str
    notice_attempts: int
    notice_error: str
    noticed_at: datetime | None


@router.get(
    "/doors/{device_id}/access-log",
    summary="A door's access log, newest first (门禁通行记录)",
    responses=PAGED | READ_ONE,
)
async def access_log(
    device_id: DeviceIdPath,
    principal: AccessReader,
    conn: ReadConnection,
    response: Response,
    since: Annotated[AwareDatetime | None, Query(description="from (inclusive)")] = None,
    until: Annotated[AwareDatetime | None, Query(description="to (exclusive)")] = None,
    kind: DoorKind | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[AccessEntry]:
    with translated():
        await registry.get_device(conn, principal, device_id)  # 404, also outside grids
        rows, total = await list_access_log(
            conn, device_id, since=since, until=until, kind=kind, limit=limit, offset=offset
        )
    set_total(response, total)
    return [AccessEntry.model_validate(r) for r in rows]


@router.get(
    "/parcels",
    summary="Parcels in the lockers, newest first (快递柜包裹)",
    responses=PAGED | READ_ONE,
)
async def parcels(
    principal: ParcelReader,
    conn: ReadConnection,
    response: Response,
    household_id: IdQuery = None,
    state: ParcelState | None = None,
    device_id: Annotated[str | None, Query(pattern=DEVICE_ID.pattern)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ParcelPublic]:
    with translated():
        if household_id is not None and not principal.sees_all_grids():
            grid_id = await household_grid(conn, household_id)
            require_grid(principal, grid_id, f"household {household_id}")
        rows, total = await list_parcels(
            conn,
            household_id=household_id,
            state=state,
            device_id=device_id,
            grid_ids=None if principal.sees_all_grids() else sorted(principal.grid_ids),
            limit=limit,
            offset=offset,
        )
    set_total(response, total)
    return [ParcelPublic.model_validate(r) for r in rows]
