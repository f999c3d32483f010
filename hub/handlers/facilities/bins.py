"""Bin sensors: a full bin becomes a collection task; a hot or tipped bin an alert.

Readings are telemetry (a bin reports every minute or so), so only the newest reading of
each bin in a batch is judged, and a bin whose reading raises nothing costs no query. A
full bin gets one open ``collection`` task (filed again only after that one is done); a
bin at fire temperature or tipped over gets one open ``bin_alert`` task and the grid's
on-duty worker is told. When a bin with an open alert shows the *other* danger (tipped,
then hot), that is added to the open task and the worker is told again: a fire must not
hide behind an earlier "tipped over".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from contract import Event
from hub.db.schema import tasks
from hub.domain.effects import Effects
from hub.domain.facility_rules import BinVerdict, FacilitySettings, judge_bin, number
from hub.handlers.facilities.common import (
    DEFAULT_TZ,
    InputProblems,
    grid_of,
    tell_grid_worker,
    where,
    where_en,
)
from hub.handlers.router import DeviceRow
from hub.services.tasks import file_device_task

BIN_KINDS = frozenset({"bin_reading"})
_FIELDS = ("fill_pct", "temperature_c", "tilt_deg")


def danger_texts(
    device: DeviceRow, verdict: BinVerdict, temperature_c: float | None, tilt_deg: float | None
) -> list[tuple[str, str]]:
    """(Chinese, English) for each danger in ``verdict``: fire risk first."""
    found = []
    if verdict.hot:
        found.append(
            (
                f"垃圾桶温度异常（{temperature_c:.0f}°C），疑似起火：{where(device)}",
                f"bin temperature {temperature_c:.0f} °C, fire risk: {where_en(device)}",
            )
        )
    if verdict.tipped:
        found.append(
            (
                f"垃圾桶倾倒（{tilt_deg:.0f}°）：{where(device)}",
                f"bin tipped over ({tilt_deg:.0f}°): {where_en(device)}",
            )
        )
    return found


class BinHandler:
    """Collection tasks and fire/tip alerts from ``bin_reading`` events."""

    kinds: frozenset[str] | None = BIN_KINDS

    ignored_kinds: frozenset[str] = frozenset()

    def __init__(
        self,
        settings: FacilitySettings | None = None,
        tz: tzinfo = DEFAULT_TZ,
        ack_base_url: str = "",
    ) -> None:
        self.settings = settings or FacilitySettings()
        self.tz = tz
        self.ack_base_url = ack_base_url
        self.problems = InputProblems("bins")

    async def on_events(
        self, conn: AsyncConnection, events: Sequence[tuple[DeviceRow, Event]], now: datetime
    ) -> Effects:
        newest: dict[str, tuple[DeviceRow, Event]] = {}
        for device, event in events:
            known = newest.get(device.id)
            if known is None or event.occurred_at >= known[1].occurred_at:
                newest[device.id] = (device, event)
        effects = Effects()
        for device, event in newest.values():
            effects.extend(await self._judge(conn, device, event, now))
        return effects

    async def on_tick(self, conn: AsyncConnection, now: datetime) -> Effects:
        return Effects()

    async def _judge(
        self, conn: AsyncConnection, device: DeviceRow, event: Event, now: datetime
    ) -> Effects:
        values = {name: number(event.data.get(name)) for name in _FIELDS}
        for name in _FIELDS:
            if name in event.data and values[name] is None:
                self.problems.count(device.id, event.kind, f"{name} is not a number")
        fill, temperature, tilt = (values[name] for name in _FIELDS)
        verdict = judge_bin(self.settings, fill_pct=fill, temperature_c=temperature, tilt_deg=tilt)
        if not (verdict.full or verdict.hot or verdict.tipped):
            return Effects()
        grid_id = await grid_of(conn, device)
        if verdict.full:
            await file_device_task(
                conn,
                kind="collection",
                device_id=device.id,
                household_id=device.household_id,
                grid_id=grid_id,
                detail=f"垃圾桶已满（{fill:.0f}%），请清运：{where(device)} / "
                f"bin full ({fill:.0f}%), please empty it: {where_en(device)}",
                now=now,
            )
        dangers = danger_texts(device, verdict, temperature, tilt)
        if not dangers:
            return Effects()
        told = await self._file_alert(conn, device, grid_id, dangers, now)
        if told is None:
            return Effects()
        task_id, (zh, en) = told
        return await tell_grid_worker(
            conn,
            device,
            kind="bin_alert",
            task_id=task_id,
            grid_id=grid_id,
            zh=zh,
            en=en,
            now=now,
            tz=self.tz,
            ack_base_url=self.ack_base_url,
        )

    async def _file_alert(
        self,
        conn: AsyncConnection,
        device: DeviceRow,
        grid_id: int | None,
        dangers: list[tuple[str, str]],
        now: datetime,
    ) -> tuple[int, tuple[str, str]] | None:
        """File or extend the bin's open alert; (task id, what to tell) or None if nothing
        new. A danger is "new" when its Chinese headline is not yet in the open task."""
        open_alert = (
            await conn.execute(
                sa.select(tasks.c.id, tasks.c.detail).where(
                    tasks.c.device_id == device.id,
                    tasks.c.kind == "bin_alert",
                    tasks.c.state != "done",
                )
            )
        ).first()
        if open_alert is None:
            detail = "；".join(f"{zh} / {en}" for zh, en in dangers)
            task_id = await file_device_task(
                conn,
                kind="bin_alert",
                device_id=device.id,
                household_id=device.household_id,
                grid_id=grid_id,
                detail=detail,
                now=now,
            )
            if task_id is None:
                return None
            return task_id, ("；".join(zh for zh, _ in dangers), "; ".join(en for _, en in dangers))
        fresh = [(zh, en) for zh, en in dangers if _headline(zh) not in open_alert.detail]
        if not fresh:
            return None
        added = "；".join(f"{zh} / {en}" for zh, en in fresh)
        await conn.execute(
            sa.update(tasks)
            .where(tasks.c.id == open_alert.id)
            .values(detail=f"{open_alert.detail}；{added}")
        )
        return int(open_alert.id), (
            "；".join(zh for zh, _ in fresh),
            "; ".join(en for _, en in fresh),
        )


def _headline(zh: str) -> str:
    """The words that name a danger, without the reading that varies ("垃圾桶倾倒")."""
    return zh.split("（", 1)[0]
