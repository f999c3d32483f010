"""The care KPI report: reads cases, their audit trail and notifications for a period and
an area, and hands them to :mod:`hub.domain.care_kpi`, where every figure is defined.

A report is for one unit (all, a district, street, community or grid) and a period of
local days (the community's time zone; a call belongs to the day the hub opened it). It
holds the unit's own figures, one row per unit one level down (a grid: none, its workers
are the breakdown), one row per worker who was notified of or answered a call in the
unit, and the calls themselves (newest first, capped) so a reader can check a figure.

A grid worker gets only their own grids, and among the worker rows only their own:
colleagues' response times are for managers (operators and admins) to read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import case_audit, case_notifications, cases, tasks, workers
from hub.domain.access import Principal, Role
from hub.domain.care_kpi import (
    CallFacts,
    CareFigures,
    HistoryEntry,
    Notified,
    call_facts,
    calls_of_worker,
    care_figures,
)
from hub.services.areas import CHILD_LEVEL, Level, Unit, load_areas
from hub.services.errors import Forbidden
from hub.services.records import invalid

#: The longest period one report covers.
MAX_PERIOD_DAYS = 366
#: Calls listed in a report (the figures always use all of them).
CALLS_LISTED = 200


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the report: a unit or a worker, and its figures."""

    level: str  # a Level value, or "worker"
    id: int | None
    name: str
    figures: CareFigures


@dataclass(frozen=True, slots=True)
class ListedCall:
    facts: CallFacts
    kind: str
    grid_name: str
    answered_by_name: str | None


@dataclass(frozen=True, slots=True)
class CareReport:
    unit: Unit
    path: list[Unit]  # the units above it, from "all" down (breadcrumbs)
    child_level: str  # "district" … "grid", or "worker" for a grid
    start: date
    end: date  # inclusive
    starts_at: datetime
    ends_at: datetime  # exclusive, UTC
    now: datetime
    total: Row
    children: list[Row]
    workers: list[Row]
    calls: list[ListedCall]


def period_bounds(start: date, end: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """[start 00:00, end + 1 day 00:00) in local time, as aware datetimes."""
    if end < start:
        raise invalid("end", "the period ends before it starts / 结束日期早于开始日期")
    if (end - start).days + 1 > MAX_PERIOD_DAYS:
        raise invalid("end", f"at most {MAX_PERIOD_DAYS} days / 最长 {MAX_PERIOD_DAYS} 天")
    return (
        datetime.combine(start, time(0), tz),
        datetime.combine(end + timedelta(days=1), time(0), tz),
    )


async def care_report(
    conn: AsyncConnection,
    viewer: Principal,
    *,
    level: Level,
    unit_id: int | None,
    start: date,
    end: date,
    tz: tzinfo,
    now: datetime,
) -> CareReport:
    starts_at, ends_at = period_bounds(start, end, tz)
    areas = await load_areas(conn)
    if level is Level.ALL:
        unit_id = None
    elif unit_id is None:
        raise invalid("id", f"a {level.value} id is required / 须指定{level.value}编号")
    unit = areas.find(level, unit_id)
    grid_ids = set(areas.grids_in(level, unit_id))
    if not viewer.sees_all_grids() and (level is not Level.GRID or unit_id not in viewer.grid_ids):
        raise Forbidden("a grid worker sees the KPIs of their own grid / 只能查看本网格的指标")
    calls, kinds = await _calls(conn, grid_ids, starts_at, ends_at)
    categories = await _service_requests(conn, grid_ids, starts_at, ends_at)
    child = CHILD_LEVEL[level]

    def figures_of(grids: set[int]) -> CareFigures:
        return care_figures(
            [c for c in calls if c.grid_id in grids],
            [cat for g, cat in categories if g in grids],
            now,
        )

    total = Row(level.value, unit.id, unit.name, figures_of(grid_ids))
    children = [
        Row(u.level.value, u.id, u.name, figures_of(set(areas.grids_in(u.level, u.id))))
        for u in areas.children(level, unit_id, grid_ids)
    ]
    names = await _worker_names(conn, calls)
    worker_ids = sorted(names, key=lambda w: (names[w], w))
    if viewer.role is Role.WORKER:
        worker_ids = [w for w in worker_ids if w == viewer.worker_id]
    worker_rows = [
        Row("worker", w, names[w], care_figures(calls_of_worker(calls, w), [], now, worker_id=w))
        for w in worker_ids
    ]
    listed = sorted(calls, key=lambda c: (c.opened_at, c.case_id), reverse=True)[:CALLS_LISTED]
    levels = [Level.ALL, Level.DISTRICT, Level.STREET, Level.COMMUNITY, Level.GRID]
    above = levels[: levels.index(level)]
    any_grid = min(grid_ids) if grid_ids else None
    path = [areas.by_grid[any_grid].unit(lv) for lv in above] if any_grid is not None else []
    return CareReport(
        unit=unit,
        path=path,
        child_level=child.value if child is not None else "worker",
        start=start,
        end=end,
        starts_at=starts_at,
        ends_at=ends_at,
        now=now,
        total=total,
        children=children,
        workers=worker_rows,
        calls=[
            ListedCall(
                facts=c,
                kind=kinds[c.case_id],
                grid_name=areas.by_grid[c.grid_id].grid.name,
                answered_by_name=names.get(c.answered_by) if c.answered_by else None,
            )
            for c in listed
        ],
    )


async def _calls(
    conn: AsyncConnection, grid_ids: set[int], starts_at: datetime, ends_at: datetime
) -> tuple[list[CallFacts], dict[int, str]]:
    """The facts of every call opened in the period in these grids, and each call's kind."""
    in_period = select(cases.c.id).where(
        cases.c.opened_at >= starts_at,
        cases.c.opened_at < ends_at,
        cases.c.grid_id.in_(sorted(grid_ids)),
    )
    rows = (
        await conn.execute(
            select(
                cases.c.id,
                cases.c.grid_id,
                cases.c.kind,
                cases.c.opened_at,
                cases.c.outcome,
                cases.c.cancel_requested,
            ).where(cases.c.id.in_(in_period))
        )
    ).all()
    history: dict[int, list[HistoryEntry]] = defaultdict(list)
    for case_id, at, actor, action in await conn.execute(
        select(case_audit.c.case_id, case_audit.c.at, case_audit.c.actor, case_audit.c.action)
        .where(case_audit.c.case_id.in_(in_period))
        .where(case_audit.c.action.in_(("acknowledge", "arrive")))
    ):
        history[case_id].append(HistoryEntry(at, actor, action))
    notified: dict[int, list[Notified]] = defaultdict(list)
    for case_id, worker_id, tier, at in await conn.execute(
        select(
            case_notifications.c.case_id,
            case_notifications.c.worker_id,
            case_notifications.c.tier,
            case_notifications.c.notified_at,
        ).where(case_notifications.c.case_id.in_(in_period))
    ):
        notified[case_id].append(Notified(worker_id, tier, at))
    facts = [
        call_facts(
            case_id=row.id,
            grid_id=row.grid_id,
            opened_at=row.opened_at,
            outcome=row.outcome,
            cancel_requested=bool(row.cancel_requested),
            history=history[row.id],
            notified=notified[row.id],
        )
        for row in rows
    ]
    return facts, {row.id: row.kind for row in rows}


async def _service_requests(
    conn: AsyncConnection, grid_ids: set[int], starts_at: datetime, ends_at: datetime
) -> list[tuple[int, int]]:
    query = select(tasks.c.grid_id, tasks.c.category).where(
        tasks.c.kind == "service_request",
        tasks.c.created_at >= starts_at,
        tasks.c.created_at < ends_at,
        tasks.c.grid_id.in_(sorted(grid_ids)),
    )
    return [(g, c if c is not None else 11) for g, c in await conn.execute(query)]


async def _worker_names(conn: AsyncConnection, calls: list[CallFacts]) -> dict[int, str]:
    ids = {w for c in calls for w in c.notified} | {
        c.answered_by for c in calls if c.answered_by is not None
    }
    if not ids:
        return {}
    query = select(workers.c.id, workers.c.name).where(workers.c.id.in_(sorted(ids)))
    return {row.id: row.name for row in await conn.execute(query)}
