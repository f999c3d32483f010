"""Households (住户), their residents (居民) and emergency contacts (紧急联系人).

Operators and admins see every grid; a grid worker sees and changes only households of
their grids (a list is narrowed, anything else is 403); the hotline desk reads. Lists
carry ``X-Total-Count``. ``GET /households/{id}`` shows ``medical_notes`` only to
operators and the household's grid workers (otherwise ``null``) and records each showing
in the audit log; no other answer contains them.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field

from hub.api.deps import ReadConnection, RuntimeDep
from hub.api.errors import FORBIDDEN, READ_ONE, WRITE, translated, writing
from hub.api.fields import (
    PAGED,
    Address,
    BirthYear,
    FieldStaff,
    Id,
    IdPath,
    IdQuery,
    Limit,
    Name,
    Notes,
    Offset,
    Patch,
    Phone,
    Reader,
    Relation,
    Search,
    set_total,
)
from hub.services import households
from hub.services.records import require_grid

router = APIRouter(prefix="/api/v1", tags=["households"])


class HouseholdCreate(BaseModel):
    model_config = {"extra": "forbid"}
    grid_id: Id
    address: Address
    lives_alone: bool = False
    medical_notes: Notes = Field(default="", description="operators and grid workers only")
    notes: Notes = ""


class HouseholdUpdate(Patch):
    grid_id: Id | None = Field(default=None, description="moves the household and its devices")
    address: Address | None = None
    lives_alone: bool | None = None
    medical_notes: Notes | None = None
    notes: Notes | None = None


class HouseholdSummary(BaseModel):
    id: int
    grid_id: int
    address: str
    lives_alone: bool
    residents: list[str]


class HouseholdPublic(BaseModel):
    id: int
    grid_id: int
    address: str
    lives_alone: bool
    notes: str


class ResidentCreate(BaseModel):
    model_config = {"extra": "forbid"}
    name: Name
    phone: Phone | None = None
    birth_year: BirthYear | None = None


class ResidentUpdate(Patch):
    nullable: ClassVar[frozenset[str]] = frozenset({"phone", "birth_year"})
    household_id: Id | None = Field(default=None, description="moves the resident")
    name: Name | None = None
    phone: Phone | None = None
    birth_year: BirthYear | None = None


class ResidentPublic(BaseModel):
    id: int
    household_id: int
    name: str
    phone: str | None
    birth_year: int | None


class ResidentListed(ResidentPublic):
    grid_id: int
    address: str


class ContactCreate(BaseModel):
    model_config = {"extra": "forbid"}
    name: Name
    relation: Relation = ""
    phone: Phone


class ContactUpdate(Patch):
    name: Name | None = None
    relation: Relation | None = None
    phone: Phone | None = None


class ContactPublic(BaseModel):
    id: int
    household_id: int
    name: str
    relation: str
    phone: str


class HouseholdDetail(HouseholdPublic):
    medical_notes: str | None = Field(description="null: not shown to this caller")
    residents: list[ResidentPublic]
    emergency_contacts: list[ContactPublic]
    device_ids: list[str]


@router.get(
    "/households",
    summary="List households; q searches address and residents' names",
    responses=PAGED | FORBIDDEN,
)
async def list_households(
    principal: Reader,
    conn: ReadConnection,
    response: Response,
    grid_id: IdQuery = None,
    q: Search = None,
    lives_alone: Annotated[bool | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[HouseholdSummary]:
    with translated():
        if grid_id is not None:
            require_grid(principal, grid_id, f"grid {grid_id}")
        rows, total = await households.list_households(
            conn,
            principal,
            grid_id=grid_id,
            q=q,
            lives_alone=lives_alone,
            limit=limit,
            offset=offset,
        )
    set_total(response, total)
    return [HouseholdSummary.model_validate(r) for r in rows]


@router.get(
    "/households/{household_id}",
    summary="One household with residents, contacts and devices",
    responses=READ_ONE,
)
async def get_household(
    household_id: IdPath, principal: Reader, runtime: RuntimeDep
) -> HouseholdDetail:
    async with writing(runtime) as conn:  # a shown medical note is audited
        row = await households.get_household(conn, principal, household_id, runtime.clock())
    return HouseholdDetail.model_validate(row)


@router.post(
    "/households", status_code=status.HTTP_201_CREATED, summary="Add a household", responses=WRITE
)
async def create_household(
    body: HouseholdCreate, principal: FieldStaff, runtime: RuntimeDep
) -> HouseholdPublic:
    async with writing(runtime) as conn:
        row = await households.create_household(
            conn, principal, **body.model_dump(), now=runtime.clock()
        )
    return HouseholdPublic.model_validate(row)


@router.patch("/households/{household_id}", summary="Change or move a household", responses=WRITE)
async def update_household(
    household_id: IdPath, body: HouseholdUpdate, principal: FieldStaff, runtime: RuntimeDep
) -> HouseholdPublic:
    async with writing(runtime) as conn:
        row = await households.update_household(
            conn, principal, household_id, body.changes(), runtime.clock()
        )
    return HouseholdPublic.model_validate(row)


@router.get(
    "/residents",
    summary="List residents; q searches name and phone",
    responses=PAGED | FORBIDDEN,
)
async def list_residents(
    principal: Reader,
    conn: ReadConnection,
    response: Response,
    household_id: IdQuery = None,
    grid_id: IdQuery = None,
    q: Search = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ResidentListed]:
    with translated():
        if grid_id is not None:
            require_grid(principal, grid_id, f"grid {grid_id}")
        rows, total = await households.list_residents(
            conn,
            principal,
            household_id=household_id,
            grid_id=grid_id,
            q=q,
            limit=limit,
            offset=offset,
        )
    set_total(response, total)
    return [ResidentListed.model_validate(r) for r in rows]


@router.post(
    "/households/{household_id}/residents",
    status_code=status.HTTP_201_CREATED,
    summary="Add a resident to a household",
    responses=WRITE,
)
async def create_resident(
    household_id: IdPath, body: ResidentCreate, principal: FieldStaff, runtime: RuntimeDep
) -> ResidentPublic:
    async with writing(runtime) as conn:
        row = await households.create_resident(
            conn, principal, household_id, body.model_dump(), runtime.clock()
        )
    return ResidentPublic.model_validate(row)


@router.patch("/residents/{resident_id}", summary="Change or move a resident", responses=WRITE)
async def update_resident(
    resident_id: IdPath, body: ResidentUpdate, principal: FieldStaff, runtime: RuntimeDep
) -> ResidentPublic:
    async with writing(runtime) as conn:
        row = await households.update_resident(
            conn, principal, resident_id, body.changes(), runtime.clock()
        )
    return ResidentPublic.model_validate(row)


@router.delete(
    "/residents/{resident_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a resident (moved out, deceased)",
    responses=READ_ONE,
)
async def delete_resident(resident_id: IdPath, principal: FieldStaff, runtime: RuntimeDep) -> None:
    async with writing(runtime) as conn:
        await households.delete_resident(conn, principal, resident_id, runtime.clock())


@router.post(
    "/households/{household_id}/emergency-contacts",
    status_code=status.HTTP_201_CREATED,
    summary="Add an emergency contact",
    responses=WRITE,
)
async def create_contact(
    household_id: IdPath, body: ContactCreate, principal: FieldStaff, runtime: RuntimeDep
) -> ContactPublic:
    async with writing(runtime) as conn:
        row = await households.create_contact(
            conn, principal, household_id, body.model_dump(), runtime.clock()
        )
    return ContactPublic.model_validate(row)


@router.patch(
    "/emergency-contacts/{contact_id}", summary="Change an emergency contact", responses=WRITE
)
async def update_contact(
    contact_id: IdPath, body: ContactUpdate, principal: FieldStaff, runtime: RuntimeDep
) -> ContactPublic:
    async with writing(runtime) as conn:
        row = await households.update_contact(
            conn, principal, contact_id, body.changes(), runtime.clock()
        )
    return ContactPublic.model_validate(row)


@router.delete(
    "/emergency-contacts/{contact_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove an emergency contact",
    responses=READ_ONE,
)
async def delete_contact(contact_id: IdPath, principal: FieldStaff, runtime: RuntimeDep) -> None:
    async with writing(runtime) as conn:
        await households.delete_contact(conn, principal, contact_id, runtime.clock())
