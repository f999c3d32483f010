"""The latest state of every device, and its event and reading history.

Why a ``device_state`` table rather than asking ``events`` each time: "what does meter X
read now, is the door online" must answer from one row, not from a scan of millions of
telemetry events. :class:`DeviceStateHandler` keeps that row inside ingest's transaction,
so state and history never disagree. Ingest takes about 20,000 events/s, so the handler
works per batch: one SELECT of the rows it touches, the merge in memory, one upsert
(executemany) for all of them, never a statement per event.

Each reading field keeps its own time: a meter poll may carry only some fields, and a
telemetry batch that arrives after a normal-lane one (lanes are independent) must not
overwrite a newer value with an older one. The same "newest wins" rule applies to the last
event and to the online flag (``device.offline`` / ``device.online``).

The history functions below read ``events`` for the API (newest first, filtered, paged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import UpdateBase

from contract import Event, Lane
from hub.db.schema import device_state, devices, events, households
from hub.domain.access import Principal, is_identity_key, without_identities
from hub.services.cases import Effects, bulk_execute
from hub.services.device_handlers import DeviceRow
from hub.services.errors import NotFound
from hub.services.records import contains, invalid, require_grid

#: Event kinds whose data are readings although they are not in the telemetry lane.
READING_KINDS = frozenset({"low_battery"})
#: Data keys that are bookkeeping of the link, not readings.
NOT_READINGS = frozenset({"frame_seq"})
OFFLINE, ONLINE = "device.offline", "device.online"


def _newer(new: Any, old: Any) -> Any:
    """SQL: the new time is set and the stored one is not, or is not later."""
    return sa.and_(new.is_not(None), sa.or_(old.is_(None), new >= old))


def _merged(dialect: str, old: Any, new: Any) -> Any:
    """SQL: JSON object ``old`` with the keys of ``new`` set (RFC 7396 merge patch)."""
    if dialect == "postgresql":
        patched = sa.cast(old, postgresql.JSONB).op("||")(sa.cast(new, postgresql.JSONB))
        return sa.cast(patched, sa.Text)
    return sa.func.json_patch(old, new)


def _upsert(dialect: str) -> UpdateBase:
    """One statement for a whole batch: insert a device's first row, else merge into it.

    The merge happens in SQL, so the handler reads nothing back: each column changes only
    when the batch's value is at least as new as the stored one.
    """
    maker = postgresql.insert if dialect == "postgresql" else sqlite.insert
    insert = maker(device_state)
    old, new = device_state.c, insert.excluded
    fresh_readings = _newer(new.readings_at, old.readings_at)
    fresh_online = _newer(new.online_changed_at, old.online_changed_at)
    return insert.on_conflict_do_update(
        index_elements=[old.device_id],
        set_={
            "last_event_kind": sa.case(
                (new.last_event_at >= old.last_event_at, new.last_event_kind),
                else_=old.last_event_kind,
            ),
            "last_event_at": sa.case(
                (new.last_event_at >= old.last_event_at, new.last_event_at),
                else_=old.last_event_at,
            ),
            "readings": sa.case(
                (fresh_readings, _merged(dialect, old.readings, new.readings)),
                else_=old.readings,
            ),
            "reading_times": sa.case(
                (fresh_readings, _merged(dialect, old.reading_times, new.reading_times)),
                else_=old.reading_times,
            ),
            "readings_at": sa.case((fresh_readings, new.readings_at), else_=old.readings_at),
            "online": sa.case((fresh_online, new.online), else_=old.online),
            "online_changed_at": sa.case(
                (fresh_online, new.online_changed_at), else_=old.online_changed_at
            ),
            "offline_reason": sa.case((fresh_online, new.offline_reason), else_=old.offline_reason),
            "updated_at": new.updated_at,
        },
    )


_UPSERTS: dict[str, UpdateBase] = {}  # per dialect, built once (bulk_execute caches by id)


def is_reading(event: Event) -> bool:
    return (
        event.lane == Lane.TELEMETRY
        or event.kind in READING_KINDS
        or event.kind.endswith("_reading")
    )


@dataclass(slots=True)
class _Batch:
    """What one batch says about one device, newest value winning (in memory)."""

    device_id: str
    last_event_kind: str
    last_event_at: datetime
    readings: dict[str, Any] = field(default_factory=dict)
    reading_times: dict[str, datetime] = field(default_factory=dict)
    readings_at: datetime | None = None
    online: bool | None = None
    online_changed_at: datetime | None = None
    offline_reason: str = ""

    def merge(self, event: Event) -> None:
        at = event.occurred_at
        if at >= self.last_event_at:
            self.last_event_kind, self.last_event_at = event.kind, at
        if event.kind in (OFFLINE, ONLINE) and (
            self.online_changed_at is None or at >= self.online_changed_at
        ):
            self.online = event.kind == ONLINE
            self.online_changed_at = at
            reason = event.data.get("reason") if event.kind == OFFLINE else ""
            self.offline_reason = reason[:500] if isinstance(reason, str) else ""
        if is_reading(event):
            for name, value in event.data.items():
                if name in NOT_READINGS or not isinstance(value, int | float | str | bool):
                    continue
                known = self.reading_times.get(name)
                if known is None or at >= known:
                    self.readings[name] = value
                    self.reading_times[name] = at
            if self.readings_at is None or at > self.readings_at:
                self.readings_at = at

    def row(self, now: datetime) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "last_event_kind": self.last_event_kind,
            "last_event_at": self.last_event_at,
            "readings": self.readings,
            "reading_times": {k: _iso(v) for k, v in self.reading_times.items()},
            "readings_at": self.readings_at,
            "online": self.online,
            "online_changed_at": self.online_changed_at,
            "offline_reason": self.offline_reason,
            "updated_at": now,
        }


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: Kinds that do not change the state kept here: a heartbeat says only "alive", which the
#: devices table already records (``last_seen``, ``battery_pct``, updated by the case
#: service in the same transaction). Skipping them matters: heartbeats of hundreds of
#: call buttons are most of a community's traffic, and upserting a state row for each
#: made the hub's ingest 3.4× slower (measured: 7,200 → 2,100 events/s in process with
#: 250 devices per batch; the bench's drain fell from 8,800 to 2,700 events/s).
STATELESS_KINDS = frozenset({"heartbeat"})


class DeviceStateHandler:
    """Keeps ``device_state`` current from every stored event of a registered device,
    heartbeats excepted (see :data:`STATELESS_KINDS`)."""

    kinds: frozenset[str] | None = None  # every kind but heartbeats
    ignored_kinds = STATELESS_KINDS

    async def on_events(
        self, conn: AsyncConnection, events: Sequence[tuple[DeviceRow, Event]], now: datetime
    ) -> Effects:
        batch: dict[str, _Batch] = {}
        for _, event in events:
            if event.kind in STATELESS_KINDS:
                continue  # the router leaves them out; a direct caller may not
            state = batch.get(event.device_id)
            if state is None:
                state = batch[event.device_id] = _Batch(
                    event.device_id, event.kind, event.occurred_at
                )
            state.merge(event)
        if not batch:
            return Effects()
        dialect = conn.dialect.name
        upsert = _UPSERTS.get(dialect)
        if upsert is None:
            upsert = _UPSERTS[dialect] = _upsert(dialect)
        await bulk_execute(conn, upsert, [batch[i].row(now) for i in sorted(batch)])
        return Effects()

    async def on_tick(self, conn: AsyncConnection, now: datetime) -> Effects:
        return Effects()


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
