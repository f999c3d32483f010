"""The outbox keeps each CB-100 device's frame window with its events (issue #11): a frame
replayed after the dedupe window, or after a restart, is recognised; a failed write does not
mark a frame as recorded. Real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from contract import Lane
from edge.errors import OutboxError
from edge.frame_window import Verdict
from edge.outbox import Outbox


async def test_a_frame_replayed_after_the_dedupe_window_and_a_restart_is_a_replay(
    tmp_path: Path,
) -> None:
    now = [1000.0]
    path = tmp_path / "o.db"
    clocks = {"wall_clock": lambda: now[0], "monotonic": lambda: now[0]}
    async with Outbox(path, dedupe_window_s=60, **clocks) as outbox:
        for seq in (100, 101, 102):
            key = f"d1:{seq}"
            assert outbox.frame_verdict("d1", seq, key) is Verdict.NEW
            assert await outbox.record("d1", "sos", Lane.ALARM, {}, dedupe_key=key, frame_seq=seq)
        # within the dedupe window a copy is a retransmission, answered by record()
        assert outbox.frame_verdict("d1", 101, "d1:101") is Verdict.NEW
        now[0] += 61
        assert outbox.frame_verdict("d1", 101, "d1:101") is Verdict.REPLAY
    now[0] += 3600
    async with Outbox(path, dedupe_window_s=60, **clocks) as outbox:
        assert outbox.frame_verdict("d1", 101, "d1:101") is Verdict.REPLAY
        assert outbox.frame_verdict("d1", 103, "d1:103") is Verdict.NEW
        assert outbox.frame_verdict("d2", 101, "d2:101") is Verdict.NEW  # per device
        assert outbox.frame_verdict("d1", 0, "d1:0") is Verdict.RESTART


async def test_the_window_is_written_in_the_events_transaction(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path, group_commit_s=30) as outbox:
        await outbox.record("d1", "sos", Lane.ALARM, {}, dedupe_key="d1:500", frame_seq=500)
        # on disk at once, beside the row, although the group commit period is 30 s
        with sqlite3.connect(path) as db:
            [(win,)] = db.execute("SELECT win FROM frame_windows WHERE device_id = 'd1'")
        assert win == "500:1"


async def test_a_failed_write_leaves_the_frame_unrecorded(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    now = [1000.0]
    clocks = {"wall_clock": lambda: now[0], "monotonic": lambda: now[0]}
    async with Outbox(path, **clocks) as outbox:
        await outbox.record("d1", "sos", Lane.ALARM, {}, dedupe_key="d1:200", frame_seq=200)
        with sqlite3.connect(path) as db:  # make the next insert fail inside its transaction
            db.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON outbox "
                "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
            )
        with pytest.raises(OutboxError, match="disk on fire"):
            await outbox.record("d1", "sos", Lane.ALARM, {}, dedupe_key="d1:201", frame_seq=201)
        # the button retransmits seq 201: it must still be taken as new
        assert outbox.frame_verdict("d1", 201, "d1:201") is Verdict.NEW
    now[0] += 120  # past the dedupe window
    async with Outbox(path, **clocks) as outbox:
        assert outbox.frame_verdict("d1", 201, "d1:201") is Verdict.NEW
        assert outbox.frame_verdict("d1", 200, "d1:200") is Verdict.REPLAY


async def test_an_unreadable_stored_window_starts_that_device_afresh(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path) as outbox:
        await outbox.record("d1", "sos", Lane.ALARM, {}, dedupe_key="d1:9", frame_seq=900)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE frame_windows SET win = 'garbage'")
    async with Outbox(path) as outbox:
        assert outbox.frame_verdict("d1", 900, "x") is Verdict.NEW
