"""Device supervision: a device gone offline becomes a maintenance task for its grid worker,
and many gone at once become ONE suspected power-cut task.

Why the grouping: when the power of a building fails, thirty meters, doors and sensors go
offline within a minute. Thirty maintenance tasks would bury the one thing the grid
worker needs to hear ("3号楼 has no power"), and would all be wrong. So an offline device
is first held as ``pending`` (table ``offline_devices``) for ``outage_window_s``; if
``outage_min_devices`` devices of one group go offline within that window, they become one
``outage`` task (and the grid worker is notified); a device still pending alone after the
window gets its own maintenance task. A device that comes back while pending was a blip
and gets nothing.

Groups are the edge the devices are on and, when it can be read from the household
address or the device's place, the building ("幸福里小区3号楼…" → "幸福里小区3号楼").
Everything is held in the database, so a hub restarted in the middle of a window carries
on where it was: ``on_events`` records and groups, ``on_tick`` groups again and files the
maintenance tasks that are due. While an outage's task is open, further devices of its
group join it; when the worker marks it done, devices still offline start over as pending
(power is back, so what is still dark needs a look of its own).

``device.online`` never closes a task (the worker does): it is noted on the task.
``low_battery`` of CB-100 call buttons is the case service's; other profiles' is here.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from contract import Event
from hub.db.schema import devices, households, inserted_id, offline_devices, outages, tasks
from hub.domain.effects import Effects
from hub.handlers.router import DeviceRow
from hub.services.alerts import notify_grid_worker
from hub.services.tasks import file_device_task

OFFLINE, ONLINE, LOW_BATTERY = "device.offline", "device.online", "low_battery"
#: Profiles whose low battery the case service already turns into a maintenance task.
CASE_SERVICE_PROFILES = frozenset({"cb-100"})
DEFAULT_TZ = ZoneInfo("Asia/Shanghai")

#: The building part of an address or place: everything up to "3号楼", "12栋", "A座", "5幢".
_BUILDING = re.compile(r"^(.*?(?:[0-9A-Za-z]+|[一二三四五六七八九十百]+)\s*(?:号楼|栋|幢|座))")


class SupervisionSettings(BaseModel):
    """When offline devices count as one suspected power cut (``HubConfig.supervision``)."""

    model_config = {"extra": "forbid"}

    outage_min_devices: int = Field(
        default=5, ge=2, le=100_000, description="devices of one edge or building"
    )
    outage_window_s: float = Field(
        default=120.0, gt=0, le=3600, description="going offline within this many seconds"
    )


def building_of(text: str) -> str | None:
    """ "幸福里小区3号楼2单元301室" → "幸福里小区3号楼"; None when no building is named."""
    found = _BUILDING.match(text.strip())
    return found.group(1).strip() if found else None


@dataclass(frozen=True, slots=True)
class _Area:
    grid_id: int | None
    household_id: int | None
    where: str  # household address and place, for task texts
    building: str | None


async def _areas(conn: AsyncConnection, device_ids: Sequence[str]) -> dict[str, _Area]:
    query = (
        sa.select(
            devices.c.id,
            devices.c.household_id,
            devices.c.place,
            households.c.address,
            sa.func.coalesce(households.c.grid_id, devices.c.grid_id).label("grid_id"),
        )
        .select_from(devices.outerjoin(households, households.c.id == devices.c.household_id))
        .where(devices.c.id.in_(sorted(set(device_ids))))
    )
    found: dict[str, _Area] = {}
    for row in await conn.execute(query):
        address, place = row.address or "", row.place or ""
        where = " ".join(p for p in (address, place) if p)
        found[row.id] = _Area(row.grid_id, row.household_id, where, building_of(address or place))
    return found


def _group_keys(row: sa.RowMapping) -> list[str]:
    """A pending device's groups, the most telling first (a building before an edge)."""
    keys = []
    if row["building"]:
        keys.append(f"building:{row['grid_id'] or 0}:{row['building']}")
    if row["edge_id"]:
        keys.append(f"edge:{row['edge_id']}")
    return keys


def _labels(group_key: str) -> tuple[str, str]:
    kind, _, rest = group_key.partition(":")
    if kind == "building":
        building = rest.partition(":")[2]
        return building, building
    return f"网关 {rest} 下", f"edge {rest}"


class SupervisionHandler:
    kinds: frozenset[str] | None = frozenset({OFFLINE, ONLINE, LOW_BATTERY})
    ignored_kinds: frozenset[str] = frozenset()

    def __init__(
        self,
        settings: SupervisionSettings | None = None,
        *,
        tz: tzinfo = DEFAULT_TZ,
        ack_base_url: str = "",
    ) -> None:
        self.settings = settings or SupervisionSettings()
        self.window = timedelta(seconds=self.settings.outage_window_s)
        self.tz = tz
        self.ack_base_url = ack_base_url

    # -- events -----------------------------------------------------------------------------
    async def on_events(
        self, conn: AsyncConnection, events: Sequence[tuple[DeviceRow, Event]], now: datetime
    ) -> Effects:
        areas = await _areas(conn, [device.id for device, _ in events])
        offline_seen = False
        for device, event in events:
            area = areas.get(device.id, _Area(device.grid_id, device.household_id, "", None))
            if event.kind == OFFLINE:
                offline_seen |= await self._offline(conn, device, area, event, now)
            elif event.kind == ONLINE:
                await self._online(conn, device, event)
            elif event.kind == LOW_BATTERY and device.profile not in CASE_SERVICE_PROFILES:
                await self._low_battery(conn, device, area, event, now)
        return await self._group(conn, now) if offline_seen else Effects()

    async def _offline(
        self, conn: AsyncConnection, device: DeviceRow, area: _Area, event: Event, now: datetime
    ) -> bool:
        held = sa.select(offline_devices.c.device_id).where(
            offline_devices.c.device_id == device.id
        )
        if (await conn.execute(held)).first() is not None:
            return False  # already known to be offline
        reason = event.data.get("reason")
        await conn.execute(
            sa.insert(offline_devices).values(
                device_id=device.id,
                offline_at=event.occurred_at,
                noticed_at=now,
                edge_id=device.edge_id,
                building=area.building,
                grid_id=area.grid_id,
                household_id=area.household_id,
                reason=reason[:200] if isinstance(reason, str) else "",
                state="pending",
            )
        )
        return True

    async def _online(self, conn: AsyncConnection, device: DeviceRow, event: Event) -> None:
        t = offline_devices
        row = (await conn.execute(sa.select(t).where(t.c.device_id == device.id))).first()
        if row is None or event.occurred_at < row.offline_at:
            return  # not held as offline, or an older report arriving late
        clock = event.occurred_at.astimezone(self.tz).strftime("%m-%d %H:%M")
        if row.state == "maintenance" and row.task_id is not None:
            note = f"；{clock} 已恢复在线 / back online at {clock}"
            await _append_detail(conn, row.task_id, note)
        elif row.state == "outage" and row.outage_id is not None:
            await conn.execute(
                sa.update(outages)
                .where(outages.c.id == row.outage_id)
                .values(back_online=outages.c.back_online + 1)
            )
            await self._rewrite_outage_detail(conn, row.outage_id)
        await conn.execute(sa.delete(t).where(t.c.device_id == device.id))

    async def _low_battery(
        self, conn: AsyncConnection, device: DeviceRow, area: _Area, event: Event, now: datetime
    ) -> None:
        pct = event.data.get("battery_pct")
        level = f"{pct}%" if isinstance(pct, int) and not isinstance(pct, bool) else "?"
        where = f"（{area.where}）" if area.where else ""
        await file_device_task(
            conn,
            kind="maintenance",
            device_id=device.id,
            household_id=area.household_id,
            grid_id=area.grid_id,
            detail=f"设备电量低（{level}）：{device.id}{where}，请更换电池 / "
            f"low battery ({level}): {device.id}{where.replace('（', ' (').replace('）', ')')}, "
            "replace it",
            now=now,
        )

    # -- time -------------------------------------------------------------------------------
    async def on_tick(self, conn: AsyncConnection, now: datetime) -> Effects:
        await self._end_finished_outages(conn, now)
        effects = await self._group(conn, now)
        await self._file_maintenance(conn, now)
        return effects

    async def _end_finished_outages(self, conn: AsyncConnection, now: datetime) -> None:
        """An outage whose task is done is over; its devices still offline start over."""
        done = (
            sa.select(outages.c.id)
            .join(tasks, tasks.c.id == outages.c.task_id)
            .where(outages.c.ended_at.is_(None), tasks.c.state == "done")
        )
        ended = [row.id for row in await conn.execute(done)]
        if not ended:
            return
        await conn.execute(sa.update(outages).where(outages.c.id.in_(ended)).values(ended_at=now))
        await conn.execute(
            sa.update(offline_devices)
            .where(offline_devices.c.outage_id.in_(ended))
            .values(state="pending", outage_id=None, noticed_at=now)
        )

    async def _file_maintenance(self, conn: AsyncConnection, now: datetime) -> None:
        t = offline_devices
        due = (
            await conn.execute(
                sa.select(t).where(t.c.state == "pending", t.c.noticed_at <= now - self.window)
            )
        ).mappings()
        areas: dict[str, _Area] = {}
        rows = list(due)
        if rows:
            areas = await _areas(conn, [r["device_id"] for r in rows])
        for row in rows:
            device_id = row["device_id"]
            area = areas.get(device_id)
            where = f"（{area.where}）" if area and area.where else ""
            where_en = f" ({area.where})" if area and area.where else ""
            reason = f"：{row['reason']}" if row["reason"] else ""
            clock = row["offline_at"].astimezone(self.tz).strftime("%m-%d %H:%M")
            task_id = await file_device_task(
                conn,
                kind="maintenance",
                device_id=device_id,
                household_id=row["household_id"],
                grid_id=row["grid_id"],
                detail=f"设备离线：{device_id}{where}，{clock} 起{reason} / "
                f"device offline: {device_id}{where_en} since {clock}"
                + (f": {row['reason']}" if row["reason"] else ""),
                now=now,
            )
            if task_id is None:  # an open maintenance task exists (a low battery, say)
                task_id = await _open_task(conn, "maintenance", device_id)
                if task_id is not None:
                    note = f"；{clock} 起离线 / offline since {clock}"
                    await _append_detail(conn, task_id, note)
            await conn.execute(
                sa.update(t)
                .where(t.c.device_id == device_id)
                .values(state="maintenance", task_id=task_id)
            )

    # -- grouping ---------------------------------------------------------------------------
    async def _group(self, conn: AsyncConnection, now: datetime) -> Effects:
        """Pending devices join an open outage of their group, or form a new one."""
        t = offline_devices
        pending = list(
            (
                await conn.execute(
                    sa.select(t).where(t.c.state == "pending").order_by(t.c.offline_at)
                )
            ).mappings()
        )
        if not pending:
            return Effects()
        open_outages = {
            row.group_key: row.id
            for row in await conn.execute(
                sa.select(outages.c.id, outages.c.group_key).where(outages.c.ended_at.is_(None))
            )
        }
        joined: dict[int, list[str]] = {}
        groups: dict[str, list[sa.RowMapping]] = {}
        for row in pending:
            keys = _group_keys(row)
            outage_id = next((open_outages[k] for k in keys if k in open_outages), None)
            if outage_id is not None:
                joined.setdefault(outage_id, []).append(row["device_id"])
                continue
            for key in keys:
                groups.setdefault(key, []).append(row)
        for outage_id, device_ids in joined.items():
            await self._join(conn, outage_id, device_ids)
        effects = Effects()
        taken: set[str] = set()
        # Buildings first: "3号楼 has no power" says more than "edge-7's devices are gone".
        for key in sorted(groups, key=lambda k: (not k.startswith("building:"), k)):
            rows = [r for r in groups[key] if r["device_id"] not in taken]
            if self._clustered([r["offline_at"] for r in rows]):
                effects.extend(await self._open_outage(conn, key, rows, now))
                taken.update(r["device_id"] for r in rows)
        return effects

    def _clustered(self, times: list[datetime]) -> bool:
        """At least ``outage_min_devices`` of ``times`` (sorted) within one window."""
        n = self.settings.outage_min_devices
        return any(times[i + n - 1] - times[i] <= self.window for i in range(len(times) - n + 1))

    async def _join(self, conn: AsyncConnection, outage_id: int, device_ids: list[str]) -> None:
        await conn.execute(
            sa.update(offline_devices)
            .where(offline_devices.c.device_id.in_(device_ids))
            .values(state="outage", outage_id=outage_id)
        )
        await conn.execute(
            sa.update(outages)
            .where(outages.c.id == outage_id)
            .values(devices=outages.c.devices + len(device_ids))
        )
        await self._rewrite_outage_detail(conn, outage_id)

    async def _open_outage(
        self, conn: AsyncConnection, key: str, rows: list[sa.RowMapping], now: datetime
    ) -> Effects:
        grids = Counter(r["grid_id"] for r in rows if r["grid_id"] is not None)
        grid_id = grids.most_common(1)[0][0] if grids else None
        started_at = min(r["offline_at"] for r in rows)
        label_zh, _ = _labels(key)
        result = await conn.execute(
            sa.insert(outages).values(
                group_key=key,
                label=label_zh,
                grid_id=grid_id,
                started_at=started_at,
                devices=len(rows),
                back_online=0,
            )
        )
        outage_id = inserted_id(result)
        zh, en = self._outage_text(key, len(rows), 0, started_at)
        task_id = await file_device_task(
            conn,
            kind="outage",
            device_id=None,
            household_id=None,
            grid_id=grid_id,
            detail=f"{zh} / {en}",
            now=now,
        )
        await conn.execute(
            sa.update(outages).where(outages.c.id == outage_id).values(task_id=task_id)
        )
        await conn.execute(
            sa.update(offline_devices)
            .where(offline_devices.c.device_id.in_([r["device_id"] for r in rows]))
            .values(state="outage", outage_id=outage_id)
        )
        notifications = await notify_grid_worker(
            conn,
            grid_id=grid_id,
            kind="outage",
            message_zh=zh,  # the headline (【疑似停电】) comes from the notification kind
            message_en=en[:1].upper() + en[1:],
            task_id=task_id,
            household_id=None,
            device_id=None,
            now=now,
            tz=self.tz,
            ack_base_url=self.ack_base_url,
        )
        return Effects(notifications=notifications)

    def _outage_text(
        self, key: str, count: int, back: int, started_at: datetime
    ) -> tuple[str, str]:
        label_zh, label_en = _labels(key)
        clock = started_at.astimezone(self.tz).strftime("%m-%d %H:%M")
        zh = f"疑似停电：{label_zh} {count} 台设备离线（{clock} 起）"
        en = f"suspected power cut: {count} devices offline at {label_en} since {clock}"
        if back:
            zh += f"，已恢复 {back} 台"
            en += f", {back} back online"
        return zh, en

    async def _rewrite_outage_detail(self, conn: AsyncConnection, outage_id: int) -> None:
        row = (await conn.execute(sa.select(outages).where(outages.c.id == outage_id))).first()
        if row is None or row.task_id is None:
            return
        zh, en = self._outage_text(row.group_key, row.devices, row.back_online, row.started_at)
        await conn.execute(
            sa.update(tasks).where(tasks.c.id == row.task_id).values(detail=f"{zh} / {en}")
        )


async def _open_task(conn: AsyncConnection, kind: str, device_id: str) -> int | None:
    query = sa.select(tasks.c.id).where(
        tasks.c.device_id == device_id, tasks.c.kind == kind, tasks.c.state != "done"
    )
    found: Any = (await conn.execute(query)).scalar()
    return int(found) if found is not None else None


async def _append_detail(conn: AsyncConnection, task_id: int, note: str) -> None:
    await conn.execute(
        sa.update(tasks).where(tasks.c.id == task_id).values(detail=tasks.c.detail + note)
    )
