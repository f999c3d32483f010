"""Placing a batch of stored events: which registered device each is from, and may it be.

Ingest's one step between storing events and acting on them, for every kind alike (an SOS
and a meter reading go the same way up to their handler):

* **one device lookup** for the whole batch (a retired device counts as unknown);
* **the trust rule of issue #11**: an edge speaks only for the devices registered behind
  it (``devices.edge_id``, set by the registry or remote configuration, never by whoever
  reports a device first). An event of an unknown device, of one behind another edge or
  behind none is refused with the reason (for ingest to quarantine and mark) and changes
  nothing; an event about the edge itself (``config.applied``, …) is kept in history only;
* **one last-seen touch** (an executemany) for every device heard: any event proves the
  device alive *now*, at the hub's receive time, never the edge's clock (a year-9999
  timestamp once kept a device "online" for good); within the batch an event older than
  one already applied changes neither the online flag nor the battery level.

The placed events, each with its registry row, go to the
:class:`~hub.handlers.router.DeviceEventRouter`; a handler may still refuse an event it
cannot act on (an SOS from a button bound to no household) through ``Effects.refused``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Integer, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from contract import Event
from contract.remote_config import EDGE_EVENT_KINDS
from hub.db.bulk import bulk_execute, select_rows
from hub.db.schema import devices
from hub.handlers.router import DeviceRow

_OFFLINE_KINDS = frozenset({"offline", "device_offline", "device.offline"})

#: The devices of a batch, with what every handler needs of the registry row.
_DEVICES_BY_ID = select(
    devices.c.id,
    devices.c.profile,
    devices.c.household_id,
    devices.c.grid_id,
    devices.c.place,
    devices.c.edge_id,
).where(devices.c.id.in_(bindparam("ids", expanding=True)), devices.c.retired_at.is_(None))

#: One statement for every device touched by a batch.
_TOUCH = (
    update(devices)
    .where(devices.c.id == bindparam("b_id"))
    .values(
        last_seen=bindparam("b_last_seen"),
        online=func.coalesce(bindparam("b_online", type_=Boolean), devices.c.online),
        battery_pct=func.coalesce(bindparam("b_battery", type_=Integer), devices.c.battery_pct),
    )
)


@dataclass(slots=True)
class Placement:
    """A batch sorted out: events to act on (with their devices), events refused."""

    placed: list[tuple[DeviceRow, Event]] = field(default_factory=list)
    refused: list[tuple[Event, str]] = field(default_factory=list)


async def place(
    conn: AsyncConnection, edge_id: str, batch: Sequence[Event], now: datetime
) -> Placement:
    """Place newly stored events from ``edge_id`` (in order) and touch their devices."""
    result = Placement()
    if not batch:
        return result
    ids = sorted({e.device_id for e in batch})
    rows = await select_rows(conn, _DEVICES_BY_ID, {"ids": ids})
    known = {
        str(r[0]): DeviceRow(str(r[0]), str(r[1]), r[2], r[3], str(r[4] or ""), r[5]) for r in rows
    }
    touched: dict[str, dict[str, Any]] = {}
    newest: dict[str, datetime] = {}
    for event in batch:
        device = known.get(event.device_id)
        if device is None and event.device_id == edge_id and event.kind in EDGE_EVENT_KINDS:
            continue  # about the edge itself: kept in history only
        reason = foreign(event.device_id, device, edge_id)
        if device is None or reason:
            result.refused.append((event, reason))
            continue
        _touch(device.id, event, now, touched, newest)
        result.placed.append((device, event))
    if touched:
        if conn.dialect.name == "sqlite":
            await _touch_sqlite(conn, touched, now)
        else:
            await bulk_execute(conn, _TOUCH, list(touched.values()))
    return result


#: :data:`_TOUCH` for SQLite in one statement for the whole batch, no bind processing per
#: device: ``?1`` is a JSON array of ``[id, online or null, battery or null]``, ``?2`` the
#: receive time as SQLAlchemy writes a naive-UTC DATETIME on SQLite.
_TOUCH_SQLITE = (
    "UPDATE devices SET last_seen = ?2, "
    "online = coalesce(t.value->>1, devices.online), "
    "battery_pct = coalesce(t.value->>2, devices.battery_pct) "
    "FROM json_each(?1) AS t WHERE devices.id = t.value->>0"
)


async def _touch_sqlite(
    conn: AsyncConnection, touched: dict[str, dict[str, Any]], now: datetime
) -> None:
    rows = json.dumps(
        [[r["b_id"], r["b_online"], r["b_battery"]] for r in touched.values()],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    at = now.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    await driver.execute(_TOUCH_SQLITE, (rows, at))


def _touch(
    device_id: str,
    event: Event,
    now: datetime,
    touched: dict[str, dict[str, Any]],
    newest: dict[str, datetime],
) -> None:
    row = touched.setdefault(
        device_id,
        {"b_id": device_id, "b_last_seen": now, "b_online": None, "b_battery": None},
    )
    seen = newest.get(device_id)
    if seen is not None and event.occurred_at < seen:
        return
    newest[device_id] = event.occurred_at
    row["b_online"] = event.kind not in _OFFLINE_KINDS
    battery = event.data.get("battery_pct")
    if isinstance(battery, int) and not isinstance(battery, bool) and 0 <= battery <= 100:
        row["b_battery"] = battery


def foreign(device_id: str, device: DeviceRow | None, edge_id: str) -> str:
    """Why ``edge_id`` may not speak for this device ("" when it may)."""
    if device is None:
        return (
            f"设备 {device_id} 未登记或已退役 / device {device_id} is not registered "
            f"(or is retired)"
        )
    if device.edge_id is None:
        return (
            f"设备 {device_id} 未分配到边缘网关（由 {edge_id} 发送）/ device {device_id} is not "
            f"assigned to an edge (sent by {edge_id})"
        )
    if device.edge_id != edge_id:
        return (
            f"设备 {device_id} 属于边缘网关 {device.edge_id}（由 {edge_id} 发送）/ device "
            f"{device_id} belongs to edge {device.edge_id} (sent by {edge_id})"
        )
    return ""
