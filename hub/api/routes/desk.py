"""The 96890 hotline desk board's API: open cases, caller search, health; reassign, notes.

Reading the board (cases, areas, caller search, health) is for the hotline desk,
operators and admins; grid workers have their own page and their own case list
(``/api/v1/cases``). Reassigning a case is a desk act (hotline, operators, admins).
Adding a note is open to every person's role, a grid worker only on cases of their grids,
so the worker on the way can say so on the case's timeline. Both acts are written with a
row in the audit log, like every act on a case (``hub.api.routes.cases.act_on_case``).

Opening a case for a caller is the existing ``POST /api/v1/cases`` (``household_id``
from the search here).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from hub.api.deps import HUMANS, Principal, ReadConnection, Role, RuntimeDep, require_roles
from hub.api.errors import FORBIDDEN, INVALID, NOT_FOUND
from hub.api.fields import Id, IdQuery
from hub.api.routes.cases import act_on_case
from hub.domain.case import NOTE_MAX_CHARS
from hub.services import desk
from hub.services.areas import load_areas

router = APIRouter(prefix="/api/v1", tags=["desk"])

Desk = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPERATOR, Role.HOTLINE))]
Person = Annotated[Principal, Depends(require_roles(*HUMANS))]
_ACT_RESPONSES = FORBIDDEN | NOT_FOUND | INVALID | {409: {"description": "not possible now"}}


class ReassignBody(BaseModel):
    model_config = {"extra": "forbid"}
    worker_id: Id = Field(description="the worker who gets the case / 改派给的工作人员")
    note: str = Field(default="", max_length=NOTE_MAX_CHARS, description="why, for the timeline")


class NoteBody(BaseModel):
    model_config = {"extra": "forbid"}
    text: str = Field(min_length=1, max_length=NOTE_MAX_CHARS)


@router.get("/desk/cases", summary="Every open case for the desk board", responses=FORBIDDEN)
async def board_cases(
    _: Desk,
    runtime: RuntimeDep,
    conn: ReadConnection,
    street_id: IdQuery = None,
    community_id: IdQuery = None,
    grid_id: IdQuery = None,
) -> dict[str, Any]:
    areas = await load_areas(conn)
    grid_ids = areas.filter_grids(street_id=street_id, community_id=community_id, grid_id=grid_id)
    return {"now": runtime.clock(), "cases": await desk.open_cases(conn, areas, grid_ids)}


@router.get("/desk/areas", summary="Streets, communities and grids, for the board's filters")
async def board_areas(_: Desk, conn: ReadConnection) -> list[dict[str, Any]]:
    areas = await load_areas(conn)
    return [
        {
            "grid_id": a.grid.id,
            "grid_name": a.grid.name,
            "community_id": a.community.id,
            "community_name": a.community.name,
            "street_id": a.street.id,
            "street_name": a.street.name,
            "district_id": a.district.id,
            "district_name": a.district.name,
        }
        for a in sorted(
            areas.by_grid.values(), key=lambda a: (a.street.name, a.community.name, a.grid.name)
        )
    ]


@router.get(
    "/desk/households",
    summary="Find a caller's household by name, phone (resident or contact) or address",
)
async def find_households(
    _: Desk,
    conn: ReadConnection,
    q: Annotated[str, Query(min_length=1, max_length=100, description="name, phone or address")],
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> list[dict[str, Any]]:
    return await desk.search_households(conn, await load_areas(conn), q, limit)


@router.get("/desk/health", summary="Devices, edges, quarantine and open tasks, at a glance")
async def board_health(
    principal: Desk,
    runtime: RuntimeDep,
    conn: ReadConnection,
    street_id: IdQuery = None,
    community_id: IdQuery = None,
    grid_id: IdQuery = None,
) -> dict[str, Any]:
    areas = await load_areas(conn)
    grid_ids = areas.filter_grids(street_id=street_id, community_id=community_id, grid_id=grid_id)
    # welfare checks: the desk and the stations count them, an admin does not (issue #15)
    wellbeing = principal.role is not Role.ADMIN
    return await desk.system_health(conn, grid_ids, runtime.clock(), wellbeing=wellbeing)


@router.post(
    "/cases/{case_id}/reassign",
    summary="The desk hands the case to another worker (改派)",
    responses=_ACT_RESPONSES,
)
async def reassign(
    case_id: int, body: ReassignBody, principal: Desk, runtime: RuntimeDep
) -> dict[str, str]:
    await act_on_case(
        runtime,
        principal,
        case_id,
        "reassign",
        lambda c: runtime.service.reassign(
            c, case_id, body.worker_id, principal.actor, body.note.strip(), runtime.clock()
        ),
    )
    return {"status": "dispatched"}


@router.post(
    "/cases/{case_id}/notes",
    summary="Add a note to the case's timeline (备注)",
    responses=_ACT_RESPONSES,
)
async def add_note(
    case_id: int, body: NoteBody, principal: Person, runtime: RuntimeDep
) -> dict[str, str]:
    # a worker's note reads like their other acts on the timeline ("worker:3")
    worker = principal.worker_id if principal.role is Role.WORKER else None
    actor = f"worker:{worker}" if worker is not None else principal.actor
    await act_on_case(
        runtime,
        principal,
        case_id,
        "note",
        lambda c: runtime.service.add_note(c, case_id, actor, body.text, runtime.clock()),
    )
    return {"status": "noted"}
