"""The community's organisation as the services need it: places, who is available, records.

* :func:`household_place` answers "where is this household and whose grid is it";
* :func:`available_by_tier` answers "who can be called at each escalation tier right now",
  from the duty roster, so the pure escalation policy never has to touch the database;
* :func:`seed_demo_community` fills an empty database with a small demo community;
* :func:`list_quarantine` and :func:`add_quarantine` (from :mod:`hub.services.quarantine`)
  keep what ingest refused;
  :func:`list_tasks` and :func:`advance_task` are re-exported from :mod:`hub.services.tasks`.

Availability rules, in words: a grid's primary and backup tiers follow the weekly roster
and overrides for that grid; a grid with no roster at all for a role falls back to its
assigned workers (``worker_grids`` for primary, ``grids.backup_worker_id`` for backup), so a
fresh deployment without rosters still routes calls. Desk workers (community station,
street centre, hotline) have shifts without a grid; a desk worker with no shifts at all is
treated as always available, because desks are staffed around the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, tzinfo
from typing import Any

from sqlalchemy import Table, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import (
    communities,
    devices,
    districts,
    emergency_contacts,
    grids,
    households,
    inserted_id,
    residents,
    shift_overrides,
    shifts,
    streets,
    worker_grids,
    workers,
)
from hub.domain.duty import Override, Role, Shift, is_working, on_duty
from hub.domain.escalation import Tier
from hub.services.errors import NotFound
from hub.services.quarantine import add_quarantine, list_quarantine
from hub.services.tasks import advance_task, list_tasks

__all__ = [
    "Place",
    "add_quarantine",
    "advance_task",
    "available_by_tier",
    "household_place",
    "list_quarantine",
    "list_tasks",
    "seed_demo_community",
]

_DESK_ROLES = {
    Tier.COMMUNITY_STATION: "community_station",
    Tier.STREET_CENTRE: "street_centre",
    Tier.HOTLINE_DESK: "hotline_desk",
}


@dataclass(frozen=True, slots=True)
class Place:
    """A household with what routing and notifications need to know about it."""

    household_id: int
    address: str
    lives_alone: bool
    resident_name: str  # the first registered resident, or "" if none
    grid_id: int
    grid_name: str
    backup_worker_id: int | None
    community_id: int
    street_id: int


async def household_place(conn: AsyncConnection, household_id: int) -> Place:
    first_resident = (
        select(residents.c.name)
        .where(residents.c.household_id == households.c.id)
        .order_by(residents.c.id)
        .limit(1)
        .scalar_subquery()
    )
    query = (
        select(
            households.c.address,
            households.c.lives_alone,
            first_resident.label("resident_name"),
            grids.c.id.label("grid_id"),
            grids.c.name.label("grid_name"),
            grids.c.backup_worker_id,
            communities.c.id.label("community_id"),
            communities.c.street_id,
        )
        .join_from(households, grids, households.c.grid_id == grids.c.id)
        .join(communities, grids.c.community_id == communities.c.id)
        .where(households.c.id == household_id)
    )
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"household {household_id} not found")
    return Place(
        household_id=household_id,
        address=row["address"],
        lives_alone=bool(row["lives_alone"]),
        resident_name=row["resident_name"] or "",
        grid_id=row["grid_id"],
        grid_name=row["grid_name"],
        backup_worker_id=row["backup_worker_id"],
        community_id=row["community_id"],
        street_id=row["street_id"],
    )


async def available_by_tier(
    conn: AsyncConnection, place: Place, now: datetime, tz: tzinfo
) -> dict[Tier, list[int]]:
    """Active worker ids available at every tier for this household's grid at ``now``."""
    active = {
        row.id: row
        for row in await conn.execute(
            select(workers.c.id, workers.c.role, workers.c.community_id, workers.c.street_id)
            .where(workers.c.active.is_(True))
            .order_by(workers.c.id)
        )
    }
    roster = [
        Shift(r.worker_id, r.grid_id, r.weekday, r.start_local, r.end_local, r.role)
        for r in await conn.execute(
            select(shifts)
            .where(or_(shifts.c.grid_id == place.grid_id, shifts.c.grid_id.is_(None)))
            .order_by(shifts.c.id)
        )
    ]
    cover = [
        Override(r.worker_id, r.grid_id, r.starts_at, r.ends_at, r.role)
        for r in await conn.execute(
            select(shift_overrides)
            .where(shift_overrides.c.starts_at <= now, shift_overrides.c.ends_at > now)
            .order_by(shift_overrides.c.id)
        )
    ]
    assigned = [
        r.worker_id
        for r in await conn.execute(
            select(worker_grids.c.worker_id)
            .where(worker_grids.c.grid_id == place.grid_id)
            .order_by(worker_grids.c.worker_id)
        )
        if r.worker_id in active
        and active[r.worker_id].role == "grid_worker"
        and r.worker_id != place.backup_worker_id
    ]

    def grid_tier(role: Role, fallback: list[int]) -> list[int]:
        scheduled = any(s.grid_id == place.grid_id and s.role == role for s in roster) or any(
            o.grid_id == place.grid_id and o.role == role for o in cover
        )
        ids = on_duty(roster, cover, place.grid_id, role, now, tz) if scheduled else fallback
        return [w for w in ids if w in active]

    def in_scope(tier: Tier, row: Any) -> bool:
        if tier is Tier.COMMUNITY_STATION:
            return bool(row.community_id == place.community_id)
        if tier is Tier.STREET_CENTRE:
            return bool(row.street_id == place.street_id)
        return True  # the hotline desk serves everyone

    def desk_tier(tier: Tier) -> list[int]:
        found = []
        for worker_id, row in active.items():
            if row.role != _DESK_ROLES[tier] or not in_scope(tier, row):
                continue
            own = [s for s in roster if s.worker_id == worker_id and s.grid_id is None]
            if not own or is_working(own, cover, worker_id, now, tz):
                found.append(worker_id)
        return found

    backup = [place.backup_worker_id] if place.backup_worker_id is not None else []
    return {
        Tier.GRID_WORKER: grid_tier("primary", assigned),
        Tier.BACKUP_WORKER: grid_tier("backup", backup),
        **{tier: desk_tier(tier) for tier in _DESK_ROLES},
    }


# --- demo community -------------------------------------------------------------------

_MIDNIGHT = time(0, 0)
_DEMO_EDGE = "edge-demo"
# (grid index, address, lives alone, medical notes, residents, emergency contact)
_DEMO_HOUSEHOLDS: tuple[tuple[int, str, bool, str, tuple[str, ...], tuple[str, str, str]], ...] = (
    (
        0,
        "幸福里小区3号楼2单元301室",
        True,
        "高血压，长期服用降压药",
        ("张桂英",),
        ("李明", "儿子", "13900000101"),
    ),
    (
        0,
        "幸福里小区3号楼1单元102室",
        False,
        "糖尿病",
        ("李德福", "王秀兰"),
        ("李娟", "女儿", "13900000102"),
    ),
    (
        0,
        "幸福里小区5号楼1单元502室",
        True,
        "膝关节置换术后，行动不便",
        ("陈淑珍",),
        ("陈伟", "儿子", "13900000103"),
    ),
    (1, "和平新村8号楼3单元201室", True, "", ("刘建国",), ("刘芳", "女儿", "13900000104")),
    (
        1,
        "和平新村9号楼2单元601室",
        False,
        "冠心病",
        ("赵玉梅", "孙志强"),
        ("孙磊", "儿子", "13900000105"),
    ),
    (
        1,
        "和平新村12号楼1单元101室",
        True,
        "轻度认知障碍，子女每周探望",
        ("周秀英",),
        ("周华", "侄子", "13900000106"),
    ),
)
# (device id, household index, place in the home)
_DEMO_DEVICES = (
    ("cb100-77626", 0, "卧室床头"),
    ("cb100-77627", 2, "客厅"),
    ("cb100-77628", 3, "卫生间"),
)


async def seed_demo_community(conn: AsyncConnection, now: datetime) -> None:
    """Create the 示范区 demo community. Idempotent: rows are found by natural keys first.

    Two grids with a grid worker each (24/7 weekly shifts), a backup worker for both grids
    (``grids.backup_worker_id``), one community-station, street-centre and hotline worker
    (24/7 desk shifts), six households and three call buttons on edge "edge-demo".
    ``now`` is accepted for symmetry with the other services; the demo has no timed rows.
    """
    del now
    district = await _ensure(conn, districts, {"name": "示范区"})
    street = await _ensure(conn, streets, {"district_id": district, "name": "和平街道"})
    community = await _ensure(conn, communities, {"street_id": street, "name": "幸福里社区"})

    async def worker(name: str, phone: str, role: str, **scope: int) -> int:
        return await _ensure(conn, workers, {"phone": phone}, name=name, role=role, **scope)

    grid_workers = [
        await worker("王丽", "13800000001", "grid_worker", community_id=community),
        await worker("赵敏", "13800000002", "grid_worker", community_id=community),
    ]
    backup = await worker("孙强", "13800000003", "grid_worker", community_id=community)
    desks = [
        await worker("周洁", "13800000004", "community_station", community_id=community),
        await worker("吴刚", "13800000005", "street_centre", street_id=street),
        await worker("郑芳", "13800000006", "hotline_desk", street_id=street),
    ]
    grid_ids = []
    for index, name in enumerate(("第一网格", "第二网格")):
        grid = await _ensure(
            conn, grids, {"community_id": community, "name": name}, backup_worker_id=backup
        )
        grid_ids.append(grid)
        for member in (grid_workers[index], backup):
            await _ensure_link(conn, member, grid)
        await _ensure_week(conn, grid_workers[index], grid)
    for desk in desks:
        await _ensure_week(conn, desk, None)

    household_ids = []
    for grid_index, address, alone, medical, names, contact in _DEMO_HOUSEHOLDS:
        household = await _ensure(
            conn,
            households,
            {"grid_id": grid_ids[grid_index], "address": address},
            lives_alone=alone,
            medical_notes=medical,
        )
        household_ids.append(household)
        for name in names:
            await _ensure(conn, residents, {"household_id": household, "name": name})
        contact_name, relation, phone = contact
        await _ensure(
            conn,
            emergency_contacts,
            {"household_id": household, "phone": phone},
            name=contact_name,
            relation=relation,
        )
    for device_id, household_index, place in _DEMO_DEVICES:
        exists = await conn.execute(select(devices.c.id).where(devices.c.id == device_id))
        if exists.first() is None:
            await conn.execute(
                insert(devices).values(
                    id=device_id,
                    household_id=household_ids[household_index],
                    place=place,
                    edge_id=_DEMO_EDGE,
                    profile="cb-100",  # a profile's identity.name, as the registry checks
                )
            )


async def _ensure(conn: AsyncConnection, table: Table, key: dict[str, Any], **values: Any) -> int:
    """The id of the row matching ``key``, inserting it (with ``values``) if missing.

    A ``None`` in ``key`` matches NULL (SQLAlchemy renders ``== None`` as ``IS NULL``).
    """
    query = select(table.c.id).where(*(table.c[name] == value for name, value in key.items()))
    row = (await conn.execute(query)).first()
    if row is not None:
        return int(row.id)
    result = await conn.execute(insert(table).values(**key, **values))
    return inserted_id(result)


async def _ensure_link(conn: AsyncConnection, worker_id: int, grid_id: int) -> None:
    query = select(worker_grids.c.grid_id).where(
        worker_grids.c.worker_id == worker_id, worker_grids.c.grid_id == grid_id
    )
    if (await conn.execute(query)).first() is None:
        await conn.execute(insert(worker_grids).values(worker_id=worker_id, grid_id=grid_id))


async def _ensure_week(conn: AsyncConnection, worker_id: int, grid_id: int | None) -> None:
    """Seven 24-hour primary shifts (start == end means a whole day)."""
    for weekday in range(7):
        key = {"worker_id": worker_id, "grid_id": grid_id, "weekday": weekday}
        await _ensure(conn, shifts, key, start_local=_MIDNIGHT, end_local=_MIDNIGHT)
