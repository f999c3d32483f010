"""Event uids sort in seq order (issue #13), and migration 0020 rewrites stored ones so a
resend of an event stored before the upgrade is still recognised; real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command

from hub.db.migrate import alembic_config, upgrade_to_head
from hub.ingest import event_uid

T0 = "2026-12-07 01:00:00.000000"


def test_uids_sort_in_seq_order_and_stay_distinct() -> None:
    seqs = [1, 9, 10, 99, 100, 12_345, 10**11, 10**12 - 1]
    uids = [event_uid("edge-a", "inc", s) for s in seqs]
    assert uids == sorted(uids)
    assert event_uid("edge-a", "inc", 42) == "edge-a:inc:000000000042"
    assert len({*uids, event_uid("edge-a", "inc", 10**12)}) == len(seqs) + 1


def _insert(db: Path, uids: list[str]) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT INTO events (uid, edge_id, device_id, kind, lane, occurred_at, "
            "received_at, data) VALUES (?, 'edge-a', 'cb100-1', 'heartbeat', 'telemetry', ?, ?, "
            "'{}')",
            [(uid, T0, T0) for uid in uids],
        )
    conn.close()


def _uids(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [str(r[0]) for r in conn.execute("SELECT uid FROM events ORDER BY id")]
    finally:
        conn.close()


def test_migration_0020_pads_stored_uids_and_back(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    url = f"sqlite+aiosqlite:///{db}"
    config = alembic_config(url)
    command.upgrade(config, "0019")
    old = [
        "edge-a:inc:1",
        "edge-a:inc:10",
        "edge-a:in:c:7",  # an incarnation with a colon: the seq is after the last one
        "edge-a:inc:1234567890123",  # 13 digits: already final
    ]
    _insert(db, old)
    upgrade_to_head(url)
    new = _uids(db)
    assert new == [
        event_uid("edge-a", "inc", 1),
        event_uid("edge-a", "inc", 10),
        event_uid("edge-a", "in:c", 7),
        "edge-a:inc:1234567890123",
    ]
    command.downgrade(config, "0019")
    assert _uids(db) == old
