"""Non-urgent tasks: service requests (便民服务) and device maintenance.

Tasks never touch the help-call path: they have their own small lifecycle
(open → acknowledged → done, or straight to done) and no escalation, because a meal
delivery that waits an hour is an inconvenience, not an emergency. The case service files
them from button events; the API lists and advances them.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import households, inserted_id, tasks
from hub.domain.notification import SERVICE_CATEGORIES
from hub.services.errors import Conflict, InvalidAct, NotFound

#: Category used when a button sends one the hub does not know: the request is kept.
OTHER_SERVICE = 11
_STEPS = {"acknowledged": ("open",), "done": ("open", "acknowledged")}


async def file_service_request(
    conn: AsyncConnection,
    *,
    household_id: int,
    grid_id: int,
    device_id: str | None,
    raw_category: object,
    assigned_worker_id: int | None,
    now: datetime,
) -> tuple[int, int, bool]:
    """File a service request: (task id, category actually used, joined an open task).

    A repeat press (the household already has an open or acknowledged request of that
    category) joins that task and counts on it (``press_count``) instead of filing another
    one: 300 presses of one key once made 300 tasks and 300 notifications.
    """
    category = raw_category if isinstance(raw_category, int) else None
    note = ""
    if category not in SERVICE_CATEGORIES or isinstance(raw_category, bool):
        category, note = OTHER_SERVICE, f" (unrecognised category {raw_category!r})"
    open_one = (
        select(tasks.c.id)
        .where(
            tasks.c.kind == "service_request",
            tasks.c.household_id == household_id,
            tasks.c.category == category,
            tasks.c.state.in_(("open", "acknowledged")),
        )
        .order_by(tasks.c.id.desc())
        .limit(1)
    )
    existing = (await conn.execute(open_one)).scalar()
    if existing is not None:
        await conn.execute(
            update(tasks).where(tasks.c.id == existing).values(press_count=tasks.c.press_count + 1)
        )
        return int(existing), category, True
    label_zh, label_en = SERVICE_CATEGORIES[category]
    result = await conn.execute(
        insert(tasks).values(
            kind="service_request",
            category=category,
            household_id=household_id,
            grid_id=grid_id,
            device_id=device_id,
            assigned_worker_id=assigned_worker_id,
            state="open",
            detail=f"{label_zh} / {label_en}{note}",
            created_at=now,
        )
    )
    return inserted_id(result), category, False


async def file_maintenance(
    conn: AsyncConnection,
    *,
    device_id: str,
    household_id: int | None,
    grid_id: int | None,
    battery_pct: int | None,
    now: datetime,
) -> int | None:
    """One open maintenance task per device, however often its battery complains.

    Returns the new task's id, or None when the device already has one open.
    """
    query = select(tasks.c.id).where(
        tasks.c.device_id == device_id, tasks.c.kind == "maintenance", tasks.c.state != "done"
    )
    if (await conn.execute(query)).first() is not None:
        return None
    level = f"{battery_pct}%" if battery_pct is not None else "?"
    result = await conn.execute(
        insert(tasks).values(
            kind="maintenance",
            household_id=household_id,
            grid_id=grid_id,
            device_id=device_id,
            state="open",
            detail=f"一键通电量低（{level}），请更换电池 / low battery ({level}): replace it",
            created_at=now,
        )
    )
    return inserted_id(result)


#: Task kinds filed from device events (issue #3); each has the same simple lifecycle.
DEVICE_TASK_KINDS = frozenset(
    {"maintenance", "collection", "delivery", "door_alert", "bin_alert", "leak_check", "outage"}
    | {"welfare_check", "check_in_call"}  # the wellbeing watch (issue #15)
)
#: Tasks only the resident's grid worker, the community station and the desk may see.
WELLBEING_TASK_KINDS = frozenset({"welfare_check", "check_in_call"})


async def file_device_task(
    conn: AsyncConnection,
    *,
    kind: str,
    device_id: str | None,
    household_id: int | None,
    grid_id: int | None,
    detail: str,
    now: datetime,
    assigned_worker_id: int | None = None,
) -> int | None:
    """File a task about a device, at most one open per (kind, device).

    Returns the new task's id, or None when the device already has an open task of that
    kind (a bin reported full every five seconds is one collection, not a thousand).
    ``detail`` is shown to the worker: Chinese first, then English.
    """
    if kind not in DEVICE_TASK_KINDS:
        raise InvalidAct(f"task kind {kind!r} is not one of {sorted(DEVICE_TASK_KINDS)}")
    if device_id is not None:
        query = select(tasks.c.id).where(
            tasks.c.device_id == device_id, tasks.c.kind == kind, tasks.c.state != "done"
        )
        if (await conn.execute(query)).first() is not None:
            return None
    result = await conn.execute(
        insert(tasks).values(
            kind=kind,
            household_id=household_id,
            grid_id=grid_id,
            device_id=device_id,
            assigned_worker_id=assigned_worker_id,
            state="open",
            detail=detail,
            created_at=now,
        )
    )
    return inserted_id(result)


async def list_tasks(
    conn: AsyncConnection,
    *,
    state: str | None = None,
    kind: str | None = None,
    grid_id: int | None = None,
    household_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
    grid_ids: Collection[int] | None = None,
    exclude_kinds: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Tasks, newest first, with the household's address; ``grid_ids`` narrows to grids,
    ``exclude_kinds`` hides kinds the caller may not see."""
    query = select(tasks, households.c.address).join_from(
        tasks, households, tasks.c.household_id == households.c.id, isouter=True
    )
    for column, value in (
        (tasks.c.state, state),
        (tasks.c.kind, kind),
        (tasks.c.grid_id, grid_id),
        (tasks.c.household_id, household_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if grid_ids is not None:
        query = query.where(tasks.c.grid_id.in_(sorted(grid_ids)))
    if exclude_kinds:
        query = query.where(tasks.c.kind.not_in(sorted(exclude_kinds)))
    query = query.order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(limit).offset(offset)
    return [dict(row) for row in (await conn.execute(query)).mappings()]


async def advance_task(
    conn: AsyncConnection, task_id: int, worker_id: int, to_state: str, now: datetime
) -> None:
    """Move a task along open → acknowledged → done (a task may also go straight to done)."""
    if to_state not in _STEPS:
        raise InvalidAct(f"task state {to_state!r} is not one of acknowledged, done")
    row = (await conn.execute(select(tasks.c.state).where(tasks.c.id == task_id))).first()
    if row is None:
        raise NotFound(f"task {task_id} not found")
    if row.state not in _STEPS[to_state]:
        raise InvalidAct(f"task {task_id} is {row.state}; cannot mark it {to_state}")
    values: dict[str, Any] = {"state": to_state}
    if row.state == "open":
        values |= {"acknowledged_by": worker_id, "acknowledged_at": now}
    if to_state == "done":
        values["done_at"] = now
    result = await conn.execute(
        update(tasks).where(tasks.c.id == task_id, tasks.c.state == row.state).values(**values)
    )
    if result.rowcount != 1:
        raise Conflict(f"task {task_id} changed meanwhile; reload and retry")
