"""The device registry: register, change, move and retire devices; list them; profiles.

A device is in a household (and so in its grid) or directly in a grid; the list shows the
grid either way (``grid_id`` is the household's grid for a household's device). Moving is
an update of household, grid, edge, bus or address and is audited as ``device.move``.
Retiring is soft (``retired_at``): the row and its history stay, the device no longer
counts as registered, and ingest quarantines its events as from an unknown device.

The rules for an entry are pure (:mod:`hub.domain.device_rows`); this module loads what
they need (:func:`load_view`) and writes. Known profiles are the device profile files the
edges load (``device_profiles/*.yaml``), read with the edge's own validating loader so
hub and edge never disagree on which exist.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Row, Select, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import devices, grids, households
from hub.domain.access import Principal
from hub.domain.device_rows import Placement, RegistryView, check_placement
from hub.services.audit import record_audit
from hub.services.errors import AlreadyExists, FieldProblem, InvalidAct, InvalidInput, NotFound
from hub.services.records import contains, page, require_grid, snapshot
from profiles.errors import ProfileError
from profiles.loader import PROFILE_SUFFIXES, load_profile

log = logging.getLogger(__name__)

T = TypeVar("T")
_CHUNK = 500  # ids per IN (...) list, well under every backend's parameter limit
_MOVES = frozenset({"household_id", "grid_id", "edge_id", "bus", "address"})

#: A device's grid: its household's, or its own when it is in no household.
device_grid: ColumnElement[int] = func.coalesce(households.c.grid_id, devices.c.grid_id)
_PUBLIC = select(
    devices.c.id,
    devices.c.profile,
    devices.c.household_id,
    device_grid.label("grid_id"),
    devices.c.place,
    devices.c.edge_id,
    devices.c.bus,
    devices.c.address,
    devices.c.online,
    devices.c.last_seen,
    devices.c.battery_pct,
    devices.c.retired_at,
    devices.c.updated_at,
    households.c.address.label("household_address"),
).select_from(devices.outerjoin(households, households.c.id == devices.c.household_id))


def known_profiles(directory: Path) -> frozenset[str]:
    """Names (``identity.name``) of the valid profiles in ``directory``; blocking file I/O.

    A broken profile file is skipped with a warning rather than failing every request:
    devices of that model cannot be registered until it is fixed, the rest can.
    """
    if not directory.is_dir():
        log.warning("device profile directory %s not found; no profile is known", directory)
        return frozenset()
    names: set[str] = set()
    for path in sorted(p for p in directory.iterdir() if p.suffix in PROFILE_SUFFIXES):
        try:
            names.add(load_profile(path).identity.name)
        except ProfileError as err:
            log.warning("skipping device profile: %s", err)
    return frozenset(names)


async def list_devices(
    conn: AsyncConnection,
    viewer: Principal,
    *,
    edge_id: str | None = None,
    grid_id: int | None = None,
    household_id: int | None = None,
    profile: str | None = None,
    online: bool | None = None,
    retired: bool = False,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Devices the viewer may see, by id; ``q`` searches id, place, bus address, address."""
    query = _PUBLIC.order_by(devices.c.id)
    query = query.where(
        devices.c.retired_at.isnot(None) if retired else devices.c.retired_at.is_(None)
    )
    if not viewer.sees_all_grids():
        query = query.where(device_grid.in_(sorted(viewer.grid_ids)))
    if edge_id is not None:
        query = query.where(devices.c.edge_id == edge_id)
    if grid_id is not None:
        query = query.where(device_grid == grid_id)
    if household_id is not None:
        query = query.where(devices.c.household_id == household_id)
    if profile is not None:
        query = query.where(devices.c.profile == profile)
    if online is not None:
        query = query.where(devices.c.online.is_(online))
    if q:
        query = query.where(
            or_(
                contains(devices.c.id, q),
                contains(devices.c.place, q),
                contains(devices.c.address, q),
                contains(households.c.address, q),
            )
        )
    return await page(conn, query, limit, offset)


async def get_device(conn: AsyncConnection, viewer: Principal, device_id: str) -> dict[str, Any]:
    device = await _device(conn, device_id)
    require_grid(viewer, device["grid_id"], f"device {device_id}")
    return device


async def create_device(
    conn: AsyncConnection,
    actor: Principal,
    entry: Placement,
    profiles: frozenset[str],
    now: datetime,
) -> dict[str, Any]:
    view = await load_view(
        conn,
        profiles,
        device_ids=[entry.device_id],
        household_ids=_some(entry.household_id),
        grid_ids=_some(entry.grid_id),
        edge_ids=_some(entry.edge_id),
    )
    if entry.device_id in view.devices:
        retired = " (retired)" if view.devices[entry.device_id] else ""
        raise AlreadyExists(
            f"device {entry.device_id} is already registered{retired} / "
            f"设备 {entry.device_id} 已登记"
        )
    stored_grid = _checked(entry, _as_seen_by(actor, view), check_profile=True)
    grid = _grid_of(entry, view, stored_grid)
    require_grid(actor, grid, f"grid {grid}")
    await conn.execute(insert(devices).values(**placement_row(entry, stored_grid), updated_at=now))
    after = await _device(conn, entry.device_id)
    await record_audit(
        conn,
        actor=actor,
        action="device.create",
        target_type="device",
        target_id=entry.device_id,
        at=now,
        after=snapshot(after),
    )
    return after


async def update_device(
    conn: AsyncConnection,
    actor: Principal,
    device_id: str,
    changes: Mapping[str, Any],
    profiles: frozenset[str],
    now: datetime,
) -> dict[str, Any]:
    """Change or move a device. Leaving a household without a ``grid_id`` keeps the grid."""
    before = await _device(conn, device_id)
    require_grid(actor, before["grid_id"], f"device {device_id}")
    if before["retired_at"] is not None:
        raise InvalidAct(f"device {device_id} is retired / 设备 {device_id} 已停用")
    merged = {k: before[k] for k in ("profile", "household_id", "place", "edge_id", "bus")}
    merged |= {"address": before["address"]} | dict(changes)
    if "grid_id" in changes:
        grid_id = changes["grid_id"]
    elif merged["household_id"] is None:
        grid_id = before["grid_id"]  # out of the household, still in its grid
    else:
        grid_id = None  # the (new) household decides
    entry = Placement(device_id=device_id, grid_id=grid_id, **merged)
    view = await load_view(
        conn,
        profiles,
        device_ids=[],
        household_ids=_some(entry.household_id),
        grid_ids=_some(entry.grid_id),
        edge_ids=_some(entry.edge_id),
    )
    check_profile = entry.profile != before["profile"]
    stored_grid = _checked(entry, _as_seen_by(actor, view), check_profile=check_profile)
    new_grid = _grid_of(entry, view, stored_grid)
    if new_grid != before["grid_id"]:
        require_grid(actor, new_grid, f"grid {new_grid}")
    await conn.execute(
        update(devices)
        .where(devices.c.id == device_id)
        .values(**placement_row(entry, stored_grid), updated_at=now)
    )
    after = await _device(conn, device_id)
    moved = any(before[k] != after[k] for k in _MOVES)
    await record_audit(
        conn,
        actor=actor,
        action="device.move" if moved else "device.update",
        target_type="device",
        target_id=device_id,
        at=now,
        before=snapshot(before),
        after=snapshot(after),
    )
    return after


async def retire_device(
    conn: AsyncConnection, actor: Principal, device_id: str, now: datetime
) -> dict[str, Any]:
    before = await _device(conn, device_id)
    require_grid(actor, before["grid_id"], f"device {device_id}")
    if before["retired_at"] is not None:
        raise InvalidAct(f"device {device_id} is already retired / 设备 {device_id} 已停用")
    await conn.execute(
        update(devices)
        .where(devices.c.id == device_id)
        .values(retired_at=now, updated_at=now, online=False)
    )
    after = await _device(conn, device_id)
    await record_audit(
        conn,
        actor=actor,
        action="device.retire",
        target_type="device",
        target_id=device_id,
        at=now,
        before=snapshot(before),
        after=snapshot(after),
    )
    return after


async def load_view(
    conn: AsyncConnection,
    profiles: frozenset[str],
    *,
    device_ids: Iterable[str],
    household_ids: Iterable[int],
    grid_ids: Iterable[int],
    edge_ids: Iterable[str],
    household_addresses: Iterable[str] = (),
) -> RegistryView:
    """What the entry checks need to know, for only the ids and addresses named."""
    registered = {
        row.id: row.retired_at is not None
        for row in await _matching(
            conn, select(devices.c.id, devices.c.retired_at), devices.c.id, device_ids
        )
    }
    household_grids = {
        row.id: row.grid_id
        for row in await _matching(
            conn, select(households.c.id, households.c.grid_id), households.c.id, household_ids
        )
    }
    by_address: dict[str, list[tuple[int, int]]] = {}
    located = select(households.c.id, households.c.grid_id, households.c.address)
    for row in await _matching(conn, located, households.c.address, household_addresses):
        by_address.setdefault(row.address, []).append((row.id, row.grid_id))
        household_grids[row.id] = row.grid_id
    known_grids = {
        row.id for row in await _matching(conn, select(grids.c.id), grids.c.id, grid_ids)
    }
    taken = select(devices.c.id, devices.c.edge_id, devices.c.bus, devices.c.address).where(
        devices.c.retired_at.is_(None), devices.c.bus.isnot(None), devices.c.address.isnot(None)
    )
    slots = {
        (row.edge_id, row.bus, row.address): row.id
        for row in await _matching(conn, taken, devices.c.edge_id, edge_ids)
    }
    return RegistryView(
        profiles=profiles,
        grids=frozenset(known_grids),
        household_grids=household_grids,
        households_by_address={k: tuple(v) for k, v in by_address.items()},
        devices=registered,
        slots=slots,
    )


def placement_row(entry: Placement, stored_grid: int | None) -> dict[str, Any]:
    """The ``devices`` columns an entry sets (the CSV import inserts these too)."""
    return {
        "id": entry.device_id,
        "profile": entry.profile,
        "household_id": entry.household_id,
        "grid_id": stored_grid,
        "place": entry.place,
        "edge_id": entry.edge_id,
        "bus": entry.bus,
        "address": entry.address,
    }


def _as_seen_by(actor: Principal, view: RegistryView) -> RegistryView:
    """The view without the grids and households the actor may not see: naming one of them
    is answered as naming one that does not exist (422), never 403 (issue #11)."""
    if actor.sees_all_grids():
        return view
    return dataclasses.replace(
        view,
        grids=frozenset(g for g in view.grids if actor.sees_grid(g)),
        household_grids={h: g for h, g in view.household_grids.items() if actor.sees_grid(g)},
    )


def _checked(entry: Placement, view: RegistryView, *, check_profile: bool) -> int | None:
    stored_grid, problems = check_placement(entry, view, check_profile=check_profile)
    if problems:
        raise InvalidInput([FieldProblem(p.field, p.message) for p in problems])
    return stored_grid


def _grid_of(entry: Placement, view: RegistryView, stored_grid: int | None) -> int | None:
    if entry.household_id is None:
        return stored_grid
    return view.household_grids.get(entry.household_id)


async def _device(conn: AsyncConnection, device_id: str) -> dict[str, Any]:
    row = (await conn.execute(_PUBLIC.where(devices.c.id == device_id))).mappings().first()
    if row is None:
        raise NotFound(f"device {device_id} not found / 设备 {device_id} 不存在")
    return dict(row)


def _some(value: T | None) -> list[T]:
    return [] if value is None else [value]


async def _matching(
    conn: AsyncConnection, query: Select[Any], column: ColumnElement[Any], values: Iterable[Any]
) -> list[Row[Any]]:
    """Rows of ``query`` whose ``column`` is one of ``values``, a chunk of ids at a time."""
    wanted = sorted(set(values))
    found: list[Row[Any]] = []
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        found += (await conn.execute(query.where(column.in_(chunk)))).all()
    return found
