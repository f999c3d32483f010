"""The write gate lets a waiting API write in before ingest's next transaction (issue #11),
on a real SQLite file whose write lock another connection holds."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.db import schema
from hub.db.write_gate import WriteGate
from tests.conftest import wait_until


@pytest.fixture(autouse=True)
def sqlite_only(db_backend: str) -> None:
    """SQLite's one write lock is what the gate is for; the hub does not install it on
    PostgreSQL (HUB_TEST_BACKENDS=postgres would otherwise run these there)."""
    if db_backend != "sqlite":
        pytest.skip("the write gate is SQLite's (hub/app.py installs it only there)")


async def test_ingest_waits_for_a_writer_that_is_waiting_for_the_lock(
    engine: AsyncEngine,
) -> None:
    gate = WriteGate(max_wait_s=30)
    gate.install(engine)
    order: list[str] = []
    path = Path(str(engine.url.database))
    holder = sqlite3.connect(path, isolation_level=None, timeout=1)
    holder.execute("BEGIN IMMEDIATE")  # someone (say, an ingest transaction) holds the lock

    def executed(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("UPDATE households"):
            order.append("api wrote")  # the statement ran: its transaction holds the lock

    sa.event.listen(engine.sync_engine, "after_cursor_execute", executed)

    async def api_write() -> None:
        async with engine.begin() as conn:
            await conn.execute(
                sa.update(schema.households).where(schema.households.c.id == 1).values(notes="x")
            )

    async def ingest_next_transaction() -> None:
        await gate.yield_to_writers()
        order.append("ingest began")

    writer = asyncio.create_task(api_write())
    try:
        await wait_until(lambda: gate.busy, 10, message="the API write waiting for the lock")
        ingest = asyncio.create_task(ingest_next_transaction())
        await asyncio.sleep(0)  # let it reach the gate: it must not pass while the writer waits
        assert order == [] and not ingest.done()
        holder.execute("COMMIT")  # the lock is free: the writer gets it first
        await asyncio.wait_for(asyncio.gather(writer, ingest), 30)
    finally:
        holder.close()
    assert order == ["api wrote", "ingest began"]
    assert gate.yields == 1 and not gate.busy


async def test_the_gate_does_not_hold_ingest_when_nobody_writes(engine: AsyncEngine) -> None:
    gate = WriteGate()
    gate.install(engine)
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(schema.households).where(schema.households.c.id == 1).values(notes="y")
        )
    await asyncio.wait_for(gate.yield_to_writers(), 5)
    assert gate.yields == 0 and not gate.busy


async def test_a_statement_that_fails_before_it_runs_keeps_its_own_error_and_frees_the_gate(
    engine: AsyncEngine,
) -> None:
    """An id beyond SQLite's 64 bits fails while binding; the API turns that OverflowError
    into a 422, so the gate must not replace it (it once raised AttributeError: a 500)."""
    gate = WriteGate(max_wait_s=30)
    gate.install(engine)
    too_large = 2**80
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.update(schema.households)
                .where(schema.households.c.id == too_large)
                .values(notes="x")
            )
    except OverflowError:
        pass
    else:
        raise AssertionError("binding a 2**80 id should fail with OverflowError")
    assert not gate.busy  # the failed write no longer holds ingest back
