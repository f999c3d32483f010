"""What every facility handler needs: the grid a device is in, payload values it can
trust, with what it could not trust counted (and logged at most once a minute) instead of
crashing ingest, and the one way a device's task is opened and its grid worker told. The
events themselves are already stored whole in ``events``."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import households
from hub.domain.effects import Effects
from hub.domain.facility_rules import number
from hub.handlers.router import DeviceRow
from hub.services.alerts import notify_grid_worker
from hub.services.tasks import file_device_task

log = logging.getLogger(__name__)

DEFAULT_TZ: tzinfo = ZoneInfo("Asia/Shanghai")
_LOG_EVERY_S = 60.0
MAX_INT = 2**31 - 1


async def grid_of(conn: AsyncConnection, device: DeviceRow) -> int | None:
    """The device's own grid (shared equipment), else its household's grid, else None."""
    if device.grid_id is not None:
        return device.grid_id
    if device.household_id is None:
        return None
    query = sa.select(households.c.grid_id).where(households.c.id == device.household_id)
    grid: int | None = (await conn.execute(query)).scalar()
    return grid


def where(device: DeviceRow) -> str:
    """How a message names the device: its place, and its id."""
    return f"{device.place}（{device.id}）" if device.place else device.id


def where_en(device: DeviceRow) -> str:
    return f"{device.place} ({device.id})" if device.place else device.id


async def tell_grid_worker(
    conn: AsyncConnection,
    device: DeviceRow,
    *,
    kind: str,
    task_id: int,
    grid_id: int | None,
    zh: str,
    en: str,
    now: datetime,
    tz: tzinfo,
    ack_base_url: str,
) -> Effects:
    """Tell whoever is on duty in ``grid_id`` about ``device``'s task ``task_id``.

    Why one function: every facility alert (door, compartment, leak, bin) reaches the
    worker the same way, with the device's household and id so the message can name the
    place, and the acknowledge link pointing at the task; written once, a handler cannot
    forget one of them. ``kind`` is the notification kind shown to the worker.
    """
    notifications = await notify_grid_worker(
        conn,
        grid_id=grid_id,
        kind=kind,
        message_zh=zh,
        message_en=en,
        task_id=task_id,
        household_id=device.household_id,
        device_id=device.id,
        now=now,
        tz=tz,
        ack_base_url=ack_base_url,
    )
    return Effects(notifications=notifications)


async def open_device_task(
    conn: AsyncConnection,
    device: DeviceRow,
    *,
    kind: str,
    zh: str,
    en: str,
    now: datetime,
    tz: tzinfo,
    ack_base_url: str,
) -> tuple[int | None, Effects]:
    """File a ``kind`` task about ``device`` in its grid and tell the grid's worker.

    Returns the new task's id and the notifications; (None, no effects) when the device
    already has an open task of that kind. Why the worker is told only then: a door that
    repeats "forced" or a meter that leaks night after night is one task and one call, not
    one per event. The task's detail is ``"zh / en"``, as every worker-facing text.
    """
    grid_id = await grid_of(conn, device)
    task_id = await file_device_task(
        conn,
        kind=kind,
        device_id=device.id,
        household_id=device.household_id,
        grid_id=grid_id,
        detail=f"{zh} / {en}",
        now=now,
    )
    if task_id is None:
        return None, Effects()
    effects = await tell_grid_worker(
        conn,
        device,
        kind=kind,
        task_id=task_id,
        grid_id=grid_id,
        zh=zh,
        en=en,
        now=now,
        tz=tz,
        ack_base_url=ack_base_url,
    )
    return task_id, effects


class InputProblems:
    """Counts payload values a handler had to ignore, by reason; logs each reason at most
    once a minute so a misconfigured device cannot flood the log."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}

    def count(self, device_id: str, kind: str, reason: str) -> None:
        key = f"{kind}: {reason}"
        self.counts[key] += 1
        last = self._logged_at.get(key)
        clock = time.monotonic()
        if last is None or clock - last >= _LOG_EVERY_S:
            self._logged_at[key] = clock
            log.warning(
                "%s: ignored %s from %s: %s (%d so far)",
                self.name,
                kind,
                device_id,
                reason,
                self.counts[key],
            )


def text_value(data: Mapping[str, Any], key: str, max_length: int = 64) -> str | None:
    """A non-empty string field, cut to the column's length; anything else is None."""
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:max_length]


def int_value(data: Mapping[str, Any], key: str) -> int | None:
    """A whole number field within ±(2**31 - 1) (what every backend's INTEGER holds; a
    larger one would fail the transaction); anything else is None."""
    value = data.get(key)
    if isinstance(value, bool):
        return None
    if not isinstance(value, int):
        as_number = number(value)
        if as_number is None or not as_number.is_integer():
            return None
        value = int(as_number)
    return value if -MAX_INT <= value <= MAX_INT else None
