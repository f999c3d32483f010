"""Grids and workers (with their grid assignments): create, change, list, with audit.

Every change runs in the caller's transaction and writes its audit row there
(:func:`hub.services.audit.record_audit`), so a change and its record commit together.
Problems with the values (a grid of an unknown community, an unknown backup worker) raise
:class:`InvalidInput` naming the field; duplicates (a phone number, a grid name in a
community) raise :class:`AlreadyExists`.

Consistency kept here, because the help-call routing relies on it:

* only grid workers are assigned to grids; a grid's backup worker is assigned to it
  (setting the backup assigns them), so the backup sees the households they may be sent to;
* a worker keeps the role and grids their duty shifts need (:mod:`hub.services.rosters`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import communities, grids, inserted_id, shifts, streets, worker_grids, workers
from hub.domain.access import Principal
from hub.services.audit import record_audit
from hub.services.errors import AlreadyExists, FieldProblem, InvalidInput, NotFound
from hub.services.levels import active_exists
from hub.services.records import contains, page, snapshot

WorkerRole = Literal["grid_worker", "community_station", "street_centre", "hotline_desk"]
DESK_ROLES = frozenset({"community_station", "street_centre", "hotline_desk"})


# --- grids ----------------------------------------------------------------------------


async def list_grids(
    conn: AsyncConnection,
    *,
    community_id: int | None = None,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    query = select(grids).order_by(grids.c.id)
    if community_id is not None:
        query = query.where(grids.c.community_id == community_id)
    if q:
        query = query.where(contains(grids.c.name, q))
    rows, total = await page(conn, query, limit, offset)
    links = await assignments(conn, grid_ids=[r["id"] for r in rows])
    for row in rows:
        row["worker_ids"] = sorted(w for w, g in links if g == row["id"])
    return rows, total


async def get_grid(conn: AsyncConnection, grid_id: int) -> dict[str, Any]:
    row = (await conn.execute(select(grids).where(grids.c.id == grid_id))).mappings().first()
    if row is None:
        raise NotFound(f"grid {grid_id} not found / 网格 {grid_id} 不存在")
    grid = dict(row)
    grid["worker_ids"] = sorted(w for w, _ in await assignments(conn, grid_ids=[grid_id]))
    return grid


async def create_grid(
    conn: AsyncConnection,
    actor: Principal,
    *,
    community_id: int,
    name: str,
    backup_worker_id: int | None,
    now: datetime,
) -> dict[str, Any]:
    values = {"community_id": community_id, "name": name, "backup_worker_id": backup_worker_id}
    await _check_grid(conn, values, grid_id=None)
    grid_id = inserted_id(await conn.execute(insert(grids).values(**values)))
    if backup_worker_id is not None:
        await _link(conn, backup_worker_id, grid_id)
    after = await get_grid(conn, grid_id)
    await record_audit(
        conn,
        actor=actor,
        action="grid.create",
        target_type="grid",
        target_id=grid_id,
        at=now,
        after=snapshot(after),
    )
    return after


async def update_grid(
    conn: AsyncConnection,
    actor: Principal,
    grid_id: int,
    changes: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    before = await get_grid(conn, grid_id)
    values = {k: before[k] for k in ("community_id", "name", "backup_worker_id")} | dict(changes)
    await _check_grid(conn, values, grid_id=grid_id)
    if changes:
        await conn.execute(update(grids).where(grids.c.id == grid_id).values(**changes))
    if values["backup_worker_id"] is not None:
        await _link(conn, values["backup_worker_id"], grid_id)
    after = await get_grid(conn, grid_id)
    await record_audit(
        conn,
        actor=actor,
        action="grid.update",
        target_type="grid",
        target_id=grid_id,
        at=now,
        before=snapshot(before),
        after=snapshot(after),
    )
    return after


async def _check_grid(
    conn: AsyncConnection, values: Mapping[str, Any], grid_id: int | None
) -> None:
    problems: list[FieldProblem] = []
    community_id = values["community_id"]
    if not await active_exists(conn, communities, community_id):
        problems.append(
            FieldProblem(
                "community_id",
                f"community {community_id} does not exist or is retired / "
                f"社区 {community_id} 不存在或已撤销",
            )
        )
    backup = values["backup_worker_id"]
    if backup is not None:
        problem = await _grid_worker_problem(conn, backup)
        if problem is not None:
            problems.append(FieldProblem("backup_worker_id", problem))
    if problems:
        raise InvalidInput(problems)
    query = select(grids.c.id).where(
        grids.c.community_id == community_id, grids.c.name == values["name"]
    )
    if grid_id is not None:
        query = query.where(grids.c.id != grid_id)
    if (await conn.execute(query)).first() is not None:
        raise AlreadyExists(
            f"community {community_id} already has a grid named {values['name']!r} / "
            f"社区 {community_id} 已有名为 {values['name']!r} 的网格"
        )


async def _grid_worker_problem(conn: AsyncConnection, worker_id: int) -> str | None:
    row = (
        await conn.execute(
            select(workers.c.role, workers.c.active).where(workers.c.id == worker_id)
        )
    ).first()
    if row is None:
        return f"worker {worker_id} does not exist / 工作人员 {worker_id} 不存在"
    if row.role != "grid_worker":
        return (
            f"worker {worker_id} is a {row.role}, not a grid worker / "
            f"工作人员 {worker_id} 不是网格员"
        )
    if not row.active:
        return f"worker {worker_id} is inactive / 工作人员 {worker_id} 已停用"
    return None


# --- workers --------------------------------------------------------------------------


async def list_workers(
    conn: AsyncConnection,
    *,
    role: str | None = None,
    grid_id: int | None = None,
    q: str | None = None,
    active: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Workers ordered by id; ``q`` searches name and phone."""
    query = select(workers).order_by(workers.c.id)
    if role is not None:
        query = query.where(workers.c.role == role)
    if active is not None:
        query = query.where(workers.c.active.is_(active))
    if q:
        query = query.where(or_(contains(workers.c.name, q), contains(workers.c.phone, q)))
    if grid_id is not None:
        query = query.where(
            workers.c.id.in_(
                select(worker_grids.c.worker_id).where(worker_grids.c.grid_id == grid_id)
            )
        )
    rows, total = await page(conn, query, limit, offset)
    links = await assignments(conn, worker_ids=[r["id"] for r in rows])
    for row in rows:
        row["grid_ids"] = sorted(g for w, g in links if w == row["id"])
    return rows, total


async def get_worker(conn: AsyncConnection, worker_id: int) -> dict[str, Any]:
    row = (await conn.execute(select(workers).where(workers.c.id == worker_id))).mappings().first()
    if row is None:
        raise NotFound(f"worker {worker_id} not found / 工作人员 {worker_id} 不存在")
    worker = dict(row)
    worker["grid_ids"] = sorted(g for _, g in await assignments(conn, worker_ids=[worker_id]))
    return worker


async def create_worker(
    conn: AsyncConnection,
    actor: Principal,
    *,
    name: str,
    phone: str,
    role: WorkerRole,
    community_id: int | None = None,
    street_id: int | None = None,
    grid_ids: Sequence[int] = (),
    active: bool = True,
    now: datetime,
) -> dict[str, Any]:
    values = {
        "name": name,
        "phone": phone,
        "role": role,
        "community_id": community_id,
        "street_id": street_id,
        "active": active,
    }
    await _check_worker(conn, values, set(grid_ids), worker_id=None)
    worker_id = inserted_id(await conn.execute(insert(workers).values(**values)))
    for grid_id in sorted(set(grid_ids)):
        await _link(conn, worker_id, grid_id)
    after = await get_worker(conn, worker_id)
    await record_audit(
        conn,
        actor=actor,
        action="worker.create",
        target_type="worker",
        target_id=worker_id,
        at=now,
        after=snapshot(after),
    )
    return after


async def update_worker(
    conn: AsyncConnection,
    actor: Principal,
    worker_id: int,
    changes: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """Change fields; ``grid_ids`` in ``changes`` replaces the worker's grid assignments."""
    before = await get_worker(conn, worker_id)
    fields = {k: v for k, v in changes.items() if k != "grid_ids"}
    values = {k: before[k] for k in ("name", "phone", "role", "community_id", "street_id")}
    values |= {"active": before["active"]} | fields
    wanted = set(changes.get("grid_ids", before["grid_ids"]))
    await _check_worker(conn, values, wanted, worker_id=worker_id)
    if fields:
        await conn.execute(update(workers).where(workers.c.id == worker_id).values(**fields))
    current = set(before["grid_ids"])
    if wanted != current:
        await conn.execute(
            delete(worker_grids).where(
                worker_grids.c.worker_id == worker_id,
                worker_grids.c.grid_id.in_(sorted(current - wanted)),
            )
        )
        for grid_id in sorted(wanted - current):
            await _link(conn, worker_id, grid_id)
    after = await get_worker(conn, worker_id)
    await record_audit(
        conn,
        actor=actor,
        action="worker.update",
        target_type="worker",
        target_id=worker_id,
        at=now,
        before=snapshot(before),
        after=snapshot(after),
    )
    return after


async def _check_worker(
    conn: AsyncConnection, values: Mapping[str, Any], grid_ids: set[int], worker_id: int | None
) -> None:
    problems: list[FieldProblem] = []
    role = values["role"]
    for column, table, zh in (
        ("community_id", communities, "社区"),
        ("street_id", streets, "街道"),
    ):
        ref = values[column]
        if ref is not None and not await record_exists(conn, table.c.id, ref):
            what = column.removesuffix("_id")
            problems.append(
                FieldProblem(column, f"{what} {ref} does not exist / {zh} {ref} 不存在")
            )
    if role == "community_station" and values["community_id"] is None:
        problems.append(
            FieldProblem(
                "community_id",
                "a community station worker needs a community_id / 社区服务站人员须填写所属社区",
            )
        )
    if role == "street_centre" and values["street_id"] is None:
        problems.append(
            FieldProblem(
                "street_id", "a street centre worker needs a street_id / 街道中心人员须填写所属街道"
            )
        )
    if grid_ids and role != "grid_worker":
        problems.append(
            FieldProblem(
                "grid_ids", "only grid workers are assigned to grids / 只有网格员可分配网格"
            )
        )
    known = {
        row.id for row in await conn.execute(select(grids.c.id).where(grids.c.id.in_(grid_ids)))
    }
    problems += [
        FieldProblem("grid_ids", f"grid {g} does not exist / 网格 {g} 不存在")
        for g in sorted(grid_ids - known)
    ]
    if worker_id is not None:
        problems += await _kept_duties(conn, worker_id, role, grid_ids)
    if problems:
        raise InvalidInput(problems)
    query = select(workers.c.id).where(workers.c.phone == values["phone"])
    if worker_id is not None:
        query = query.where(workers.c.id != worker_id)
    other = (await conn.execute(query)).scalar()
    if other is not None:
        raise AlreadyExists(
            f"phone {values['phone']} is already used by worker {other} / "
            f"电话 {values['phone']} 已被工作人员 {other} 使用"
        )


async def _kept_duties(
    conn: AsyncConnection, worker_id: int, role: str, grid_ids: set[int]
) -> list[FieldProblem]:
    """A worker's shifts and backup duties must still fit their role and grids."""
    problems = []
    rows = await conn.execute(
        select(shifts.c.id, shifts.c.grid_id).where(shifts.c.worker_id == worker_id)
    )
    for row in rows:
        if row.grid_id is None and role not in DESK_ROLES:
            problems.append(
                FieldProblem(
                    "role",
                    f"worker {worker_id} has desk shift {row.id}; delete it first / "
                    f"该人员有坐席班次 {row.id}，请先删除",
                )
            )
        elif row.grid_id is not None and row.grid_id not in grid_ids:
            problems.append(
                FieldProblem(
                    "grid_ids",
                    f"worker {worker_id} has shift {row.id} in grid {row.grid_id}; delete it "
                    f"first / 该人员在网格 {row.grid_id} 有班次 {row.id}，请先删除",
                )
            )
    backups = await conn.execute(select(grids.c.id).where(grids.c.backup_worker_id == worker_id))
    problems += [
        FieldProblem(
            "grid_ids",
            f"worker {worker_id} is the backup of grid {row.id}; change the grid first / "
            f"该人员是网格 {row.id} 的备班人员，请先修改网格",
        )
        for row in backups
        if row.id not in grid_ids
    ]
    return problems


# --- shared with the rosters ---------------------------------------------------------


async def record_exists(conn: AsyncConnection, column: Any, value: Any) -> bool:
    """Whether a row with ``column == value`` exists (e.g. ``grids.c.id == 3``)."""
    return (await conn.execute(select(column).where(column == value))).first() is not None


async def assignments(
    conn: AsyncConnection,
    *,
    worker_ids: Iterable[int] | None = None,
    grid_ids: Iterable[int] | None = None,
) -> list[tuple[int, int]]:
    """(worker id, grid id) assignments, narrowed to the given workers and/or grids."""
    query = select(worker_grids.c.worker_id, worker_grids.c.grid_id)
    if worker_ids is not None:
        query = query.where(worker_grids.c.worker_id.in_(list(worker_ids)))
    if grid_ids is not None:
        query = query.where(worker_grids.c.grid_id.in_(list(grid_ids)))
    return [(row.worker_id, row.grid_id) for row in await conn.execute(query)]


async def _link(conn: AsyncConnection, worker_id: int, grid_id: int) -> None:
    if not await assignments(conn, worker_ids=[worker_id], grid_ids=[grid_id]):
        await conn.execute(insert(worker_grids).values(worker_id=worker_id, grid_id=grid_id))
