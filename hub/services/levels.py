"""Districts, streets and communities (区 · 街道 · 社区): create, change, retire, list, with audit.

The three levels above the grids. Names are unique among siblings (a district's streets,
a street's communities); a duplicate is :class:`AlreadyExists`, a parent that does not
exist or is retired is :class:`InvalidInput` on its field. Retiring is soft
(``retired_at``): the row stays, because grids, workers, cases and the audit log refer to
it; a level with active children (streets, communities, grids) cannot be retired until
they are moved or retired, so no grid is ever left under a retired community.

Each street and community answers with its escalation contacts: the active street-centre
workers of the street, the community-station workers of the community. They are the
people :func:`hub.services.org.available_by_tier` calls at those two tiers (``workers``
rows with ``role`` and ``street_id``/``community_id``); a level without any is skipped by
the escalation, which goes straight to the next tier, so the import warns about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import communities, districts, grids, inserted_id, streets, workers
from hub.domain.access import Principal
from hub.services.audit import record_audit
from hub.services.errors import AlreadyExists, InvalidAct, NotFound
from hub.services.records import contains, invalid, page, snapshot


@dataclass(frozen=True, slots=True)
class Level:
    """One of the three levels: its table, its parent's column, its names for people."""

    kind: str  # audit target type and action prefix
    table: Table
    parent: str | None  # the parent id column, e.g. "district_id"
    parent_table: Table | None
    zh: str
    contact_role: str | None = None  # the desk role that is this level's escalation tier
    contact_column: str | None = None
    children: tuple[tuple[Table, str, str], ...] = ()  # (table, parent column, zh)


DISTRICT = Level(
    "district", districts, None, None, "区", children=((streets, "district_id", "街道"),)
)
STREET = Level(
    "street",
    streets,
    "district_id",
    districts,
    "街道",
    contact_role="street_centre",
    contact_column="street_id",
    children=((communities, "street_id", "社区"),),
)
COMMUNITY = Level(
    "community",
    communities,
    "street_id",
    streets,
    "社区",
    contact_role="community_station",
    contact_column="community_id",
    children=((grids, "community_id", "网格"),),
)


async def list_levels(
    conn: AsyncConnection,
    level: Level,
    *,
    parent_id: int | None = None,
    q: str | None = None,
    retired: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    table = level.table
    query = select(table).order_by(table.c.id)
    query = query.where(table.c.retired_at.isnot(None) if retired else table.c.retired_at.is_(None))
    if parent_id is not None and level.parent is not None:
        query = query.where(table.c[level.parent] == parent_id)
    if q:
        query = query.where(contains(table.c.name, q))
    rows, total = await page(conn, query, limit, offset)
    for row in rows:
        row["contacts"] = await contacts(conn, level, row["id"])
    return rows, total


async def get_level(conn: AsyncConnection, level: Level, level_id: int) -> dict[str, Any]:
    table = level.table
    row = (await conn.execute(select(table).where(table.c.id == level_id))).mappings().first()
    if row is None:
        raise NotFound(f"{level.kind} {level_id} not found / {level.zh} {level_id} 不存在")
    found = dict(row)
    found["contacts"] = await contacts(conn, level, level_id)
    return found


async def contacts(conn: AsyncConnection, level: Level, level_id: int) -> list[dict[str, Any]]:
    """The active desk workers escalation calls at this level (none for a district)."""
    if level.contact_role is None or level.contact_column is None:
        return []
    query = (
        select(workers.c.id.label("worker_id"), workers.c.name, workers.c.phone)
        .where(
            workers.c.role == level.contact_role,
            workers.c[level.contact_column] == level_id,
            workers.c.active.is_(True),
        )
        .order_by(workers.c.id)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def create_level(
    conn: AsyncConnection,
    level: Level,
    actor: Principal,
    values: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    await _check(conn, level, values, level_id=None)
    level_id = inserted_id(await conn.execute(insert(level.table).values(**values)))
    after = await get_level(conn, level, level_id)
    await record_audit(
        conn,
        actor=actor,
        action=f"{level.kind}.create",
        target_type=level.kind,
        target_id=level_id,
        at=now,
        after=snapshot(after),
    )
    return after


async def update_level(
    conn: AsyncConnection,
    level: Level,
    actor: Principal,
    level_id: int,
    changes: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """Rename, or move under another parent (a street to another district …)."""
    before = await get_level(conn, level, level_id)
    if before["retired_at"] is not None:
        raise InvalidAct(f"{level.kind} {level_id} is retired / {level.zh} {level_id} 已撤销")
    keys = ["name"] + ([level.parent] if level.parent else [])
    values = {k: before[k] for k in keys} | dict(changes)
    await _check(conn, level, values, level_id=level_id)
    if changes:
        table = level.table
        await conn.execute(update(table).where(table.c.id == level_id).values(**changes))
    after = await get_level(conn, level, level_id)
    await record_audit(
        conn,
        actor=actor,
        action=f"{level.kind}.update",
        target_type=level.kind,
        target_id=level_id,
        at=now,
        before=snapshot(before),
        after=snapshot(after),
    )
    return after


async def retire_level(
    conn: AsyncConnection, level: Level, actor: Principal, level_id: int, now: datetime
) -> dict[str, Any]:
    before = await get_level(conn, level, level_id)
    if before["retired_at"] is not None:
        raise InvalidAct(f"{level.kind} {level_id} is already retired / {level.zh} 已撤销")
    for child, column, zh in level.children:
        query = select(func.count()).select_from(child).where(child.c[column] == level_id)
        if "retired_at" in child.c:
            query = query.where(child.c.retired_at.is_(None))
        count = int((await conn.execute(query)).scalar_one())
        if count:
            raise InvalidAct(
                f"{level.kind} {level_id} still has {count} active {child.name}; move or "
                f"retire them first / 该{level.zh}下仍有 {count} 个{zh}，请先迁移或撤销"
            )
    table = level.table
    await conn.execute(update(table).where(table.c.id == level_id).values(retired_at=now))
    after = await get_level(conn, level, level_id)
    await record_audit(
        conn,
        actor=actor,
        action=f"{level.kind}.retire",
        target_type=level.kind,
        target_id=level_id,
        at=now,
        before=snapshot(before),
        after=snapshot(after),
    )
    return after


async def active_exists(conn: AsyncConnection, table: Table, row_id: int) -> bool:
    """Whether the level row exists and is not retired."""
    query = select(table.c.id).where(table.c.id == row_id, table.c.retired_at.is_(None))
    return (await conn.execute(query)).first() is not None


async def _check(
    conn: AsyncConnection, level: Level, values: Mapping[str, Any], level_id: int | None
) -> None:
    table = level.table
    query = select(table.c.id).where(table.c.name == values["name"])
    if level.parent is not None and level.parent_table is not None:
        parent_id = values[level.parent]
        if not await active_exists(conn, level.parent_table, parent_id):
            what = level.parent.removesuffix("_id")
            raise invalid(
                level.parent,
                f"{what} {parent_id} does not exist or is retired / "
                f"上级 {parent_id} 不存在或已撤销",
            )
        query = query.where(table.c[level.parent] == parent_id)
    if level_id is not None:
        query = query.where(table.c.id != level_id)
    other = (await conn.execute(query)).scalar()
    if other is not None:
        raise AlreadyExists(
            f"{level.kind} {other} is already named {values['name']!r} here / "
            f"已有同名{level.zh} {values['name']!r}（编号 {other}）"
        )
