"""Event uids sort in seq order (issue #13), and migration 0020 rewrites stored ones so a
resend of an event stored before the upgrade is still recognised; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.db.engine import create_engine
from hub.db.migrate import alembic_config, in_thread, upgrade_to_head
from hub.ingest import event_uid

T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


def test_uids_sort_in_seq_order_and_stay_distinct() -> None:
    seqs = [1, 9, 10, 99, 100, 12_345, 10**11, 10**12 - 1]
    uids = [event_uid("edge-a", "inc", s) for s in seqs]
    assert uids == sorted(uids)
    assert event_uid("edge-a", "inc", 42) == "edge-a:inc:000000000042"
    assert len({*uids, event_uid("edge-a", "inc", 10**12)}) == len(seqs) + 1


async def _insert(engine: AsyncEngine, uids: list[str]) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO events (uid, edge_id, device_id, kind, lane, occurred_at, "
                "received_at, data) VALUES (:uid, 'edge-a', 'cb100-1', 'heartbeat', "
                "'telemetry', :at, :at, '{}')"
            ),
            [{"uid": uid, "at": T0} for uid in uids],
        )


async def _uids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT uid FROM events ORDER BY id"))
        return [str(r[0]) for r in rows]


async def test_migration_0020_pads_stored_uids_and_back(unmigrated_database_url: str) -> None:
    url = unmigrated_database_url
    config = alembic_config(url)
    in_thread(command.upgrade, config, "0019")
    old = [
        "edge-a:inc:1",
        "edge-a:inc:10",
        "edge-a:in:c:7",  # an incarnation with a colon: the seq is after the last one
        "edge-a:inc:1234567890123",  # 13 digits: already final
    ]
    engine = create_engine(url)
    try:
        await _insert(engine, old)
        await engine.dispose()  # no session in the way of the migration
        upgrade_to_head(url)
        new = await _uids(engine)
        assert new == [
            event_uid("edge-a", "inc", 1),
            event_uid("edge-a", "inc", 10),
            event_uid("edge-a", "in:c", 7),
            "edge-a:inc:1234567890123",
        ]
        await engine.dispose()
        in_thread(command.downgrade, config, "0019")
        assert await _uids(engine) == old
    finally:
        await engine.dispose()
