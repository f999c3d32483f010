"""Districts, streets and communities (区 · 街道 · 社区), the levels above the grids.

Everyone on the staff may read; operators and admins create, change and retire (the same
roles as grids). A street or community answers with ``contacts``: the street-centre or
community-station workers the escalation calls at that tier (create them as workers with
``role`` and ``street_id``/``community_id``). Retiring is soft and refused (409) while
the level still has active streets, communities or grids. Rules:
:mod:`hub.services.levels`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel

from hub.api.deps import ReadConnection, RuntimeDep
from hub.api.errors import CONFLICT, NOT_FOUND, WRITE, translated, writing
from hub.api.fields import (
    PAGED,
    Id,
    IdPath,
    IdQuery,
    Limit,
    Name,
    Offset,
    Patch,
    Reader,
    Search,
    Staff,
    set_total,
)
from hub.services import levels
from hub.services.levels import COMMUNITY, DISTRICT, STREET

router = APIRouter(prefix="/api/v1", tags=["districts, streets, communities"])

Retired = Annotated[bool, Query(description="true: list retired ones instead")]


class Contact(BaseModel):
    worker_id: int
    name: str
    phone: str


class DistrictCreate(BaseModel):
    model_config = {"extra": "forbid"}
    name: Name


class DistrictUpdate(Patch):
    name: Name | None = None


class DistrictPublic(BaseModel):
    id: int
    name: str
    retired_at: datetime | None


class StreetCreate(BaseModel):
    model_config = {"extra": "forbid"}
    district_id: Id
    name: Name


class StreetUpdate(Patch):
    district_id: Id | None = None
    name: Name | None = None


class StreetPublic(BaseModel):
    id: int
    district_id: int
    name: str
    retired_at: datetime | None
    contacts: list[Contact]


class CommunityCreate(BaseModel):
    model_config = {"extra": "forbid"}
    street_id: Id
    name: Name


class CommunityUpdate(Patch):
    street_id: Id | None = None
    name: Name | None = None


class CommunityPublic(BaseModel):
    id: int
    street_id: int
    name: str
    retired_at: datetime | None
    contacts: list[Contact]


# --- districts ---------------------------------------------------------------------------


@router.get("/districts", summary="List districts (区)", responses=PAGED)
async def list_districts(
    _: Reader,
    conn: ReadConnection,
    response: Response,
    q: Search = None,
    retired: Retired = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[DistrictPublic]:
    rows, total = await levels.list_levels(
        conn, DISTRICT, q=q, retired=retired, limit=limit, offset=offset
    )
    set_total(response, total)
    return [DistrictPublic.model_validate(r) for r in rows]


@router.get("/districts/{district_id}", summary="One district", responses=NOT_FOUND)
async def get_district(district_id: IdPath, _: Reader, conn: ReadConnection) -> DistrictPublic:
    with translated():
        return DistrictPublic.model_validate(await levels.get_level(conn, DISTRICT, district_id))


@router.post(
    "/districts",
    status_code=status.HTTP_201_CREATED,
    summary="Create a district",
    responses=WRITE,
)
async def create_district(
    body: DistrictCreate, principal: Staff, runtime: RuntimeDep
) -> DistrictPublic:
    async with writing(runtime) as conn:
        row = await levels.create_level(
            conn, DISTRICT, principal, body.model_dump(), runtime.clock()
        )
    return DistrictPublic.model_validate(row)


@router.patch("/districts/{district_id}", summary="Rename a district", responses=WRITE)
async def update_district(
    district_id: IdPath, body: DistrictUpdate, principal: Staff, runtime: RuntimeDep
) -> DistrictPublic:
    async with writing(runtime) as conn:
        row = await levels.update_level(
            conn, DISTRICT, principal, district_id, body.changes(), runtime.clock()
        )
    return DistrictPublic.model_validate(row)


@router.post(
    "/districts/{district_id}/retire",
    summary="Retire a district (it has no active streets)",
    responses=NOT_FOUND | CONFLICT,
)
async def retire_district(
    district_id: IdPath, principal: Staff, runtime: RuntimeDep
) -> DistrictPublic:
    async with writing(runtime) as conn:
        row = await levels.retire_level(conn, DISTRICT, principal, district_id, runtime.clock())
    return DistrictPublic.model_validate(row)


# --- streets -----------------------------------------------------------------------------


@router.get("/streets", summary="List streets (街道) with their centre's contacts", responses=PAGED)
async def list_streets(
    _: Reader,
    conn: ReadConnection,
    response: Response,
    district_id: IdQuery = None,
    q: Search = None,
    retired: Retired = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[StreetPublic]:
    rows, total = await levels.list_levels(
        conn, STREET, parent_id=district_id, q=q, retired=retired, limit=limit, offset=offset
    )
    set_total(response, total)
    return [StreetPublic.model_validate(r) for r in rows]


@router.get("/streets/{street_id}", summary="One street", responses=NOT_FOUND)
async def get_street(street_id: IdPath, _: Reader, conn: ReadConnection) -> StreetPublic:
    with translated():
        return StreetPublic.model_validate(await levels.get_level(conn, STREET, street_id))


@router.post(
    "/streets", status_code=status.HTTP_201_CREATED, summary="Create a street", responses=WRITE
)
async def create_street(body: StreetCreate, principal: Staff, runtime: RuntimeDep) -> StreetPublic:
    async with writing(runtime) as conn:
        row = await levels.create_level(conn, STREET, principal, body.model_dump(), runtime.clock())
    return StreetPublic.model_validate(row)


@router.patch("/streets/{street_id}", summary="Rename or move a street", responses=WRITE)
async def update_street(
    street_id: IdPath, body: StreetUpdate, principal: Staff, runtime: RuntimeDep
) -> StreetPublic:
    async with writing(runtime) as conn:
        row = await levels.update_level(
            conn, STREET, principal, street_id, body.changes(), runtime.clock()
        )
    return StreetPublic.model_validate(row)


@router.post(
    "/streets/{street_id}/retire",
    summary="Retire a street (it has no active communities)",
    responses=NOT_FOUND | CONFLICT,
)
async def retire_street(street_id: IdPath, principal: Staff, runtime: RuntimeDep) -> StreetPublic:
    async with writing(runtime) as conn:
        row = await levels.retire_level(conn, STREET, principal, street_id, runtime.clock())
    return StreetPublic.model_validate(row)


# --- communities -------------------------------------------------------------------------


@router.get(
    "/communities", summary="List communities (社区) with their station's contacts", responses=PAGED
)
async def list_communities(
    _: Reader,
    conn: ReadConnection,
    response: Response,
    street_id: IdQuery = None,
    q: Search = None,
    retired: Retired = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[CommunityPublic]:
    rows, total = await levels.list_levels(
        conn, COMMUNITY, parent_id=street_id, q=q, retired=retired, limit=limit, offset=offset
    )
    set_total(response, total)
    return [CommunityPublic.model_validate(r) for r in rows]


@router.get("/communities/{community_id}", summary="One community", responses=NOT_FOUND)
async def get_community(community_id: IdPath, _: Reader, conn: ReadConnection) -> CommunityPublic:
    with translated():
        row = await levels.get_level(conn, COMMUNITY, community_id)
    return CommunityPublic.model_validate(row)


@router.post(
    "/communities",
    status_code=status.HTTP_201_CREATED,
    summary="Create a community",
    responses=WRITE,
)
async def create_community(
    body: CommunityCreate, principal: Staff, runtime: RuntimeDep
) -> CommunityPublic:
    async with writing(runtime) as conn:
        row = await levels.create_level(
            conn, COMMUNITY, principal, body.model_dump(), runtime.clock()
        )
    return CommunityPublic.model_validate(row)


@router.patch("/communities/{community_id}", summary="Rename or move a community", responses=WRITE)
async def update_community(
    community_id: IdPath, body: CommunityUpdate, principal: Staff, runtime: RuntimeDep
) -> CommunityPublic:
    async with writing(runtime) as conn:
        row = await levels.update_level(
            conn, COMMUNITY, principal, community_id, body.changes(), runtime.clock()
        )
    return CommunityPublic.model_validate(row)


@router.post(
    "/communities/{community_id}/retire",
    summary="Retire a community (it has no grids)",
    responses=NOT_FOUND | CONFLICT,
)
async def retire_community(
    community_id: IdPath, principal: Staff, runtime: RuntimeDep
) -> CommunityPublic:
    async with writing(runtime) as conn:
        row = await levels.retire_level(conn, COMMUNITY, principal, community_id, runtime.clock())
    return CommunityPublic.model_validate(row)
