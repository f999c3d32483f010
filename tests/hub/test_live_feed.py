"""The live feed on a real, migrated database (issue #12; SQLite and PostgreSQL): triggers
write case and task changes, notifications are queued and written, each listener reads only
its own, and on PostgreSQL the feed's ids become visible in commit order."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.db import schema
from hub.domain.escalation import EscalationPolicy
from hub.domain.notification import Notification
from hub.notify.stream import WorkerStreams
from hub.services.cases import CaseService
from hub.services.live_feed import events_after, grids_of_worker
from tests.conftest import wait_until

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
NOTE = Notification(
    case_id=None,
    worker_id=1,
    tier="grid_worker",
    kind="sos",
    resident_name="张桂英",
    address="幸福里小区3号楼2单元301室",
    grid_name="第一网格",
    household_id=1,
    occurred_at=T0,
    message_zh="【一键通求助】",
    message_en="SOS",
    ack_path="",
)


async def households_by_grid(engine: AsyncEngine) -> dict[int, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(schema.households.c.grid_id, schema.households.c.id))
        return {int(grid): int(household) for grid, household in rows}


async def test_case_changes_reach_the_grids_listeners_once_per_page(engine: AsyncEngine) -> None:
    service = CaseService(EscalationPolicy(), ZoneInfo("Asia/Shanghai"))
    homes_now = await households_by_grid(engine)
    grid_a, grid_b = sorted(homes_now)
    async with engine.begin() as conn:
        case_a, _ = await service.open_phone_case(conn, homes_now[grid_a], "", "desk", T0)
        case_b, _ = await service.open_phone_case(conn, homes_now[grid_b], "", "desk", T0)
    async with engine.connect() as conn:
        mine, last = await events_after(
            conn, 0, worker_id=1, grid_ids={grid_a}, notifications=False
        )
        every, _ = await events_after(conn, 0, worker_id=None, grid_ids=None, notifications=False)
    # Opened and dispatched in one transaction: two rows, one event with the present state.
    assert [(e.event, e.data["id"], e.data["state"]) for e in mine] == [
        ("case", case_a, "dispatched")
    ]
    assert mine[0].data["address"] and mine[0].data["grid_name"]
    assert {e.data["id"] for e in every} == {case_a, case_b}
    assert last >= max(e.id for e in every)

    async with engine.begin() as conn:
        await service.acknowledge(conn, case_a, 1, T0)
    async with engine.connect() as conn:
        after, _ = await events_after(
            conn, last, worker_id=1, grid_ids={grid_a}, notifications=False
        )
        assert [(e.data["id"], e.data["state"]) for e in after] == [(case_a, "acknowledged")]
        nothing, _ = await events_after(conn, last, worker_id=9, grid_ids=set(), notifications=True)
        assert nothing == []


async def test_notifications_are_queued_written_and_wake_the_streams(engine: AsyncEngine) -> None:
    streams = WorkerStreams(engine)
    start = await streams.head()
    waiter = asyncio.create_task(streams.wait_beyond(start, 30))
    await streams.notify(NOTE)
    await streams.notify(replace(NOTE, worker_id=2, message_zh="给赵敏"))
    assert await asyncio.wait_for(waiter, 30)
    await wait_until(lambda: streams.delivered == 2, 30, message="both written")
    async with engine.connect() as conn:
        ones, _ = await events_after(conn, start, worker_id=1, grid_ids=set(), notifications=True)
        grids = await grids_of_worker(conn, 1)
    assert [(e.event, e.data["message_zh"]) for e in ones] == [("notification", "【一键通求助】")]
    assert grids  # the demo's worker 1 has a grid
    await streams.aclose()
    assert streams.dropped == 0


async def test_a_full_queue_drops_counts_and_never_blocks(engine: AsyncEngine) -> None:
    streams = WorkerStreams(engine)
    streams._queue = asyncio.Queue(1)
    streams._writer = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.wait_for(streams.notify(NOTE), 1)
    await asyncio.wait_for(streams.notify(NOTE), 1)
    assert streams.dropped == 1
    streams._writer.cancel()
    await asyncio.gather(streams._writer, return_exceptions=True)
    streams._writer = None


async def test_old_rows_are_pruned(engine: AsyncEngine) -> None:
    streams = WorkerStreams(engine)
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.live_feed).values(event="case", case_id=1, at="2000-01-01 00:00:00")
        )
        await conn.execute(sa.insert(schema.live_feed).values(event="case", case_id=2))
    assert await streams.prune() == 1
    assert await streams.oldest() == await streams.head()


async def test_triggers_dropped_by_a_table_rebuild_come_back_at_start_up(
    engine: AsyncEngine,
) -> None:
    # Migration 0011 rebuilds ``tasks`` (SQLite batch mode): run after 0014, it drops the
    # task triggers; the migrated database may well lack them already.
    postgresql = engine.dialect.name == "postgresql"
    async with engine.begin() as conn:
        on_tasks = " ON tasks" if postgresql else ""
        await conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS live_feed_task_insert{on_tasks}")
        if postgresql:
            await conn.exec_driver_sql("DROP TRIGGER live_feed_commit_order ON live_feed")
    streams = WorkerStreams(engine)
    await streams.ensure_triggers()
    await streams.ensure_triggers()  # idempotent
    listing = (
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'live_feed%'"
        if postgresql
        else "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'live_feed%'"
    )
    async with engine.connect() as conn:
        names = {name for (name,) in await conn.exec_driver_sql(listing)}
    assert names == {
        "live_feed_case_insert",
        "live_feed_case_update",
        "live_feed_task_insert",
        "live_feed_task_update",
    } | ({"live_feed_commit_order"} if postgresql else set())


async def test_feed_ids_are_visible_in_commit_order(engine: AsyncEngine) -> None:
    """A stream reads "after Last-Event-ID": a row committed later must never have a smaller
    id than one a reader has already seen. SQLite has one writer; PostgreSQL renumbers the
    feed's rows at commit (hub.db.schema) so that the transaction that inserted first but
    commits last still lands after the other."""
    service = CaseService(EscalationPolicy(), ZoneInfo("Asia/Shanghai"))
    homes = list((await households_by_grid(engine)).values())
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: ids are in commit order by construction")
    async with engine.connect() as slow, engine.connect() as fast:
        await slow.begin()
        slow_case, _ = await service.open_phone_case(slow, homes[0], "", "desk", T0)
        await fast.begin()
        fast_case, _ = await service.open_phone_case(fast, homes[1], "", "desk", T0)
        await fast.commit()
        async with engine.connect() as reader:
            seen, last = await events_after(
                reader, 0, worker_id=None, grid_ids=None, notifications=False
            )
        assert [e.data["id"] for e in seen] == [fast_case]
        await slow.commit()
    async with engine.connect() as reader:
        later, _ = await events_after(
            reader, last, worker_id=None, grid_ids=None, notifications=False
        )
    assert [e.data["id"] for e in later] == [slow_case]
