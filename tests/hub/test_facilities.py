"""Facility handlers on a real, migrated database with the demo community (both back ends).

Events go through the real :class:`DeviceEventRouter` (which loads the device rows) inside
a real transaction, and ``on_tick`` is called with chosen times (48 h later, 05:01 local),
as the hub's device timer would. The demo community: grid 1 has households 1-3 (1 and 3
live alone) and grid worker 1 (王丽, on duty around the clock); grid 2 has households 4-6
(4 and 6 live alone) and worker 2 (赵敏); worker 3 (孙强) is both grids' backup.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import Event, Lane
from hub.db import schema
from hub.domain.effects import Effects
from hub.domain.facility_rules import FacilitySettings, ParcelWebhookSettings
from hub.handlers.facilities import facility_handlers
from hub.handlers.facilities.bins import BinHandler
from hub.handlers.facilities.doors import DoorHandler, list_access_log
from hub.handlers.facilities.parcels import ParcelHandler, list_parcels
from hub.handlers.facilities.water import WaterHandler
from hub.handlers.router import DeviceEventHandler, DeviceEventRouter
from hub.services.alerts import notify_grid_worker

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai
GRID1_WORKER, GRID2_WORKER, BACKUP = 1, 2, 3


def local(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture
async def community(engine: AsyncEngine) -> AsyncEngine:
    """The demo community plus a gate, a locker and a bin in grid 1 and meters at home."""
    rows = [
        {"id": "door-gate-3", "profile": "fr-door", "grid_id": 1, "place": "3号门"},
        {"id": "locker-1", "profile": "parcel-locker", "grid_id": 1, "place": "3号楼快递柜"},
        {"id": "bin-1", "profile": "bin-sensor", "grid_id": 1, "place": "3号楼垃圾站"},
        {"id": "bin-2", "profile": "bin-sensor", "grid_id": 2, "place": "8号楼垃圾站"},
        {"id": "wm-7", "profile": "water-meter", "household_id": 1, "place": "厨房"},
        {"id": "wm-8", "profile": "water-meter", "household_id": 2, "place": "厨房"},
        {"id": "wm-9", "profile": "water-meter", "household_id": 4, "place": "厨房"},
    ]
    async with engine.begin() as conn:
        for row in rows:
            await conn.execute(sa.insert(schema.devices).values(edge_id="edge-demo", **row))
    return engine


class Feed:
    """Feeds events through a router holding one handler, one transaction per call."""

    def __init__(self, engine: AsyncEngine, handler: DeviceEventHandler) -> None:
        self.engine = engine
        self.router = DeviceEventRouter([handler])
        self.seq = 0

    async def events(
        self, now: datetime, *items: tuple[str, str, dict[str, Any]], at: datetime | None = None
    ) -> Effects:
        batch = []
        for device_id, kind, data in items:
            self.seq += 1
            batch.append(Event(self.seq, device_id, kind, Lane.NORMAL, at or now, data))
        async with self.engine.begin() as conn:
            return await self.router.on_events(conn, batch, now)

    async def readings(self, items: Sequence[tuple[str, str, datetime, dict[str, Any]]]) -> None:
        batch = []
        for device_id, kind, at, data in items:
            self.seq += 1
            batch.append(Event(self.seq, device_id, kind, Lane.TELEMETRY, at, data))
        async with self.engine.begin() as conn:
            await self.router.on_events(conn, batch, max(e.occurred_at for e in batch))

    async def tick(self, now: datetime) -> Effects:
        async with self.engine.begin() as conn:
            return await self.router.on_tick(conn, now)


async def task_rows(engine: AsyncEngine, kind: str) -> list[Any]:
    async with engine.connect() as conn:
        query = sa.select(schema.tasks).where(schema.tasks.c.kind == kind)
        return list(await conn.execute(query.order_by(schema.tasks.c.id)))


async def finish(engine: AsyncEngine, task_id: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(schema.tasks).where(schema.tasks.c.id == task_id).values(state="done")
        )


def told(effects: Effects) -> list[tuple[int, str, str]]:
    return [(n.worker_id, n.tier, n.kind) for n in effects.notifications]


# --- doors -----------------------------------------------------------------------------


async def test_forced_door_files_one_alert_and_tells_the_grid_worker(
    community: AsyncEngine,
) -> None:
    feed = Feed(community, DoorHandler(SHANGHAI, "https://hub.example"))
    effects = await feed.events(T0, ("door-gate-3", "door_forced", {}))
    [task] = await task_rows(community, "door_alert")
    assert (task.device_id, task.grid_id, task.state) == ("door-gate-3", 1, "open")
    assert "门被强行打开：3号门（door-gate-3）" in task.detail
    assert "door forced open: 3号门 (door-gate-3)" in task.detail
    assert told(effects) == [(GRID1_WORKER, "grid_worker", "door_alert")]
    [note] = effects.notifications
    assert note.message_zh.startswith("门被强行打开")
    assert note.message_en.startswith("door forced open")
    assert note.task_id == task.id
    assert note.ack_path == f"https://hub.example/api/v1/tasks/{task.id}/acknowledge"
    assert note.grid_name == "第一网格"

    again = await feed.events(
        T0 + timedelta(minutes=1),
        ("door-gate-3", "door_forced", {}),
        ("door-gate-3", "door_held_open", {"seconds": 120}),
    )
    assert again.notifications == []
    assert len(await task_rows(community, "door_alert")) == 1

    await finish(community, task.id)
    later = await feed.events(
        T0 + timedelta(hours=1), ("door-gate-3", "door_held_open", {"seconds": 95})
    )
    tasks = await task_rows(community, "door_alert")
    assert len(tasks) == 2
    assert "门长时间未关（95 秒）" in tasks[1].detail
    assert told(later) == [(GRID1_WORKER, "grid_worker", "door_alert")]


async def test_access_log_keeps_every_door_event_in_bulk(community: AsyncEngine) -> None:
    door = DoorHandler(SHANGHAI)
    feed = Feed(community, door)
    await feed.events(
        T0,
        ("door-gate-3", "face_pass", {"person_id": "p-17", "similarity": 0.93}),
        ("door-gate-3", "face_unknown", {"similarity": 0.41}),
        ("door-gate-3", "card_pass", {"card_id": "C0042"}),
        ("door-gate-3", "face_pass", {"person_id": "p-18", "similarity": "high"}),
    )
    async with community.connect() as conn:
        rows, total = await list_access_log(conn, "door-gate-3")
    assert total == 4
    kinds = sorted((r["kind"], r["person_id"], r["card_id"], r["similarity"]) for r in rows)
    assert kinds == [
        ("card_pass", None, "C0042", None),
        ("face_pass", "p-17", None, 0.93),
        ("face_pass", "p-18", None, None),  # kept, its bad similarity counted
        ("face_unknown", None, None, 0.41),
    ]
    assert door.problems.counts == {"face_pass: similarity is not a number": 1}
    assert await task_rows(community, "door_alert") == []


# --- alerts ----------------------------------------------------------------------------


async def test_alert_falls_back_to_the_backup_when_the_grid_worker_is_away(
    community: AsyncEngine,
) -> None:
    async with community.begin() as conn:
        await conn.execute(
            sa.update(schema.workers)
            .where(schema.workers.c.id == GRID1_WORKER)
            .values(active=False)
        )
        found = await notify_grid_worker(
            conn,
            grid_id=1,
            kind="door_alert",
            message_zh="测试",
            message_en="test",
            task_id=None,
            household_id=None,
            device_id="door-gate-3",
            now=T0,
        )
        assert [(n.worker_id, n.tier) for n in found] == [(BACKUP, "backup_worker")]
        assert found[0].address == "3号门"
        nobody = await notify_grid_worker(
            conn,
            grid_id=None,
            kind="door_alert",
            message_zh="测试",
            message_en="test",
            task_id=None,
            household_id=None,
            device_id=None,
            now=T0,
        )
        assert nobody == []
        home = await notify_grid_worker(
            conn,
            grid_id=None,
            kind="leak_check",
            message_zh="测试",
            message_en="test",
            task_id=7,
            household_id=4,
            device_id="wm-9",
            now=T0,
        )
        assert [(n.worker_id, n.household_id, n.lives_alone) for n in home] == [
            (GRID2_WORKER, 4, True)
        ]
        assert home[0].resident_name == "刘建国"


# --- parcels ---------------------------------------------------------------------------


def deposit(household_id: int, parcel_id: str, compartment: int) -> tuple[str, str, dict[str, Any]]:
    data = {"compartment": compartment, "household_id": household_id, "parcel_id": parcel_id}
    return ("locker-1", "parcel_deposited", data)


async def test_overdue_parcel_of_a_lone_resident_becomes_one_delivery_task(
    community: AsyncEngine,
) -> None:
    feed = Feed(community, ParcelHandler(FacilitySettings(), SHANGHAI))
    await feed.events(
        T0,
        deposit(1, "SF1001", 3),  # household 1: lives alone
        deposit(2, "SF1002", 4),  # household 2: does not
        deposit(3, "SF1003", 5),  # household 3: lives alone, but picks it up
    )
    await feed.events(
        T0 + timedelta(hours=5),
        ("locker-1", "parcel_picked_up", {"compartment": 5, "parcel_id": "SF1003"}),
    )
    assert (await feed.tick(T0 + timedelta(hours=47, minutes=59))).notifications == []
    assert await task_rows(community, "delivery") == []

    effects = await feed.tick(T0 + timedelta(hours=48))
    [task] = await task_rows(community, "delivery")
    assert (task.household_id, task.grid_id, task.device_id) == (1, 1, None)
    assert task.detail.startswith("代收包裹送上门")
    assert "deliver the parcel to the door" in task.detail
    assert "locker-1" in task.detail and "第 3 格" in task.detail
    assert told(effects) == [(GRID1_WORKER, "grid_worker", "delivery")]
    assert effects.notifications[0].household_id == 1

    assert (await feed.tick(T0 + timedelta(hours=49))).notifications == []
    assert len(await task_rows(community, "delivery")) == 1  # once per parcel
    async with community.connect() as conn:
        overdue, _ = await list_parcels(conn, state="overdue")
        picked, _ = await list_parcels(conn, state="picked_up")
    assert sorted((p["parcel_id"], p["delivery_task_id"]) for p in overdue) == [
        ("SF1001", task.id),
        ("SF1002", None),
    ]
    assert [p["parcel_id"] for p in picked] == ["SF1003"]


async def test_overdue_window_is_configurable_and_bad_deposits_are_counted(
    community: AsyncEngine,
) -> None:
    handler = ParcelHandler(FacilitySettings(parcel_overdue_h=6), SHANGHAI)
    feed = Feed(community, handler)
    await feed.events(
        T0,
        deposit(4, "YT2001", 1),
        deposit(999, "YT2002", 2),  # no such household: kept, not delivered
        ("locker-1", "parcel_deposited", {"compartment": 9}),  # no parcel id: ignored
        deposit(4, "YT2001", 1),  # the same parcel again
    )
    effects = await feed.tick(T0 + timedelta(hours=6))
    assert told(effects) == [(GRID2_WORKER, "grid_worker", "delivery")]
    async with community.connect() as conn:
        rows, total = await list_parcels(conn)
    assert total == 2
    assert {(r["parcel_id"], r["household_id"], r["grid_id"]) for r in rows} == {
        ("YT2001", 4, 2),
        ("YT2002", None, 1),  # in the locker's grid
    }
    assert handler.problems.counts == {
        "parcel_deposited: unknown household 999": 1,
        "parcel_deposited: no parcel_id or compartment": 1,
        "parcel_deposited: parcel already waiting": 1,
    }


async def test_compartment_left_open_is_a_door_alert_for_the_grid_worker(
    community: AsyncEngine,
) -> None:
    feed = Feed(community, ParcelHandler(FacilitySettings(), SHANGHAI))
    effects = await feed.events(T0, ("locker-1", "door_left_open", {"compartment": 7}))
    [task] = await task_rows(community, "door_alert")
    assert task.device_id == "locker-1"
    assert "快递柜第 7 格门未关" in task.detail
    assert told(effects) == [(GRID1_WORKER, "grid_worker", "door_alert")]
    again = await feed.events(T0, ("locker-1", "door_left_open", {"compartment": 8}))
    assert again.notifications == []


class Receiver:
    """A real HTTP server on a free port answering every POST with ``status``."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        path = lines[0].split(" ")[1]
        length = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length")
        )
        body = json.loads(await reader.readexactly(length))
        self.requests.append((path, body))
        writer.write(
            f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()


def webhook_settings(port: int) -> FacilitySettings:
    template = f"http://127.0.0.1:{port}/households/{{household_id}}/parcels/{{parcel_id}}"
    hook = ParcelWebhookSettings(url_template=template, attempts=2, backoff_s=0, timeout_s=5)
    return FacilitySettings(parcel_webhook=hook)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver(200) as r:
        yield r


async def notice_states(engine: AsyncEngine) -> dict[str, tuple[str, int, str]]:
    async with engine.connect() as conn:
        rows, _ = await list_parcels(conn)
    return {
        r["parcel_id"]: (r["notice_state"], r["notice_attempts"], r["notice_error"]) for r in rows
    }


async def test_household_is_told_by_webhook_after_commit(
    community: AsyncEngine, receiver: Receiver
) -> None:
    handler = ParcelHandler(webhook_settings(receiver.port), SHANGHAI)
    feed = Feed(community, handler)
    try:
        await feed.events(T0, deposit(1, "JD 3001/a", 6))
        assert receiver.requests == []  # ingest's transaction sends nothing
        assert await notice_states(community) == {"JD 3001/a": ("pending", 0, "")}
        await feed.tick(T0 + timedelta(seconds=30))
        await handler.drain()
        [(path, body)] = receiver.requests
        assert path == "/households/1/parcels/JD%203001%2Fa"
        assert body["household_id"] == 1
        assert body["compartment"] == 6
        assert body["place"] == "3号楼快递柜"
        assert "第 6 格" in body["message_zh"]
        await feed.tick(T0 + timedelta(seconds=60))  # writes the outcome back
        assert await notice_states(community) == {"JD 3001/a": ("sent", 1, "")}
        await feed.tick(T0 + timedelta(seconds=90))
        await handler.drain()
        assert len(receiver.requests) == 1  # sent once
    finally:
        await handler.aclose()


async def test_failing_household_webhook_is_recorded_and_never_blocks_ingest(
    community: AsyncEngine,
) -> None:
    async with Receiver(500) as failing:
        handler = ParcelHandler(webhook_settings(failing.port), SHANGHAI)
        feed = Feed(community, handler)
        try:
            await feed.events(T0, deposit(3, "EMS4001", 2))
            await feed.tick(T0 + timedelta(seconds=30))
            await handler.drain()
            # ingest goes on while the receiver fails
            await feed.events(T0 + timedelta(seconds=40), deposit(2, "EMS4002", 3))
            await feed.tick(T0 + timedelta(seconds=60))
            await handler.drain()
            await feed.tick(T0 + timedelta(seconds=90))
            states = await notice_states(community)
            assert states["EMS4001"] == ("failed", 2, "HTTP 500")
            assert states["EMS4002"] == ("failed", 2, "HTTP 500")
            assert len(failing.requests) == 4  # two attempts each, then given up
        finally:
            await handler.aclose()


async def test_parcel_picked_up_before_its_notice_went_out_is_not_announced(
    community: AsyncEngine, receiver: Receiver
) -> None:
    handler = ParcelHandler(webhook_settings(receiver.port), SHANGHAI)
    feed = Feed(community, handler)
    try:
        await feed.events(
            T0,
            deposit(1, "ZT5001", 1),
            ("locker-1", "parcel_picked_up", {"compartment": 1, "parcel_id": "ZT5001"}),
        )
        await feed.tick(T0 + timedelta(seconds=30))
        await handler.drain()
        assert receiver.requests == []
        assert await notice_states(community) == {"ZT5001": ("skipped", 0, "")}
    finally:
        await handler.aclose()


# --- water meters ----------------------------------------------------------------------


def flow(
    device_id: str, at: datetime, flow_m3h: float
) -> tuple[str, str, datetime, dict[str, Any]]:
    return (device_id, "water_reading", at, {"total_m3": 12.5, "flow_m3h": flow_m3h})


async def test_a_night_without_zero_flow_files_one_leak_check(community: AsyncEngine) -> None:
    water = WaterHandler(FacilitySettings(), SHANGHAI)
    feed = Feed(community, water)
    night = [local(2025, 3, 4, h, 10) for h in (1, 2, 3, 4)]
    # wm-7 never stops; wm-8 stops once; readings come in two batches, as telemetry does
    await feed.readings([flow("wm-7", t, 0.02) for t in night[:2]] + [flow("wm-8", night[0], 0.3)])
    await feed.readings(
        [flow("wm-7", t, 0.03) for t in night[2:]]
        + [flow("wm-8", night[1], 0.0), flow("wm-8", night[2], 0.2), flow("wm-8", night[3], 0.1)]
        # outside the window: ignored
        + [flow("wm-8", local(2025, 3, 4, 5, 30), 0.5), flow("wm-7", local(2025, 3, 4, 0, 59), 0)]
    )
    assert (await feed.tick(local(2025, 3, 4, 4, 59))).notifications == []

    effects = await feed.tick(local(2025, 3, 4, 5, 1))
    [task] = await task_rows(community, "leak_check")
    assert (task.device_id, task.household_id, task.grid_id) == ("wm-7", 1, 1)
    assert task.detail.startswith("疑似漏水")
    assert "suspected leak" in task.detail
    assert "4 次读数" in task.detail
    assert told(effects) == [(GRID1_WORKER, "grid_worker", "leak_check")]

    assert (await feed.tick(local(2025, 3, 4, 5, 2))).notifications == []
    assert len(await task_rows(community, "leak_check")) == 1
    async with community.connect() as conn:
        nights = {
            r.device_id: (r.readings, r.zero_readings, r.verdict)
            for r in await conn.execute(sa.select(schema.water_nights))
        }
    assert nights == {"wm-7": (4, 0, "leak"), "wm-8": (4, 1, "no_leak")}

    # a reading of that night arriving after the verdict does not reopen it
    await feed.readings([flow("wm-8", night[3], 0.4)])
    assert water.late_readings == 1


async def test_too_few_readings_prove_nothing_and_the_window_is_configurable(
    community: AsyncEngine,
) -> None:
    settings = FacilitySettings(night_start=time(23), night_end=time(4), night_min_readings=2)
    water = WaterHandler(settings, SHANGHAI)
    feed = Feed(community, water)
    await feed.readings(
        [
            flow("wm-7", local(2025, 3, 3, 23, 30), 0.1),  # wm-7: one reading only
            flow("wm-9", local(2025, 3, 3, 23, 30), 0.1),  # wm-9: across midnight
            flow("wm-9", local(2025, 3, 4, 3, 30), 0.2),
            ("wm-9", "water_reading", local(2025, 3, 4, 3, 40), {"flow_m3h": "lots"}),
        ]
    )
    effects = await feed.tick(local(2025, 3, 4, 4, 0))
    [task] = await task_rows(community, "leak_check")
    assert (task.device_id, task.grid_id) == ("wm-9", 2)
    assert told(effects) == [(GRID2_WORKER, "grid_worker", "leak_check")]
    assert water.problems.counts == {"water_reading: flow_m3h is not a number >= 0": 1}
    async with community.connect() as conn:
        query = sa.select(schema.water_nights.c.device_id, schema.water_nights.c.verdict)
        verdicts = {r.device_id: r.verdict for r in await conn.execute(query)}
    assert verdicts == {"wm-7": "too_few", "wm-9": "leak"}


# --- bins ------------------------------------------------------------------------------


def bin_reading(device_id: str, **values: float) -> tuple[str, str, dict[str, Any]]:
    return (device_id, "bin_reading", dict(values))


async def test_full_bin_gets_one_collection_task(community: AsyncEngine) -> None:
    feed = Feed(community, BinHandler(FacilitySettings(), SHANGHAI))
    assert (
        await feed.events(T0, bin_reading("bin-1", fill_pct=79, temperature_c=20, tilt_deg=0))
    ).notifications == []
    assert await task_rows(community, "collection") == []
    await feed.events(T0, bin_reading("bin-1", fill_pct=85, temperature_c=20, tilt_deg=0))
    await feed.events(T0, bin_reading("bin-1", fill_pct=90, temperature_c=21, tilt_deg=0))
    [task] = await task_rows(community, "collection")
    assert (task.device_id, task.grid_id) == ("bin-1", 1)
    assert task.detail.startswith("垃圾桶已满（85%）")
    assert await task_rows(community, "bin_alert") == []


async def test_hot_then_tipped_bin_alerts_the_grid_worker_for_each_danger(
    community: AsyncEngine,
) -> None:
    feed = Feed(community, BinHandler(FacilitySettings(), SHANGHAI))
    hot = await feed.events(T0, bin_reading("bin-2", fill_pct=30, temperature_c=65, tilt_deg=2))
    [task] = await task_rows(community, "bin_alert")
    assert (task.device_id, task.grid_id) == ("bin-2", 2)
    assert "垃圾桶温度异常（65°C），疑似起火" in task.detail
    assert "fire risk" in task.detail
    assert told(hot) == [(GRID2_WORKER, "grid_worker", "bin_alert")]
    assert "疑似起火" in hot.notifications[0].message_zh

    still_hot = await feed.events(T0, bin_reading("bin-2", temperature_c=70))
    assert still_hot.notifications == []
    tipped = await feed.events(T0, bin_reading("bin-2", temperature_c=70, tilt_deg=45))
    assert told(tipped) == [(GRID2_WORKER, "grid_worker", "bin_alert")]
    assert tipped.notifications[0].message_zh.startswith("垃圾桶倾倒（45°）")
    [task] = await task_rows(community, "bin_alert")  # still one task, now naming both
    assert "疑似起火" in task.detail and "垃圾桶倾倒" in task.detail
    assert (await feed.events(T0, bin_reading("bin-2", tilt_deg=50))).notifications == []


async def test_only_the_newest_reading_of_a_batch_counts(community: AsyncEngine) -> None:
    feed = Feed(community, BinHandler(FacilitySettings(), SHANGHAI))
    await feed.readings(
        [
            ("bin-1", "bin_reading", T0, {"fill_pct": 95.0}),
            ("bin-1", "bin_reading", T0 + timedelta(minutes=5), {"fill_pct": 5.0}),  # emptied
        ]
    )
    assert await task_rows(community, "collection") == []


# --- together --------------------------------------------------------------------------


async def test_all_facility_handlers_share_one_router(community: AsyncEngine) -> None:
    router = DeviceEventRouter(facility_handlers(FacilitySettings(), SHANGHAI))
    batch = [
        Event(1, "door-gate-3", "door_forced", Lane.NORMAL, T0, {}),
        Event(2, "bin-2", "bin_reading", Lane.TELEMETRY, T0, {"fill_pct": 99.0}),
        Event(3, "locker-1", "parcel_deposited", Lane.NORMAL, T0, deposit(6, "X1", 1)[2]),
        Event(4, "cb100-77626", "heartbeat", Lane.TELEMETRY, T0, {}),
        Event(5, "wm-7", "water_reading", Lane.TELEMETRY, local(2025, 3, 4, 2), {"flow_m3h": 1.0}),
    ]
    async with community.begin() as conn:
        effects = await router.on_events(conn, batch, T0)
    assert told(effects) == [(GRID1_WORKER, "grid_worker", "door_alert")]
    async with community.begin() as conn:
        later = await router.on_tick(conn, T0 + timedelta(days=3))
    assert told(later) == [(GRID2_WORKER, "grid_worker", "delivery")]  # household 6 lives alone
    assert len(await task_rows(community, "collection")) == 1


async def test_hostile_payload_values_are_counted_not_crashing_ingest(
    community: AsyncEngine,
) -> None:
    parcels_ = ParcelHandler(FacilitySettings(), SHANGHAI)
    doors = DoorHandler(SHANGHAI)
    router = DeviceEventRouter([parcels_, doors, WaterHandler(), BinHandler()])
    huge = 2**70
    batch = [
        Event(
            1,
            "locker-1",
            "parcel_deposited",
            Lane.NORMAL,
            T0,
            {"compartment": huge, "household_id": 1, "parcel_id": "A"},
        ),
        Event(
            2,
            "locker-1",
            "parcel_deposited",
            Lane.NORMAL,
            T0,
            {"compartment": 1, "household_id": huge, "parcel_id": "B" * 500},
        ),
        Event(3, "door-gate-3", "door_held_open", Lane.NORMAL, T0, {"seconds": huge}),
        Event(4, "wm-7", "water_reading", Lane.TELEMETRY, T0, {"flow_m3h": float("nan")}),
        Event(5, "bin-1", "bin_reading", Lane.TELEMETRY, T0, {"fill_pct": [1], "tilt_deg": None}),
        Event(6, "locker-1", "parcel_picked_up", Lane.NORMAL, T0, {"parcel_id": 7}),
    ]
    async with community.begin() as conn:
        await router.on_events(conn, batch, T0)
    async with community.connect() as conn:
        rows, _ = await list_parcels(conn)
    assert [(r["parcel_id"], r["household_id"]) for r in rows] == [("B" * 64, None)]
    assert parcels_.problems.counts == {
        "parcel_deposited: no parcel_id or compartment": 1,
        "parcel_deposited: household_id is not an id": 1,
        "parcel_picked_up: no parcel_id": 1,
    }
    async with community.connect() as conn:
        logged, _ = await list_access_log(conn, "door-gate-3")
    assert [(r["kind"], r["seconds"]) for r in logged] == [("door_held_open", None)]
    assert await task_rows(community, "collection") == []
