"""Outbox bounds (issue #5): caps on rows and bytes, the drop order (telemetry, then
normal, never alarms), drop counters that survive a restart, buffer pressure, and a full
disk — a real SQLITE_FULL from ``PRAGMA max_page_count`` — that never stops the writer."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from contract import Lane
from edge.errors import OutboxError
from edge.outbox import Outbox
from edge.outbox_space import OutboxSettings, SpaceReserve, fill_pct

KIND = {Lane.ALARM: "sos", Lane.NORMAL: "service_request", Lane.TELEMETRY: "heartbeat"}


def names(path: Path) -> list[str]:
    """The ``name`` of every row still in the outbox, in seq order."""
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT json_extract(data, '$.name') FROM outbox")]


def meta(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT key, value FROM meta"))


async def put(outbox: Outbox, lane: Lane, name: str, pad: int = 0) -> bool:
    return await outbox.record("d1", KIND[lane], lane, {"name": name, "pad": "x" * pad})


def settings(**kwargs: Any) -> OutboxSettings:
    return OutboxSettings(**{"reserve_bytes": 0, **kwargs})


async def test_row_cap_drops_oldest_telemetry_then_normal_and_never_alarms(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path, group_commit_s=0.01, settings=settings(max_rows=10)) as outbox:
        for i in range(4):
            await put(outbox, Lane.TELEMETRY, f"t{i}")
        for i in range(3):
            await put(outbox, Lane.NORMAL, f"n{i}")
        for i in range(3):
            await put(outbox, Lane.ALARM, f"a{i}")
        assert len(names(path)) == 10  # at the cap, nothing dropped yet

        await put(outbox, Lane.TELEMETRY, "t4")  # the oldest telemetry goes
        assert [n for n in names(path) if n[0] == "t"] == ["t1", "t2", "t3", "t4"]
        for i in range(3, 7):  # each alarm pushes out one telemetry row, oldest first
            await put(outbox, Lane.ALARM, f"a{i}")
        assert [n for n in names(path) if n[0] == "t"] == []
        assert [n for n in names(path) if n[0] == "n"] == ["n0", "n1", "n2"]

        await put(outbox, Lane.ALARM, "a7")  # no telemetry left: the oldest normal goes
        await put(outbox, Lane.NORMAL, "n3")
        assert [n for n in names(path) if n[0] == "n"] == ["n2", "n3"]
        await put(outbox, Lane.TELEMETRY, "t5")  # never displaces a normal event
        assert "t5" not in names(path) and "n2" in names(path)

        for i in range(8, 11):  # the last one goes beyond the cap: alarms are never dropped
            await put(outbox, Lane.ALARM, f"a{i}")
        assert names(path) == [f"a{i}" for i in range(11)]

        status = await outbox.buffer_status()
        assert status["dropped"] == {"telemetry": 6, "normal": 4}
        assert status["fill_pct"] == 110.0
        assert status["buffer_pressure"] is True
        assert status["buffer"]["rows"] == 11
    assert meta(path)["dropped_telemetry"] == "6"
    assert meta(path)["dropped_normal"] == "4"


async def test_drop_counters_and_row_count_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path, group_commit_s=0.01, settings=settings(max_rows=5)) as outbox:
        await asyncio.gather(*(put(outbox, Lane.TELEMETRY, f"t{i}") for i in range(8)))
        assert (await outbox.buffer_status())["dropped"]["telemetry"] == 3
    async with Outbox(path, group_commit_s=0.01, settings=settings(max_rows=5)) as outbox:
        status = await outbox.buffer_status()
        assert status["dropped"] == {"telemetry": 3, "normal": 0}
        assert status["buffer"]["rows"] == 5
        await put(outbox, Lane.TELEMETRY, "t8")  # the counters go on from where they were
        assert (await outbox.buffer_status())["dropped"]["telemetry"] == 4
    assert names(path) == ["t4", "t5", "t6", "t7", "t8"]


async def test_a_lowered_cap_applies_at_open(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path, group_commit_s=0.01, settings=settings()) as outbox:
        await asyncio.gather(*(put(outbox, Lane.TELEMETRY, f"t{i}") for i in range(20)))
        await put(outbox, Lane.NORMAL, "n0")
    async with Outbox(path, settings=settings(max_rows=6)) as outbox:
        assert (await outbox.buffer_status())["dropped"] == {"telemetry": 15, "normal": 0}
    assert names(path) == ["t15", "t16", "t17", "t18", "t19", "n0"]


async def test_pressure_turns_on_at_the_level_and_off_5_points_below(tmp_path: Path) -> None:
    changes: list[bool] = []
    outbox = Outbox(
        tmp_path / "o.db",
        group_commit_s=0.01,
        settings=settings(max_rows=100, pressure_pct=50),
        on_buffer_change=lambda: changes.append(outbox.buffer_pressure),
    )
    async with outbox:
        await asyncio.gather(*(put(outbox, Lane.TELEMETRY, f"t{i}") for i in range(49)))
        assert not outbox.buffer_pressure and changes == []
        await put(outbox, Lane.TELEMETRY, "t49")
        assert outbox.buffer_pressure and changes == [True]
        status = await outbox.buffer_status()
        assert (status["fill_pct"], status["buffer_pressure"]) == (50.0, True)

        seqs = [e.seq for e in await outbox.fetch(Lane.TELEMETRY, 0, 100)]
        assert await outbox.ack(seqs[:5]) == 5  # 45 %: still under pressure (hysteresis)
        assert outbox.buffer_pressure
        assert await outbox.ack(seqs[5:6]) == 1  # 44 %: over
        assert not outbox.buffer_pressure and changes == [True, False]
        assert (await outbox.buffer_status())["buffer_pressure"] is False


async def test_byte_cap_drops_telemetry_and_keeps_normal_events(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    cap = 256 * 1024
    async with Outbox(path, group_commit_s=0.01, settings=settings(max_bytes=cap)) as outbox:
        await asyncio.gather(*(put(outbox, Lane.NORMAL, f"n{i}", pad=1000) for i in range(20)))
        for start in range(0, 400, 10):  # 40 group commits, each over the cap
            await asyncio.gather(
                *(put(outbox, Lane.TELEMETRY, f"t{i}", pad=1000) for i in range(start, start + 10))
            )
        status = await outbox.buffer_status()
    assert status["dropped"]["normal"] == 0
    assert status["dropped"]["telemetry"] > 200
    assert status["buffer"]["bytes"] <= cap * 1.1, status
    left = names(path)
    assert left[:20] == [f"n{i}" for i in range(20)]
    assert left[-1] == "t399"  # the newest telemetry stays, the oldest went
    assert left[20:] == sorted(left[20:], key=lambda n: int(n[1:]))


async def fill_until_full(outbox: Outbox, lane: Lane, prefix: str, limit: int = 2000) -> list[str]:
    """Record events of ``lane`` until one is refused; returns the names that were stored."""
    stored: list[str] = []
    for i in range(limit):
        try:
            await put(outbox, lane, f"{prefix}{i}", pad=500)
        except OutboxError:
            return stored
        stored.append(f"{prefix}{i}")
    raise AssertionError(f"the database never filled up in {limit} records")


async def test_full_disk_drops_oldest_telemetry_refuses_only_what_cannot_fit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path, group_commit_s=0.01, settings=settings()) as outbox:
        for i in range(40):
            await put(outbox, Lane.TELEMETRY, f"t{i}", pad=500)
        await put(outbox, Lane.NORMAL, "n0", pad=500)
        async with outbox._conn.execute("PRAGMA page_count") as cur:
            row = await cur.fetchone()
        assert row is not None
        await outbox._conn.execute(f"PRAGMA max_page_count = {int(row[0]) + 2}")  # "disk" full

        # Telemetry still gets in: the oldest telemetry makes room, not the normal event.
        for i in range(40, 60):
            assert await put(outbox, Lane.TELEMETRY, f"t{i}", pad=500)
        assert outbox.stats["disk_full_errors"] >= 1
        assert "n0" in names(path) and "t59" in names(path) and "t0" not in names(path)

        # Alarms take the telemetry's place, then the normal event's, then are refused.
        alarms = await fill_until_full(outbox, Lane.ALARM, "a")
        assert alarms, "no alarm fitted although there was telemetry to drop"
        assert [n for n in names(path) if n[0] == "a"] == alarms  # none dropped
        assert [n for n in names(path) if n[0] != "a"] == []
        with pytest.raises(OutboxError, match="disk full"):
            await put(outbox, Lane.NORMAL, "n1", pad=500)
        with pytest.raises(OutboxError, match="disk full"):
            await put(outbox, Lane.TELEMETRY, "t99", pad=500)
        assert outbox.disk_full and outbox.buffer_pressure
        status = await outbox.buffer_status()
        assert status["dropped"]["telemetry"] >= 60 and status["dropped"]["normal"] == 1
        assert outbox._flush_task is not None and not outbox._flush_task.done()

        # Space comes back when the hub acks: the next retransmission is stored.
        acked = await outbox.fetch(Lane.ALARM, 0, 5)
        assert await outbox.ack([e.seq for e in acked]) == 5
        assert await put(outbox, Lane.ALARM, "late-sos", pad=500)
        assert await put(outbox, Lane.TELEMETRY, "t100")
        assert "late-sos" in names(path)
        # The file system itself has room (only max_page_count said full): episode over.
        assert not outbox.disk_full


async def test_an_unexpected_error_fails_the_batch_not_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Outbox(tmp_path / "o.db", group_commit_s=0.01, settings=settings()) as outbox:
        real_insert = outbox._insert
        calls = 0

        async def broken_once(*args: Any) -> sqlite3.Error | None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("a bug")
            return await real_insert(*args)

        monkeypatch.setattr(outbox, "_insert", broken_once)
        with pytest.raises(OutboxError, match="unexpected error"):
            await put(outbox, Lane.TELEMETRY, "t0")
        assert await put(outbox, Lane.TELEMETRY, "t1")  # the group-commit task lives on
        assert outbox.stats["write_errors"] == 1


async def test_non_alarms_wait_while_the_spent_reserve_cannot_come_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = [10 * 1024]
    clock = [0.0]
    monkeypatch.setattr("edge.outbox.disk_free_bytes", lambda _d: free[0])
    monkeypatch.setattr("edge.outbox_space.disk_free_bytes", lambda _d: free[0])
    outbox = Outbox(
        tmp_path / "o.db",
        group_commit_s=0.01,
        settings=OutboxSettings(reserve_bytes=64 * 1024),
        monotonic=lambda: clock[0],
    )
    async with outbox:
        reserve = tmp_path / "o.db.reserve"
        assert reserve.stat().st_size == 64 * 1024
        assert outbox._reserve.release()  # as the full-disk path does for an alarm
        assert not reserve.exists()
        clock[0] += 5
        with pytest.raises(OutboxError, match="kept for alarms"):
            await put(outbox, Lane.TELEMETRY, "t0")
        assert outbox.stats["refused_low_disk"] == 1 and outbox.disk_full
        assert await put(outbox, Lane.ALARM, "a0")  # alarms still go in

        free[0] = 10 * 1024 * 1024  # space is back
        clock[0] += 5
        assert await put(outbox, Lane.TELEMETRY, "t1")
        assert reserve.stat().st_size == 64 * 1024
        status = await outbox.buffer_status()
        assert status["buffer"]["reserve_held"] is True
        assert status["buffer"]["disk_full"] is False


async def test_space_reserve_is_real_blocks_and_comes_back_throttled(tmp_path: Path) -> None:
    clock = [0.0]
    reserve = SpaceReserve(tmp_path / "r", 256 * 1024, monotonic=lambda: clock[0])
    assert await reserve.claim()
    assert reserve.path.stat().st_blocks * 512 >= 256 * 1024  # allocated, not sparse
    assert reserve.release() and not reserve.path.exists()
    assert not reserve.release()  # nothing left to give
    assert not await reserve.restore()  # too soon after the release
    clock[0] += 1.5
    assert await reserve.restore() and reserve.path.stat().st_size == 256 * 1024


def test_fill_level_is_against_the_room_the_outbox_may_have() -> None:
    s = OutboxSettings(max_rows=1000, max_bytes=1 << 20)
    assert fill_pct(s, rows=100, used_bytes=0, spare_bytes=0, disk_free=None) == 10.0
    assert fill_pct(s, rows=1, used_bytes=1 << 19, spare_bytes=0, disk_free=10 << 20) == 50.0
    # a nearly full disk shrinks the room: 256 KiB used of 256 + 128 + 128 KiB, not of 1 MiB
    assert fill_pct(s, 1, 1 << 18, spare_bytes=1 << 17, disk_free=1 << 17) == 50.0
    assert fill_pct(s, 1, 1 << 19, spare_bytes=0, disk_free=0) == 100.0
    assert fill_pct(s, 0, 0, 0, disk_free=0) == 100.0


async def test_a_failed_ack_delete_is_retried_with_the_next_ack(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path, group_commit_s=0.01, settings=settings()) as outbox:
        for i in range(3):
            await put(outbox, Lane.NORMAL, f"n{i}")
        seqs = [e.seq for e in await outbox.fetch(Lane.NORMAL, 0, 10)]
        with sqlite3.connect(path) as db:  # sabotage: deletes fail, as on a full disk
            db.execute(
                "CREATE TRIGGER no_delete BEFORE DELETE ON outbox "
                "BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END"
            )
        assert await outbox.ack(seqs[:2]) == 0
        assert names(path) == ["n0", "n1", "n2"]
        with sqlite3.connect(path) as db:
            db.execute("DROP TRIGGER no_delete")
        assert await outbox.ack(seqs[2:]) == 3  # the two from before go with it
        assert names(path) == []
        assert (await outbox.buffer_status())["buffer"]["rows"] == 0
