"""A device's state and its event and reading history, read back for the API.

The state row is kept at event time by :class:`hub.handlers.device_state.DeviceStateHandler`;
this module only reads it and ``events`` (newest first, filtered, paged), within the
viewer's grids, identities hidden from roles that may not see them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import device_state, devices, events, households
from hub.domain.access import Principal, is_identity_key, without_identities
from hub.services.errors import NotFound
from hub.services.records import contains, invalid, require_grid

# --- reading it back (API) ---------------------------------------------------------------

#: A device's grid: its household's, or its own when it is in no household.
_DEVICE_GRID = sa.func.coalesce(households.c.grid_id, devices.c.grid_id)
_DEVICES_WITH_GRID = devices.outerjoin(households, households.c.id == devices.c.household_id)


async def device_in_scope(conn: AsyncConnection, viewer: Principal, device_id: str) -> None:
    """NotFound for an unknown device id, Forbidden for a device outside the viewer's grids.

    A retired device is still found: its history stays readable.
    """
    query = (
        sa.select(_DEVICE_GRID.label("grid_id"))
        .select_from(_DEVICES_WITH_GRID)
        .where(devices.c.id == device_id)
    )
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"device {device_id} not found / 设备 {device_id} 不存在")
    require_grid(viewer, row.grid_id, f"device {device_id}")


def _state_out(device_id: str, row: sa.RowMapping | None) -> dict[str, Any]:
    if row is None:  # registered but never heard from
        return {
            "device_id": device_id,
            "last_event_kind": None,
            "last_event_at": None,
            "values": {},
            "value_times": {},
            "online": None,
            "online_changed_at": None,
            "offline_reason": "",
            "updated_at": None,
        }
    return {
        "device_id": device_id,
        "last_event_kind": row["last_event_kind"],
        "last_event_at": row["last_event_at"],
        "values": row["readings"],
        "value_times": row["reading_times"],
        "online": row["online"],
        "online_changed_at": row["online_changed_at"],
        "offline_reason": row["offline_reason"],
        "updated_at": row["updated_at"],
    }


async def get_state(conn: AsyncConnection, viewer: Principal, device_id: str) -> dict[str, Any]:
    await device_in_scope(conn, viewer, device_id)
    query = sa.select(device_state).where(device_state.c.device_id == device_id)
    state = _state_out(device_id, (await conn.execute(query)).mappings().first())
    if not viewer.sees_identities():
        state["values"] = without_identities(state["values"])
        state["value_times"] = without_identities(state["value_times"])
    return state


@dataclass(frozen=True, slots=True)
class EventFilter:
    device_id: str | None = None
    kind: str | None = None
    lane: str | None = None
    since: datetime | None = None  # occurred_at >= since
    until: datetime | None = None  # occurred_at < until
    before_id: int | None = None  # cursor: events stored before this one
    limit: int = 100
    offset: int = 0

    def check(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise invalid("until", "until must be later than since / 结束时间必须晚于开始时间")


def _visible_devices(viewer: Principal) -> sa.Select[Any]:
    return (
        sa.select(devices.c.id)
        .select_from(_DEVICES_WITH_GRID)
        .where(_DEVICE_GRID.in_(sorted(viewer.grid_ids)))
    )


async def _events_query(conn: AsyncConnection, viewer: Principal, f: EventFilter) -> sa.Select[Any]:
    """Newest first. Of one device: by the device's time, the order of the index on
    (device_id, occurred_at), so a page of a meter with a year of readings is read from
    the index rather than sorted. Of many: by commit order at the hub (ids are never
    reused). ``before_id`` continues after that event in the same order.
    """
    query = sa.select(
        events.c.id,
        events.c.device_id,
        events.c.edge_id,
        events.c.kind,
        events.c.lane,
        events.c.occurred_at,
        events.c.received_at,
        events.c.data,
    ).where(events.c.refused.is_(False))  # refused at ingest: no history of the device
    if f.device_id is not None:
        query = query.where(events.c.device_id == f.device_id)
    elif not viewer.sees_all_grids():
        query = query.where(events.c.device_id.in_(_visible_devices(viewer)))
    for column, value in ((events.c.kind, f.kind), (events.c.lane, f.lane)):
        if value is not None:
            query = query.where(column == value)
    if f.since is not None:
        query = query.where(events.c.occurred_at >= f.since)
    if f.until is not None:
        query = query.where(events.c.occurred_at < f.until)
    if f.device_id is None:
        if f.before_id is not None:
            query = query.where(events.c.id < f.before_id)
        return query.order_by(events.c.id.desc()).limit(f.limit).offset(f.offset)
    if f.before_id is not None:
        at = (
            await conn.execute(sa.select(events.c.occurred_at).where(events.c.id == f.before_id))
        ).scalar()
        if at is None:
            raise invalid("before_id", f"no event {f.before_id} / 事件 {f.before_id} 不存在")
        query = query.where(
            sa.tuple_(events.c.occurred_at, events.c.id)
            < sa.tuple_(sa.literal(at, events.c.occurred_at.type), sa.literal(f.before_id))
        )
    order = (events.c.occurred_at.desc(), events.c.id.desc())
    return query.order_by(*order).limit(f.limit).offset(f.offset)


async def list_events(
    conn: AsyncConnection, viewer: Principal, f: EventFilter
) -> list[dict[str, Any]]:
    """Events newest first; a grid worker sees only devices of their grids."""
    f.check()
    if f.device_id is not None:
        await device_in_scope(conn, viewer, f.device_id)
    rows = [dict(r) for r in (await conn.execute(await _events_query(conn, viewer, f))).mappings()]
    if not viewer.sees_identities():
        for row in rows:
            row["data"] = without_identities(row["data"])
    return rows


async def list_readings(
    conn: AsyncConnection,
    viewer: Principal,
    device_id: str,
    *,
    field_name: str | None,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """A device's telemetry, newest first; with ``field_name`` a series of that one value.

    Events of the series that lack the field (a poll that carried only some values) are
    skipped, so a page holds up to ``limit`` points of the field.
    """
    f = EventFilter(device_id, None, "telemetry", since, until, before_id, limit)
    f.check()
    await device_in_scope(conn, viewer, device_id)
    query = await _events_query(conn, viewer, f)
    sees = viewer.sees_identities()
    if field_name is None:
        rows = await conn.execute(query)
        return [
            {
                "id": r.id,
                "kind": r.kind,
                "occurred_at": r.occurred_at,
                "data": r.data if sees else without_identities(r.data),
            }
            for r in rows
        ]
    if not sees and is_identity_key(field_name):
        return []  # the hotline desk gets no series of an identity
    # Data is stored as compact JSON text, so a literal '"name":' narrows the rows on any
    # backend; the value itself is then checked here.
    query = query.where(contains(events.c.data, f'"{field_name}":'))
    points: list[dict[str, Any]] = []
    for r in await conn.execute(query):
        value = r.data.get(field_name) if isinstance(r.data, dict) else None
        if isinstance(value, int | float | str | bool):
            points.append({"id": r.id, "occurred_at": r.occurred_at, "value": value})
    return points
