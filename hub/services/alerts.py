"""Tell a grid's worker about a device task: a door forced, a bin on fire, a parcel to bring.

Device alerts are not help calls: there is no escalation ladder and no acknowledgement
deadline, only a task (``hub.services.tasks``) that stays open in the task list until
someone does it. What they share with help calls is *who* hears about it, so the rules are
the case service's (``hub.services.org.available_by_tier``): the grid's primary worker(s)
on duty now by the roster, falling back to the grid's assigned workers when the grid has
no roster; when nobody is on duty, the backup worker on duty; when the roster has nobody
at all at this hour, every active worker assigned to the grid and the grid's backup, so an
alert is never silently dropped for lack of a shift.

The caller writes the message (Chinese and English); this module only finds the people and
builds one :class:`~hub.domain.notification.Notification` per worker, for the caller to
return in its :class:`~hub.domain.effects.Effects` (dispatched after commit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import communities, devices, grids, households, residents, worker_grids, workers
from hub.domain.escalation import Tier
from hub.domain.notification import Notification
from hub.services.org import Place, available_by_tier

#: The community's zone when the caller does not pass one (``HubConfig.timezone``'s default).
DEFAULT_TZ = ZoneInfo("Asia/Shanghai")

#: ``Notification.household_id`` of an alert about shared equipment in no household.
NO_HOUSEHOLD = 0


async def notify_grid_worker(
    conn: AsyncConnection,
    *,
    grid_id: int | None,
    kind: str,
    message_zh: str,
    message_en: str,
    task_id: int | None,
    household_id: int | None,
    device_id: str | None,
    now: datetime,
    tz: tzinfo = DEFAULT_TZ,
    ack_base_url: str = "",
) -> list[Notification]:
    """Notifications for whoever should act on a device task in ``grid_id`` at ``now``.

    ``grid_id`` None (a device placed nowhere) or an unknown grid: no one, ``[]``. When
    ``household_id`` is given its grid is used if ``grid_id`` is None. ``kind`` is the
    notification kind shown to the worker (e.g. ``door_alert``); ``task_id`` makes the
    acknowledge link point at the task. Non-emergency: nothing is escalated.
    """
    home = await _household(conn, household_id) if household_id is not None else None
    if grid_id is None and home is not None:
        grid_id = home.grid_id
    if grid_id is None:
        return []
    place = await _grid_place(conn, grid_id, home)
    if place is None:
        return []
    by_tier = await available_by_tier(conn, place, now, tz)
    tier, worker_ids = Tier.GRID_WORKER, by_tier[Tier.GRID_WORKER]
    if not worker_ids:
        tier, worker_ids = Tier.BACKUP_WORKER, by_tier[Tier.BACKUP_WORKER]
    if not worker_ids:
        tier, worker_ids = Tier.GRID_WORKER, await _grid_members(conn, place)
    address = place.address
    if not address and device_id is not None:
        address = await _device_place(conn, device_id)
    resource = f"tasks/{task_id}" if task_id is not None else "tasks"
    return [
        Notification(
            case_id=None,
            worker_id=worker_id,
            tier=tier.value,
            kind=kind,
            resident_name=place.resident_name,
            address=address,
            grid_name=place.grid_name,
            household_id=place.household_id,
            occurred_at=now,
            message_zh=message_zh,
            message_en=message_en,
            ack_path=f"{ack_base_url.rstrip('/')}/api/v1/{resource}/acknowledge",
            task_id=task_id,
            lives_alone=place.lives_alone,
        )
        for worker_id in worker_ids
    ]


@dataclass(frozen=True, slots=True)
class _Home:
    household_id: int
    grid_id: int
    address: str
    lives_alone: bool
    resident_name: str


async def _household(conn: AsyncConnection, household_id: int) -> _Home | None:
    first_resident = (
        sa.select(residents.c.name)
        .where(residents.c.household_id == households.c.id)
        .order_by(residents.c.id)
        .limit(1)
        .scalar_subquery()
    )
    query = sa.select(
        households.c.grid_id,
        households.c.address,
        households.c.lives_alone,
        first_resident.label("resident_name"),
    ).where(households.c.id == household_id)
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return _Home(
        household_id, int(row.grid_id), row.address, bool(row.lives_alone), row.resident_name or ""
    )


async def _grid_place(conn: AsyncConnection, grid_id: int, home: _Home | None) -> Place | None:
    """The grid as a :class:`Place` (what ``available_by_tier`` reads), with the household
    when the alert is about one in this grid."""
    query = (
        sa.select(
            grids.c.name, grids.c.backup_worker_id, grids.c.community_id, communities.c.street_id
        )
        .join_from(grids, communities, grids.c.community_id == communities.c.id)
        .where(grids.c.id == grid_id)
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    if home is None or home.grid_id != grid_id:
        home = _Home(NO_HOUSEHOLD, grid_id, "", False, "")
    return Place(
        household_id=home.household_id,
        address=home.address,
        lives_alone=home.lives_alone,
        resident_name=home.resident_name,
        grid_id=grid_id,
        grid_name=row.name,
        backup_worker_id=row.backup_worker_id,
        community_id=row.community_id,
        street_id=row.street_id,
    )


async def _grid_members(conn: AsyncConnection, place: Place) -> list[int]:
    """Every active grid worker assigned to the grid, then its backup (the last resort)."""
    query = (
        sa.select(workers.c.id)
        .join_from(worker_grids, workers, worker_grids.c.worker_id == workers.c.id)
        .where(
            worker_grids.c.grid_id == place.grid_id,
            workers.c.active.is_(True),
            workers.c.role == "grid_worker",
        )
        .order_by(workers.c.id)
    )
    found = [int(r.id) for r in await conn.execute(query)]
    if place.backup_worker_id is not None and place.backup_worker_id not in found:
        active = sa.select(workers.c.id).where(
            workers.c.id == place.backup_worker_id, workers.c.active.is_(True)
        )
        if (await conn.execute(active)).first() is not None:
            found.append(place.backup_worker_id)
    return found


async def _device_place(conn: AsyncConnection, device_id: str) -> str:
    query = sa.select(devices.c.place).where(devices.c.id == device_id)
    place: str | None = (await conn.execute(query)).scalar()
    return place or device_id
