"""Outbox: durability, group commit, dedupe across restarts, lanes, acks. Real SQLite files."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from contract import Lane
from edge.outbox import Outbox


def rows(path: Path) -> list[tuple[int, int, str]]:
    with sqlite3.connect(path) as db:
        return list(db.execute("SELECT seq, lane, kind FROM outbox ORDER BY seq"))


async def test_alarm_is_on_disk_when_record_returns(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db", group_commit_s=30) as outbox:
        assert await outbox.record("d1", "sos", Lane.ALARM, {"frame_seq": 1})
        # another connection sees it although the group commit period is 30 s
        assert rows(tmp_path / "o.db") == [(1, 0, "sos")]


async def test_group_commit_settles_all_waiters(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db", group_commit_s=0.05) as outbox:
        results = await asyncio.gather(
            *(outbox.record(f"d{i}", "heartbeat", Lane.TELEMETRY, {"i": i}) for i in range(50))
        )
        assert all(results)
        assert len(rows(tmp_path / "o.db")) == 50
        assert (await outbox.depth())["telemetry"] == 50


async def test_dedupe_within_window_survives_restart(tmp_path: Path) -> None:
    now = [1000.0]
    path = tmp_path / "o.db"
    async with Outbox(path, wall_clock=lambda: now[0], monotonic=lambda: now[0]) as outbox:
        assert await outbox.record("d1", "sos", Lane.ALARM, {}, dedupe_key="d1:7")
        assert not await outbox.record("d1", "sos", Lane.ALARM, {}, dedupe_key="d1:7")
        incarnation = outbox.incarnation
    now[0] += 30
    async with Outbox(path, wall_clock=lambda: now[0], monotonic=lambda: now[0]) as outbox:
        assert outbox.incarnation == incarnation
        assert not await outbox.record("d1", "sos", Lane.ALARM, {}, dedupe_key="d1:7")
        now[0] += 31  # 61 s after the first: a new press that reuses the seq
        assert await outbox.record("d1", "sos", Lane.ALARM, {}, dedupe_key="d1:7")
        assert outbox.stats["duplicates"] == 1  # this instance saw one
    assert len(rows(path)) == 2


async def test_wall_clock_jumps_neither_reopen_nor_close_the_dedupe_window(tmp_path: Path) -> None:
    wall, mono = [1000.0], [50.0]
    path = tmp_path / "o.db"
    async with Outbox(path, wall_clock=lambda: wall[0], monotonic=lambda: mono[0]) as outbox:
        assert await outbox.record("d1", "hb", Lane.TELEMETRY, {}, dedupe_key="d1:9")
        wall[0] += 7200  # NTP steps the clock two hours ahead; 1 s really passed
        mono[0] += 1
        assert not await outbox.record("d1", "hb", Lane.TELEMETRY, {}, dedupe_key="d1:9")
        wall[0] -= 3 * 3600  # and then three hours back
        assert not await outbox.record("d1", "hb", Lane.TELEMETRY, {}, dedupe_key="d1:9")
        mono[0] += 60  # a minute really passed: a new frame that reuses the seq
        assert await outbox.record("d1", "hb", Lane.TELEMETRY, {}, dedupe_key="d1:9")
    assert len(rows(path)) == 2


async def test_duplicate_answers_only_after_the_first_copy_is_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path, group_commit_s=0.2) as outbox:
        first = asyncio.create_task(
            outbox.record("d1", "heartbeat", Lane.TELEMETRY, {}, dedupe_key="d1:9")
        )
        await asyncio.sleep(0)  # the first copy is now waiting for its group commit
        assert not await outbox.record("d1", "heartbeat", Lane.TELEMETRY, {}, dedupe_key="d1:9")
        assert rows(path) == [(1, 2, "heartbeat")]  # on disk by the time the copy returned
        assert await first


async def test_fetch_by_lane_and_ack(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db", group_commit_s=0.01) as outbox:
        for i in range(5):
            await outbox.record("d", "heartbeat", Lane.TELEMETRY, {"i": i})
        await outbox.record("d", "sos", Lane.ALARM, {})
        alarms = await outbox.fetch(Lane.ALARM, 0, 10)
        assert [e.kind for e in alarms] == ["sos"]
        tele = await outbox.fetch(Lane.TELEMETRY, 0, 3)
        assert [e.data["i"] for e in tele] == [0, 1, 2]
        more = await outbox.fetch(Lane.TELEMETRY, tele[-1].seq, 10)
        assert [e.data["i"] for e in more] == [3, 4]
        assert await outbox.ack([e.seq for e in tele] + [alarms[0].seq]) == 4
        assert await outbox.depth() == {"alarm": 0, "normal": 0, "telemetry": 2}


async def test_new_database_gets_new_incarnation(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "a.db") as a, Outbox(tmp_path / "b.db") as b:
        assert a.incarnation and b.incarnation and a.incarnation != b.incarnation


async def test_write_failure_raises_and_releases_dedupe_key(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path) as outbox:
        with sqlite3.connect(path) as db:  # sabotage: the table disappears under us
            db.execute("DROP TABLE outbox")
        from edge.errors import OutboxError

        with pytest.raises(OutboxError):
            await outbox.record("d", "sos", Lane.ALARM, {}, dedupe_key="d:1")
        assert outbox.stats["write_errors"] == 1
        assert not outbox._is_duplicate("d:1", 0)


WRITER = """
import asyncio, sys
from contract import Lane
from edge.outbox import Outbox

async def main():
    async with Outbox(sys.argv[1], group_commit_s=0.02) as outbox:
        async def one(i):
            lane = Lane.ALARM if i % 10 == 0 else Lane.TELEMETRY
            await outbox.record("d", "sos" if lane == Lane.ALARM else "heartbeat", lane, {"i": i})
            print(i, flush=True)

        i = 0
        while True:  # bursts of 50 concurrent records, as from several busy buses
            await asyncio.gather(*(one(i + k) for k in range(50)))
            i += 50

asyncio.run(main())
"""


def test_kill_9_loses_no_recorded_event(tmp_path: Path) -> None:
    """Every event whose record() returned before SIGKILL is in the database afterwards."""
    path = tmp_path / "o.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    confirmed = []
    for line in proc.stdout:
        confirmed.append(int(line))
        if len(confirmed) >= 2000:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with sqlite3.connect(path) as db:
        stored = {int(r[0]) for r in db.execute("SELECT json_extract(data, '$.i') FROM outbox")}
    assert set(confirmed) <= stored
