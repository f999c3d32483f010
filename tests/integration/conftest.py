"""Real parts for the acceptance tests: a private Mosquitto on a free port, the hub and
the edge as real processes (``python -m hub`` / ``python -m edge``), real ptys for the
buttons, the hub's real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulators.stack import Stack
from simulators.worker_phone import stream_events


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    s.start_broker()
    try:
        yield s
    finally:
        s.stop()
        for name, proc in [("hub", s.hub), *s.edges.items()]:
            if proc is not None and "Traceback" in proc.log_text():
                print(f"--- {name} log ---\n{proc.log_text()[-4000:]}")


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
    return sqlite3.connect(stack.workdir / "hub" / "hub.db", timeout=10)


def query(stack: Stack, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    db = hub_db(stack)
    try:
        return list(db.execute(sql, params))
    finally:
        db.close()


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
