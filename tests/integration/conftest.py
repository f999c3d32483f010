"""Real parts for the acceptance tests: a private Mosquitto on a free port, the hub and
the edge as real processes (``python -m hub`` / ``python -m edge``), real ptys for the
buttons, the hub's real SQLite file — or, for a test marked ``postgres`` (both back ends,
tests/conftest.py), a database of the session's private PostgreSQL cluster. The hub seeds
it itself; it starts migrated (a copy of the schema the real migration chain built once
per session, ``migrated_schema``), or empty for a test marked ``fresh_database``, and the
hub migrates it as it would in production."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from simulators.postgres import PostgresCluster, run_coroutine
from simulators.stack import Stack
from simulators.worker_phone import stream_events
from tests.conftest import MigratedSchema

_databases = itertools.count(1)


@pytest.fixture
def stack(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    db_backend: str,
    migrated_schema: MigratedSchema,
) -> Iterator[Stack]:
    s = Stack(tmp_path)
    database: str | None = None
    cluster: PostgresCluster | None = None
    if db_backend == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        database = f"stack_{next(_databases)}"
        s.database_url = run_coroutine(cluster.create_database(database))
    migrated_schema.place(s, request)
    s.start_broker()
    try:
        yield s
    finally:
        s.stop()
        for name, proc in [("hub", s.hub), *s.edges.items()]:
            if proc is not None and "Traceback" in proc.log_text():
                print(f"--- {name} log ---\n{proc.log_text()[-4000:]}")
        if cluster is not None and database is not None:
            run_coroutine(cluster.drop_database(database))


@contextlib.asynccontextmanager
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.hub_url, headers=stack.headers(), timeout=10
    ) as client:
        yield client


class WorkerStream:
    """Reads one worker's SSE stream in the background, collecting notifications."""

    def __init__(self, client: httpx.AsyncClient, worker_id: int) -> None:
        self.worker_id = worker_id
        self.client = client
        self.notifications: list[dict[str, Any]] = []
        self.ready = asyncio.Event()

    async def run(self) -> None:
        async for event, data in stream_events(self.client, self.worker_id):
            if event == "ready":
                self.ready.set()
            elif event == "notification":
                self.notifications.append(data)


@contextlib.asynccontextmanager
async def worker_stream(client: httpx.AsyncClient, worker_id: int) -> AsyncIterator[WorkerStream]:
    stream = WorkerStream(client, worker_id)
    task = asyncio.create_task(stream.run())
    try:
        await asyncio.wait_for(stream.ready.wait(), 10)
        yield stream
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await task


def hub_db(stack: Stack) -> sqlite3.Connection:
    assert stack.database_url is None, "hub_db() is SQLite's; query() serves both"
    return sqlite3.connect(stack.workdir / "hub" / "hub.db", timeout=10)


def query(stack: Stack, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (``?`` placeholders) from the hub's database, whichever it is."""
    if stack.database_url is not None:
        return run_coroutine(_pg_query(stack.database_url, sql, params))
    db = hub_db(stack)
    try:
        return list(db.execute(sql, params))
    finally:
        db.close()


async def _pg_query(url: str, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    numbers = itertools.count(1)
    numbered = re.sub(r"\?", lambda _m: f"${next(numbers)}", sql)
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(row) for row in await conn.fetch(numbered, *params)]
    finally:
        await conn.close()


def placement(stack: Stack, device_id: str) -> tuple[int, int, int]:
    """(household, grid, on-duty primary grid worker) of a seeded device, from the hub DB."""
    [(household, grid)] = query(
        stack,
        "SELECT d.household_id, h.grid_id FROM devices d JOIN households h "
        "ON h.id = d.household_id WHERE d.id = ?",
        device_id,
    )
    [(worker,)] = query(
        stack, "SELECT DISTINCT worker_id FROM shifts WHERE grid_id = ? AND role = 'primary'", grid
    )
    return household, grid, worker
