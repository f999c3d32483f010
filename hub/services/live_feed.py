"""Reading the live feed for one stream: which rows a listener may see, and their data.

A worker's stream holds the notifications addressed to that worker and the case and task
changes of the worker's grids; the desk stream holds every case and task change (or one
grid's). A case or task row is sent with the record's state *now* (what the page must
show), read in one query per page of rows, and only if the record is in the listener's
grids now: a case moved to another grid is no longer sent to the old grid's worker.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import cases, grids, households, live_feed, tasks, worker_grids
from hub.services.case_queries import case_from_row, case_summary

PAGE = 200


@dataclass(frozen=True, slots=True)
class StreamEvent:
    id: int
    event: str  # case | task | notification
    data: dict[str, Any]


async def grids_of_worker(conn: AsyncConnection, worker_id: int) -> frozenset[int]:
    rows = await conn.execute(
        sa.select(worker_grids.c.grid_id).where(worker_grids.c.worker_id == worker_id)
    )
    return frozenset(int(grid) for (grid,) in rows)


async def events_after(
    conn: AsyncConnection,
    since: int,
    *,
    worker_id: int | None,
    grid_ids: Collection[int] | None,
    notifications: bool,
) -> tuple[list[StreamEvent], int]:
    """Up to :data:`PAGE` events after ``since`` for one listener, and the last id read.

    ``worker_id``: notifications for this worker (when ``notifications``); ``grid_ids``:
    case and task changes in these grids (None: every grid).
    """
    f = live_feed
    scope: list[sa.ColumnElement[bool]] = []
    changes = f.c.event.in_(("case", "task"))
    if grid_ids is None:
        scope.append(changes)
    elif grid_ids:
        scope.append(sa.and_(changes, f.c.grid_id.in_(sorted(grid_ids))))
    if notifications and worker_id is not None:
        scope.append(sa.and_(f.c.event == "notification", f.c.worker_id == worker_id))
    last_read = (
        await conn.execute(
            sa.select(sa.func.max(f.c.id)).where(
                f.c.id.in_(sa.select(f.c.id).where(f.c.id > since).order_by(f.c.id).limit(PAGE))
            )
        )
    ).scalar()
    if last_read is None:
        return [], since
    if not scope:
        return [], int(last_read)
    rows = (
        await conn.execute(
            sa.select(f.c.id, f.c.event, f.c.case_id, f.c.task_id, f.c.data)
            .where(f.c.id > since, f.c.id <= last_read, sa.or_(*scope))
            .order_by(f.c.id)
        )
    ).all()
    case_data = await _cases(conn, {r.case_id for r in rows if r.event == "case"})
    task_data = await _tasks(conn, {r.task_id for r in rows if r.event == "task"})
    allowed = None if grid_ids is None else frozenset(grid_ids)
    # Case and task rows are sent with the record's present state, so of several rows of
    # one record in a page only the last is worth sending (a case opened and dispatched in
    # one transaction, an hour of changes replayed after a reconnect).
    last_of = {(r.event, r.case_id, r.task_id): r.id for r in rows if r.event != "notification"}
    out: list[StreamEvent] = []
    for row in rows:
        if row.event != "notification" and last_of[(row.event, row.case_id, row.task_id)] != row.id:
            continue
        data: dict[str, Any] | None
        if row.event == "case":
            data = case_data.get(row.case_id)
        elif row.event == "task":
            data = task_data.get(row.task_id)
        else:
            data = row.data
        if data is None:
            continue
        if row.event != "notification" and allowed is not None and data["grid_id"] not in allowed:
            continue
        out.append(StreamEvent(int(row.id), str(row.event), data))
    return out, int(last_read)


async def _cases(conn: AsyncConnection, ids: set[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    query = (
        sa.select(cases, households.c.address, grids.c.name.label("grid_name"))
        .join_from(cases, households, cases.c.household_id == households.c.id)
        .join(grids, cases.c.grid_id == grids.c.id)
        .where(cases.c.id.in_(sorted(ids)))
    )
    found = {}
    for row in (await conn.execute(query)).mappings():
        summary = case_summary(case_from_row(row))
        summary["address"] = row["address"]
        summary["grid_name"] = row["grid_name"]
        found[int(row["id"])] = summary
    return found


async def _tasks(conn: AsyncConnection, ids: set[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    query = (
        sa.select(tasks, households.c.address)
        .join_from(tasks, households, tasks.c.household_id == households.c.id, isouter=True)
        .where(tasks.c.id.in_(sorted(ids)))
    )
    return {int(row["id"]): dict(row) for row in (await conn.execute(query)).mappings()}
