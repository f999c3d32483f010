"""Device supervision on a real SQLite file: maintenance tasks for devices gone offline,
one outage task for a power cut, state kept in the database across a hub restart.

Events go through the same router ingest uses (``DeviceEventRouter``); time is passed in
explicitly (``now``), as ingest and the device timer do. Grid 1's worker is worker 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import Event, Lane
from hub.db.schema import devices, offline_devices, tasks
from hub.domain.effects import Effects
from hub.handlers.router import DeviceEventRouter
from hub.handlers.supervision import SupervisionHandler, SupervisionSettings, building_of

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai
SETTINGS = SupervisionSettings(outage_min_devices=5, outage_window_s=120)
BUILDING = "幸福里小区3号楼"


async def register(engine: AsyncEngine, ids: Sequence[str], **values: Any) -> None:
    values = {"profile": "water-meter", "grid_id": 1, "edge_id": "edge-1", "place": ""} | values
    async with engine.begin() as conn:
        await conn.execute(sa.insert(devices).values(**values), [{"id": i} for i in ids])


def offline(device_id: str, at: datetime, seq: int = 1) -> Event:
    return Event(seq, device_id, "device.offline", Lane.NORMAL, at, {"reason": "no answer"})


def online(device_id: str, at: datetime, seq: int = 2) -> Event:
    return Event(seq, device_id, "device.online", Lane.NORMAL, at, {})


class Hub:
    """The supervision handler as ingest and the device timer run it (a new one = restart)."""

    def __init__(self, engine: AsyncEngine, settings: SupervisionSettings = SETTINGS) -> None:
        self.engine = engine
        self.router = DeviceEventRouter([SupervisionHandler(settings)])

    async def ingest(self, batch: Sequence[Event], now: datetime) -> Effects:
        async with self.engine.begin() as conn:
            return await self.router.on_events(conn, batch, now)

    async def tick(self, now: datetime) -> Effects:
        async with self.engine.begin() as conn:
            return await self.router.on_tick(conn, now)


async def task_rows(engine: AsyncEngine, kind: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(tasks).order_by(tasks.c.id)
    if kind is not None:
        query = query.where(tasks.c.kind == kind)
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def test_a_device_offline_past_the_window_gets_one_maintenance_task(
    engine: AsyncEngine,
) -> None:
    await register(engine, ["wm-7"], place="幸福里小区5号楼水表间")
    hub = Hub(engine)
    await hub.ingest([offline("wm-7", T0)], T0)
    await hub.tick(T0 + timedelta(seconds=119))
    assert await task_rows(engine) == []  # still inside the window: might be an outage

    await hub.tick(T0 + timedelta(seconds=120))
    [task] = await task_rows(engine)
    assert (task["kind"], task["device_id"], task["grid_id"], task["state"]) == (
        "maintenance",
        "wm-7",
        1,
        "open",
    )
    assert task["detail"].startswith("设备离线：wm-7（幸福里小区5号楼水表间），03-03 09:00 起")
    assert (
        "device offline: wm-7 (幸福里小区5号楼水表间) since 03-03 09:00: no answer"
        in (task["detail"])
    )

    # Told again: still one task. Back online: noted, left open for the worker.
    await hub.ingest([offline("wm-7", T0 + timedelta(minutes=5), seq=3)], T0 + timedelta(minutes=5))
    await hub.tick(T0 + timedelta(minutes=9))
    await hub.ingest(
        [online("wm-7", T0 + timedelta(minutes=10), seq=4)], T0 + timedelta(minutes=10)
    )
    [task] = await task_rows(engine)
    assert task["state"] == "open"
    assert task["detail"].endswith("；03-03 09:10 已恢复在线 / back online at 03-03 09:10")


async def test_a_blip_inside_the_window_files_nothing(engine: AsyncEngine) -> None:
    await register(engine, ["wm-8"])
    hub = Hub(engine)
    await hub.ingest([offline("wm-8", T0)], T0)
    await hub.ingest([online("wm-8", T0 + timedelta(seconds=30))], T0 + timedelta(seconds=30))
    await hub.tick(T0 + timedelta(minutes=10))
    assert await task_rows(engine) == []


async def test_a_power_cut_of_30_devices_is_one_outage_task_not_30_maintenance_tasks(
    engine: AsyncEngine,
) -> None:
    ids = [f"wm-{n}" for n in range(100, 130)]
    await register(engine, ids, place=f"{BUILDING}配电间")
    hub = Hub(engine)
    notified: list[int] = []
    # They go within 50 s, reported in three batches, with ticks in between.
    for part in range(3):
        batch = [
            offline(i, T0 + timedelta(seconds=5 * part + n % 5)) for n, i in enumerate(ids[part::3])
        ]
        now = T0 + timedelta(seconds=20 * part + 10)
        effects = await hub.ingest(batch, now)
        notified += [n.worker_id for n in effects.notifications]
        notified += [n.worker_id for n in (await hub.tick(now)).notifications]
    for minutes in (3, 10, 60):
        await hub.tick(T0 + timedelta(minutes=minutes))

    [outage] = await task_rows(engine)
    assert (outage["kind"], outage["grid_id"], outage["device_id"]) == ("outage", 1, None)
    assert outage["detail"] == (
        f"疑似停电：{BUILDING} 30 台设备离线（03-03 09:00 起） / "
        f"suspected power cut: 30 devices offline at {BUILDING} since 03-03 09:00"
    )
    assert notified == [1]  # the grid worker on duty, once

    # Power comes back: noted on the task, which stays open.
    now = T0 + timedelta(minutes=70)
    await hub.ingest([online(i, now) for i in ids[:12]], now)
    [outage] = await task_rows(engine)
    assert "30 台设备离线（03-03 09:00 起），已恢复 12 台 / " in outage["detail"]
    assert outage["detail"].endswith("since 03-03 09:00, 12 back online")
    assert outage["state"] == "open"


async def test_the_window_survives_a_hub_restart(engine: AsyncEngine) -> None:
    ids = [f"wm-{n}" for n in range(200, 206)]
    await register(engine, ids, edge_id="edge-7")  # no building named: grouped by edge
    await Hub(engine).ingest([offline(i, T0) for i in ids[:3]], T0)
    restarted = Hub(engine)
    await restarted.tick(T0 + timedelta(seconds=30))
    now = T0 + timedelta(seconds=60)
    await restarted.ingest([offline(i, now) for i in ids[3:]], now)
    await restarted.tick(T0 + timedelta(minutes=5))
    [outage] = await task_rows(engine)
    assert outage["kind"] == "outage"
    assert "网关 edge-7 下 6 台设备离线" in outage["detail"]
    assert "6 devices offline at edge edge-7" in outage["detail"]


async def test_offline_devices_spread_out_get_their_own_tasks(engine: AsyncEngine) -> None:
    ids = [f"wm-{n}" for n in range(300, 305)]
    await register(engine, ids)
    hub = Hub(engine)
    for n, device_id in enumerate(ids):  # one every 40 s: never 5 within 120 s
        now = T0 + timedelta(seconds=40 * n)
        await hub.ingest([offline(device_id, now)], now)
        await hub.tick(now)
    await hub.tick(T0 + timedelta(minutes=10))
    found = await task_rows(engine)
    assert sorted((t["kind"], t["device_id"]) for t in found) == [("maintenance", i) for i in ids]


async def test_a_finished_outage_hands_devices_still_dark_to_maintenance(
    engine: AsyncEngine,
) -> None:
    ids = [f"wm-{n}" for n in range(400, 405)]
    await register(engine, ids, place=f"{BUILDING}1单元")
    hub = Hub(engine)
    await hub.ingest([offline(i, T0) for i in ids], T0)
    [outage] = await task_rows(engine)
    # Power back for all but one; the worker closes the outage.
    later = T0 + timedelta(minutes=30)
    await hub.ingest([online(i, later) for i in ids[1:]], later)
    async with engine.begin() as conn:
        await conn.execute(sa.update(tasks).where(tasks.c.id == outage["id"]).values(state="done"))
    await hub.tick(later + timedelta(seconds=10))
    assert await task_rows(engine, "maintenance") == []  # a window of its own first
    await hub.tick(later + timedelta(minutes=3))
    [task] = await task_rows(engine, "maintenance")
    assert task["device_id"] == ids[0]

    # The next power cut of the building is a new outage.
    again = T0 + timedelta(hours=2)
    await hub.ingest([offline(i, again, seq=9) for i in ids[1:]], again)
    await hub.ingest(
        [offline(f"wm-{n}", again) for n in range(405, 406)], again
    )  # unregistered: ignored
    outages = await task_rows(engine, "outage")
    assert len(outages) == 1  # four devices are below the threshold of five
    await register(engine, ["wm-405"], place=f"{BUILDING}2单元")
    await hub.ingest([offline("wm-405", again)], again)
    outages = await task_rows(engine, "outage")
    assert len(outages) == 2 and "5 台设备离线" in outages[1]["detail"]


async def test_low_battery_of_other_profiles_is_a_maintenance_task(engine: AsyncEngine) -> None:
    await register(engine, ["door-gate-3"], profile="fr-door", place="东门")
    hub = Hub(engine)
    battery = Event(1, "door-gate-3", "low_battery", Lane.NORMAL, T0, {"battery_pct": 9})
    button = Event(1, "cb100-77626", "low_battery", Lane.NORMAL, T0, {"battery_pct": 9})
    await hub.ingest([battery, battery, button], T0)
    [task] = await task_rows(engine)
    assert (task["kind"], task["device_id"], task["grid_id"]) == ("maintenance", "door-gate-3", 1)
    assert task["detail"].startswith("设备电量低（9%）：door-gate-3（东门），请更换电池")


async def test_offline_rows_are_gone_once_devices_are_back(engine: AsyncEngine) -> None:
    await register(engine, ["wm-9"])
    hub = Hub(engine)
    await hub.ingest([offline("wm-9", T0), online("wm-9", T0 + timedelta(seconds=1))], T0)
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(offline_devices))).first() is None


@pytest.mark.parametrize(
    ("text", "building"),
    [
        ("幸福里小区3号楼2单元301室", "幸福里小区3号楼"),
        ("和平新村15号楼1单元302室", "和平新村15号楼"),
        ("锦绣园12栋配电间", "锦绣园12栋"),
        ("A座大堂", "A座"),
        ("东门", None),
        ("", None),
    ],
)
def test_building_from_an_address_or_place(text: str, building: str | None) -> None:
    assert building_of(text) == building
