"""Doors (face-recognition and card gates): the access log, and alerts for a door forced
or held open.

Every door event becomes one ``door_access_log`` row, written for the whole batch in one
statement (a busy gate at rush hour sends many passes a minute); the log is what the
property office searches ("who came in through gate 3 last night"). A forced door or one
held open is also a ``door_alert`` task for the gate's grid, one open per door however
often the door repeats itself, and the grid's on-duty worker is notified when the task is
filed. Opening a door remotely is a device command, not this module's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from contract import Event
from hub.db.bulk import bulk_execute
from hub.db.schema import door_access_log
from hub.domain.effects import Effects
from hub.domain.facility_rules import number
from hub.handlers.facilities.common import (
    DEFAULT_TZ,
    InputProblems,
    int_value,
    open_device_task,
    text_value,
    where,
    where_en,
)
from hub.handlers.router import DeviceRow

PASS_KINDS = frozenset({"face_pass", "face_unknown", "card_pass"})
ALERT_KINDS = frozenset({"door_forced", "door_held_open"})
DOOR_KINDS = PASS_KINDS | ALERT_KINDS

_INSERT_ACCESS = sa.insert(door_access_log)


def alert_text(device: DeviceRow, event: Event) -> tuple[str, str]:
    """(Chinese, English) of a door alert, naming the door."""
    if event.kind == "door_forced":
        return f"门被强行打开：{where(device)}", f"door forced open: {where_en(device)}"
    seconds = int_value(event.data, "seconds")
    held_zh = f"（{seconds} 秒）" if seconds is not None else ""
    held_en = f" ({seconds} s)" if seconds is not None else ""
    return (
        f"门长时间未关{held_zh}：{where(device)}",
        f"door held open{held_en}: {where_en(device)}",
    )


class DoorHandler:
    """Access log and door alerts (kinds face_pass, face_unknown, card_pass, door_forced,
    door_held_open)."""

    kinds: frozenset[str] | None = DOOR_KINDS

    ignored_kinds: frozenset[str] = frozenset()

    def __init__(self, tz: tzinfo = DEFAULT_TZ, ack_base_url: str = "") -> None:
        self.tz = tz
        self.ack_base_url = ack_base_url
        self.problems = InputProblems("doors")

    async def on_events(
        self, conn: AsyncConnection, events: Sequence[tuple[DeviceRow, Event]], now: datetime
    ) -> Effects:
        rows = [self._access_row(device, event) for device, event in events]
        await bulk_execute(conn, _INSERT_ACCESS, rows)
        effects = Effects()
        for device, event in events:
            if event.kind in ALERT_KINDS:
                effects.extend(await self._alert(conn, device, event, now))
        return effects

    async def on_tick(self, conn: AsyncConnection, now: datetime) -> Effects:
        return Effects()

    def _access_row(self, device: DeviceRow, event: Event) -> dict[str, Any]:
        data = event.data
        similarity = number(data.get("similarity"))
        if event.kind in ("face_pass", "face_unknown") and similarity is None:
            self.problems.count(device.id, event.kind, "similarity is not a number")
        person_id = text_value(data, "person_id")
        if event.kind == "face_pass" and person_id is None:
            self.problems.count(device.id, event.kind, "no person_id")
        card_id = text_value(data, "card_id")
        if event.kind == "card_pass" and card_id is None:
            self.problems.count(device.id, event.kind, "no card_id")
        return {
            "device_id": device.id,
            "kind": event.kind,
            "person_id": person_id,
            "card_id": card_id,
            "similarity": similarity,
            "seconds": int_value(data, "seconds"),
            "at": event.occurred_at,
        }

    async def _alert(
        self, conn: AsyncConnection, device: DeviceRow, event: Event, now: datetime
    ) -> Effects:
        zh, en = alert_text(device, event)
        # nothing to tell when the door already has an open alert: one task, one call
        _, effects = await open_device_task(
            conn,
            device,
            kind="door_alert",
            zh=zh,
            en=en,
            now=now,
            tz=self.tz,
            ack_base_url=self.ack_base_url,
        )
        return effects


async def list_access_log(
    conn: AsyncConnection,
    device_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """A door's access log, newest first, ``since`` inclusive and ``until`` exclusive;
    with the number of matching rows on all pages."""
    log_ = door_access_log
    conditions = [log_.c.device_id == device_id]
    if since is not None:
        conditions.append(log_.c.at >= since)
    if until is not None:
        conditions.append(log_.c.at < until)
    if kind is not None:
        conditions.append(log_.c.kind == kind)
    total = (await conn.execute(sa.select(sa.func.count()).where(*conditions))).scalar_one()
    query = (
        sa.select(log_)
        .where(*conditions)
        .order_by(log_.c.at.desc(), log_.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    return rows, int(total)
