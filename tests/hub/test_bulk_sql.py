"""The ingest fast path (``bulk_execute``, ``select_rows``) stores and reads back exactly
what SQLAlchemy's ordinary path does, inside the caller's transaction: on SQLite, and on
PostgreSQL through asyncpg's executemany and, for plain inserts of many rows, COPY."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import Event, Lane
from hub.db import bulk
from hub.db.bulk import bulk_execute, select_rows
from hub.db.schema import devices, events
from hub.ingest import Ingest, event_uid
from hub.placement import _DEVICES_BY_ID, _TOUCH, _touch_sqlite

CHINA = timezone(timedelta(hours=8))


@pytest.fixture
def seed_time() -> None:
    """A migrated, empty database (no demo community: the tests count rows)."""
    return None


async def raw(engine: AsyncEngine, sql: str) -> list[tuple[Any, ...]]:
    """Rows read by the driver alone, past SQLAlchemy's types: what is really stored."""
    if engine.dialect.name == "postgresql":
        dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()
    database = engine.url.database
    assert database is not None
    with sqlite3.connect(database) as db:
        return db.execute(sql).fetchall()


def event_row(uid: str, occurred_at: datetime) -> dict[str, Any]:
    return {
        "uid": uid,
        "edge_id": "edge-1",
        "device_id": "cb100-1",
        "kind": "heartbeat",
        "lane": "telemetry",
        "occurred_at": occurred_at,
        "received_at": datetime(2026, 11, 25, 21, 0, 0, 123456, tzinfo=CHINA),
        "data": {"battery_pct": 80, "备注": "客厅"},
    }


T0_ROW = datetime(2026, 1, 2, tzinfo=UTC)
TIMES = [
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: formatting differs
    datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC),
    datetime(2026, 1, 2, 11, 4, 5, 1, tzinfo=CHINA),
]


async def test_inserted_rows_are_byte_for_byte_what_sqlalchemy_stores(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await bulk_execute(
            conn, sa.insert(events), [event_row(f"fast:{i}", t) for i, t in enumerate(TIMES)]
        )
        await conn.execute(
            sa.insert(events), [event_row(f"slow:{i}", t) for i, t in enumerate(TIMES)]
        )
    columns = "edge_id, device_id, kind, lane, occurred_at, received_at, data"
    fast = await raw(engine, f"SELECT {columns} FROM events WHERE uid LIKE 'fast:%' ORDER BY uid")
    slow = await raw(engine, f"SELECT {columns} FROM events WHERE uid LIKE 'slow:%' ORDER BY uid")
    assert fast == slow
    assert len(fast) == len(TIMES)


async def test_touch_updates_like_sqlalchemy(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(devices),
            [{"id": d, "profile": "cb100", "battery_pct": 50} for d in ("fast", "slow")],
        )
        params = {"b_last_seen": TIMES[0], "b_online": True, "b_battery": None, "b_edge": "e1"}
        await bulk_execute(conn, _TOUCH, [{**params, "b_id": "fast"}])
        await conn.execute(_TOUCH, [{**params, "b_id": "slow"}])
    rows = await raw(
        engine, "SELECT last_seen, online, battery_pct, edge_id FROM devices ORDER BY id"
    )
    assert rows[0] == rows[1]
    assert rows[0][2] == 50  # coalesce kept the battery level


async def test_select_rows_reads_like_sqlalchemy(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(devices),
            [
                {"id": "cb100-1", "profile": "cb100", "last_seen": TIMES[2], "retired_at": None},
                {"id": "cb100-2", "profile": "cb100", "last_seen": None, "retired_at": None},
                {"id": "cb100-3", "profile": "cb100", "last_seen": None, "retired_at": TIMES[0]},
            ],
        )
    params = {"ids": ["cb100-1", "cb100-2", "cb100-3", "cb100-9"]}
    with_times = sa.select(devices.c.id, devices.c.last_seen, devices.c.online).where(
        devices.c.id.in_(sa.bindparam("ids", expanding=True)), devices.c.retired_at.is_(None)
    )
    async with engine.connect() as conn:
        fast = sorted(await select_rows(conn, _DEVICES_BY_ID, params))
        slow = sorted(tuple(r) for r in await conn.execute(_DEVICES_BY_ID, params))
        timed = sorted(await select_rows(conn, with_times, params))
        timed_slow = sorted(tuple(r) for r in await conn.execute(with_times, params))
    assert fast == slow and timed == timed_slow
    assert [r[0] for r in fast] == ["cb100-1", "cb100-2"]  # retired and unknown are absent
    assert timed[0][1] == TIMES[2] and timed[0][1].tzinfo is UTC
    assert timed[0][2] is False  # booleans come back as bool


@pytest.mark.parametrize("count", [1, bulk.COPY_FROM_ROWS])  # executemany, and COPY on PG
async def test_fast_path_writes_roll_back_with_the_transaction(
    engine: AsyncEngine, count: int
) -> None:
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:  # the batch is the transaction's first statement
            await bulk_execute(
                conn, sa.insert(events), [event_row(f"gone:{i}", TIMES[0]) for i in range(count)]
            )
            raise RuntimeError("crash before commit")
    assert await raw(engine, "SELECT COUNT(*) FROM events") == [(0,)]


async def test_a_large_plain_insert_stores_what_sqlalchemy_stores(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL this batch goes through COPY; the rows must not differ."""
    # An empty statement cache: the statements other tests of this process prepared (some
    # COPY into other tables) are not the ones this test is about.
    monkeypatch.setattr(bulk, "_driver_statements", {})
    count = bulk.COPY_FROM_ROWS + 3
    async with engine.begin() as conn:
        await bulk_execute(
            conn,
            sa.insert(events),
            [event_row(f"fast:{i:03}", TIMES[i % len(TIMES)]) for i in range(count)],
        )
        await conn.execute(
            sa.insert(events),
            [event_row(f"slow:{i:03}", TIMES[i % len(TIMES)]) for i in range(count)],
        )
    columns = "edge_id, device_id, kind, lane, occurred_at, received_at, data, refused"
    fast = await raw(engine, f"SELECT {columns} FROM events WHERE uid LIKE 'fast:%' ORDER BY uid")
    slow = await raw(engine, f"SELECT {columns} FROM events WHERE uid LIKE 'slow:%' ORDER BY uid")
    assert fast == slow
    assert len(fast) == count
    if engine.dialect.name == "postgresql":
        copies = [p for p in bulk._driver_statements.values() if p.copy_into is not None]
        assert [p.copy_into for p in copies] == [("events", tuple(event_row("x", T0_ROW)))]


async def test_ingests_one_statement_insert_writes_what_the_orm_writes(
    engine: AsyncEngine,
) -> None:
    """``Ingest._insert_new`` on SQLite (one INSERT … SELECT FROM json_each … RETURNING)
    stores byte for byte what the ORM's executemany stores, skips stored uids and a
    repeated seq, and falls back to the statement path for data strict JSON cannot carry.
    (On PostgreSQL ``_insert_new`` takes the statement path, which must agree too.)"""
    received = datetime(2026, 11, 25, 21, 0, 0, 123456, tzinfo=CHINA)
    ingest = Ingest(engine, None, None, None, lambda: received)  # type: ignore[arg-type]
    data = {"battery_pct": 80, "备注": "客厅", "x": 1e300, "list": [1, 2.5]}
    chunk = tuple(
        Event(i + 1, "cb100-1", "heartbeat", Lane.TELEMETRY, t, data) for i, t in enumerate(TIMES)
    )
    async with engine.begin() as conn:
        await bulk_execute(
            conn,
            sa.insert(events),
            [
                {**event_row(event_uid("edge-1", "orm", e.seq), e.occurred_at), "data": data}
                for e in chunk
            ],
        )
        first = await ingest._insert_new(conn, "edge-1", "json", chunk)
        again = await ingest._insert_new(conn, "edge-1", "json", (chunk[0], chunk[0]))
        nan = Event(9, "cb100-1", "reading", Lane.TELEMETRY, TIMES[0], {"v": float("nan")})
        fallback = await ingest._insert_new(conn, "edge-1", "json", (nan,))
    assert first == list(chunk) and again == [] and fallback == [nan]
    columns = "edge_id, device_id, kind, lane, occurred_at, received_at, data, refused"
    orm = await raw(engine, f"SELECT {columns} FROM events WHERE uid LIKE '%:orm:%' ORDER BY uid")
    fast = await raw(engine, f"SELECT {columns} FROM events WHERE uid LIKE '%:json:%' ORDER BY uid")
    assert fast[:3] == orm
    assert fast[3][6] == '{"v":NaN}'  # as json.dumps wrote it before


@pytest.mark.parametrize(
    ("online", "battery"), [(True, None), (False, 7), (None, None), (None, 100)]
)
async def test_placements_one_statement_touch_updates_like_sqlalchemy(
    engine: AsyncEngine, online: bool | None, battery: int | None
) -> None:
    """``hub.placement``'s UPDATE … FROM json_each writes what ``_TOUCH`` writes."""
    if engine.dialect.name != "sqlite":
        pytest.skip("json_each is SQLite's; on PostgreSQL placement runs _TOUCH itself")
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(devices),
            [
                {"id": d, "profile": "cb100", "battery_pct": 50, "online": True}
                for d in ("json", "orm", "other")
            ],
        )
        row = {"b_online": online, "b_battery": battery}
        await _touch_sqlite(conn, {"json": {**row, "b_id": "json"}}, TIMES[2])
        await conn.execute(_TOUCH, [{**row, "b_id": "orm", "b_last_seen": TIMES[2]}])
    rows = await raw(engine, "SELECT id, last_seen, online, battery_pct FROM devices ORDER BY id")
    assert rows[0][1:] == rows[1][1:]
    assert rows[2] == ("other", None, 1, 50)  # untouched
