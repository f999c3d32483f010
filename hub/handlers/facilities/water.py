"""Water meters: suspect a leak when the flow never stops during the night.

In a home nobody draws water at every moment between 01:00 and 05:00; a meter that never
shows zero flow in that window is most likely a running toilet or a burst pipe, and for
an elderly resident living alone a grid worker should look. Readings are telemetry (a
meter every few minutes, a community of thousands), so they are not scanned afterwards:
as readings arrive, each meter's night is kept as one small ``water_nights`` row (readings
in the window, how many showed no flow, the lowest flow) updated once per batch, and the
tick judges each row once, after its window has closed: at least
``night_min_readings`` readings and none at zero → one ``leak_check`` task (one open per
meter) and the on-duty grid worker is told. A reading arriving after its night was judged
does not reopen it (it is counted as late).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from contract import Event
from hub.db.bulk import bulk_execute
from hub.db.schema import devices, water_nights
from hub.domain.effects import Effects
from hub.domain.facility_rules import (
    FacilitySettings,
    is_zero_flow,
    leak_suspected,
    night_ends_at,
    night_of,
    number,
)
from hub.handlers.facilities.common import (
    DEFAULT_TZ,
    InputProblems,
    open_device_task,
    where,
    where_en,
)
from hub.handlers.router import DeviceRow

WATER_KINDS = frozenset({"water_reading"})

_NIGHTS = sa.select(
    water_nights.c.device_id, water_nights.c.night, water_nights.c.evaluated_at
).where(
    water_nights.c.device_id.in_(sa.bindparam("ids", expanding=True)),
    water_nights.c.night.in_(sa.bindparam("nights", expanding=True)),
)
_ADD = (
    sa.update(water_nights)
    .where(
        water_nights.c.device_id == sa.bindparam("b_device"),
        water_nights.c.night == sa.bindparam("b_night"),
    )
    .values(
        readings=water_nights.c.readings + sa.bindparam("b_readings", type_=sa.Integer),
        zero_readings=water_nights.c.zero_readings + sa.bindparam("b_zeros", type_=sa.Integer),
        min_flow_m3h=sa.case(
            (
                water_nights.c.min_flow_m3h > sa.bindparam("b_min", type_=sa.Float),
                sa.bindparam("b_min", type_=sa.Float),
            ),
            else_=water_nights.c.min_flow_m3h,
        ),
    )
)
_INSERT = sa.insert(water_nights)


@dataclass(slots=True)
class _Night:
    readings: int = 0
    zeros: int = 0
    min_flow: float | None = None

    def add(self, flow: float, zero: bool) -> None:
        self.readings += 1
        self.zeros += int(zero)
        self.min_flow = flow if self.min_flow is None else min(self.min_flow, flow)


class WaterHandler:
    """Night aggregates and leak suspicion from ``water_reading`` events."""

    kinds: frozenset[str] | None = WATER_KINDS

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
        self.problems = InputProblems("water")
        self.late_readings = 0

    async def on_events(
        self, conn: AsyncConnection, events: Sequence[tuple[DeviceRow, Event]], now: datetime
    ) -> Effects:
        s = self.settings
        nights: dict[tuple[str, date], _Night] = {}
        for device, event in events:
            flow = number(event.data.get("flow_m3h"))
            if flow is None or flow < 0:
                self.problems.count(device.id, event.kind, "flow_m3h is not a number >= 0")
                continue
            night = night_of(event.occurred_at, s.night_start, s.night_end, self.tz)
            if night is None:
                continue
            nights.setdefault((device.id, night), _Night()).add(
                flow, is_zero_flow(flow, s.zero_flow_m3h)
            )
        if nights:
            await self._store(conn, nights)
        return Effects()

    async def _store(self, conn: AsyncConnection, nights: dict[tuple[str, date], _Night]) -> None:
        found = list(
            await conn.execute(
                _NIGHTS,
                {"ids": sorted({d for d, _ in nights}), "nights": sorted({n for _, n in nights})},
            )
        )
        existing = {(r.device_id, r.night) for r in found}
        judged = {(r.device_id, r.night) for r in found if r.evaluated_at is not None}
        updates: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        s = self.settings
        for (device_id, night), agg in nights.items():
            if (device_id, night) in judged:
                self.late_readings += agg.readings  # that night was judged already
            elif (device_id, night) not in existing:
                inserts.append(
                    {
                        "device_id": device_id,
                        "night": night,
                        "ends_at": night_ends_at(night, s.night_start, s.night_end, self.tz),
                        "readings": agg.readings,
                        "zero_readings": agg.zeros,
                        "min_flow_m3h": agg.min_flow,
                    }
                )
            else:
                updates.append(
                    {
                        "b_device": device_id,
                        "b_night": night,
                        "b_readings": agg.readings,
                        "b_zeros": agg.zeros,
                        "b_min": agg.min_flow,
                    }
                )
        await bulk_execute(conn, _INSERT, inserts)
        await bulk_execute(conn, _ADD, updates)

    async def on_tick(self, conn: AsyncConnection, now: datetime) -> Effects:
        due = (
            await conn.execute(
                sa.select(water_nights)
                .where(water_nights.c.evaluated_at.is_(None), water_nights.c.ends_at <= now)
                .order_by(water_nights.c.ends_at, water_nights.c.id)
            )
        ).mappings()
        effects = Effects()
        for row in list(due):
            effects.extend(await self._judge(conn, row, now))
        keep_from = now - timedelta(days=self.settings.water_nights_kept_days)
        await conn.execute(
            sa.delete(water_nights).where(
                water_nights.c.evaluated_at.is_not(None), water_nights.c.ends_at < keep_from
            )
        )
        return effects

    async def _judge(self, conn: AsyncConnection, row: Any, now: datetime) -> Effects:
        s = self.settings
        readings, zeros = int(row["readings"]), int(row["zero_readings"])
        if readings < s.night_min_readings:
            verdict = "too_few"
        elif leak_suspected(readings, zeros, s.night_min_readings):
            verdict = "leak"
        else:
            verdict = "no_leak"
        effects, task_id = Effects(), None
        device = await _device(conn, row["device_id"]) if verdict == "leak" else None
        if device is not None:
            effects, task_id = await self._leak(conn, device, row, now)
        await conn.execute(
            sa.update(water_nights)
            .where(water_nights.c.id == row["id"], water_nights.c.evaluated_at.is_(None))
            .values(evaluated_at=now, verdict=verdict, task_id=task_id)
        )
        return effects

    async def _leak(
        self, conn: AsyncConnection, device: DeviceRow, row: Any, now: datetime
    ) -> tuple[Effects, int | None]:
        s = self.settings
        window = f"{s.night_start:%H:%M}-{s.night_end:%H:%M}"
        low = row["min_flow_m3h"]
        zh = (
            f"疑似漏水：{where(device)} 在 {row['night']:%m-%d} 夜间 {window} 用水从未停止"
            f"（{row['readings']} 次读数，最低 {low:.3f} m³/h），请上门查看"
        )
        en = (
            f"suspected leak: {where_en(device)}: water never stopped during the night of "
            f"{row['night']:%m-%d} {window} ({row['readings']} readings, lowest "
            f"{low:.3f} m³/h); please check"
        )
        # task None: the meter's leak check from an earlier night is still open
        task_id, effects = await open_device_task(
            conn,
            device,
            kind="leak_check",
            zh=zh,
            en=en,
            now=now,
            tz=self.tz,
            ack_base_url=self.ack_base_url,
        )
        return effects, task_id


async def _device(conn: AsyncConnection, device_id: str) -> DeviceRow | None:
    query = sa.select(
        devices.c.id,
        devices.c.profile,
        devices.c.household_id,
        devices.c.grid_id,
        devices.c.place,
        devices.c.edge_id,
    ).where(devices.c.id == device_id)
    r = (await conn.execute(query)).first()
    if r is None:
        return None
    return DeviceRow(str(r.id), str(r.profile), r.household_id, r.grid_id, str(r.place), r.edge_id)
