"""Care KPIs (照护指标) per area and worker, as JSON for the KPI page and as CSV.

Who may read them: admins and operators, every area; a grid worker, their own grid only
(asking for no area gives them their first grid), and only their own worker row. The
hotline desk may not: the report holds per-worker response times, which are personnel
figures for managers, and the desk's own work is the live board (``/api/v1/desk``); an
operator account is the way to give a desk supervisor the figures.

The period is local days (``start``..``end`` inclusive, the hub's time zone); by default
the last seven days including today.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Response

from hub.api.deps import Principal, ReadConnection, Role, RuntimeDep, require_roles
from hub.api.errors import FORBIDDEN, INVALID, NOT_FOUND, translated
from hub.api.fields import MAX_ID
from hub.api.kpi_table import report_csv, report_json
from hub.runtime import HubRuntime
from hub.services.areas import Level
from hub.services.care_kpi import CareReport, care_report

router = APIRouter(prefix="/api/v1/kpi", tags=["kpi"])

Reader = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPERATOR, Role.WORKER))]
_RESPONSES = FORBIDDEN | NOT_FOUND | INVALID


async def _report(
    runtime: HubRuntime,
    conn: ReadConnection,
    principal: Principal,
    level: Level,
    unit_id: int | None,
    start: date | None,
    end: date | None,
) -> CareReport:
    now = runtime.clock()
    tz = runtime.service.tz
    end = end or now.astimezone(tz).date()
    start = start or end - timedelta(days=6)
    if principal.role is Role.WORKER and level is Level.ALL and principal.grid_ids:
        level, unit_id = Level.GRID, min(principal.grid_ids)
    with translated():
        return await care_report(
            conn, principal, level=level, unit_id=unit_id, start=start, end=end, tz=tz, now=now
        )


Start = Annotated[date | None, Query(description="first local day (default: 6 days ago)")]
End = Annotated[date | None, Query(description="last local day, inclusive (default: today)")]
LevelQuery = Annotated[Level, Query(description="the area's level; all: every district")]
UnitId = Annotated[
    int | None, Query(alias="id", gt=0, le=MAX_ID, description="the area's id at that level")
]


@router.get(
    "/care", summary="Care KPIs of an area, per child area and per worker", responses=_RESPONSES
)
async def care(
    principal: Reader,
    runtime: RuntimeDep,
    conn: ReadConnection,
    level: LevelQuery = Level.ALL,
    unit_id: UnitId = None,
    start: Start = None,
    end: End = None,
) -> dict[str, object]:
    report = await _report(runtime, conn, principal, level, unit_id, start, end)
    return report_json(report)


@router.get(
    "/care.csv",
    summary="The same KPI table as CSV (UTF-8 with BOM, for Excel)",
    response_class=Response,
    responses={**_RESPONSES, 200: {"content": {"text/csv": {}}}},
)
async def care_csv(
    principal: Reader,
    runtime: RuntimeDep,
    conn: ReadConnection,
    level: LevelQuery = Level.ALL,
    unit_id: UnitId = None,
    start: Start = None,
    end: End = None,
) -> Response:
    report = await _report(runtime, conn, principal, level, unit_id, start, end)
    unit = report.unit.name if report.unit.id is not None else "all"
    filename = f"care-kpi_{unit}_{report.start.isoformat()}_{report.end.isoformat()}.csv"
    ascii_name = f"care-kpi_{report.start.isoformat()}_{report.end.isoformat()}.csv"
    return Response(
        report_csv(report).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": (
                f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
            ),
            "Cache-Control": "no-store",
        },
    )
