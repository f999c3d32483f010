"""Synchronous reads (and a few writes) of a hub database by URL, SQLite or PostgreSQL.

For the fault rigs, the acceptance tests and the benchmarks, which are synchronous code
(or run their own event loop) but must look into a hub's database on either back end. One
private event loop in a daemon thread owns the async engine, so the same object serves a
plain function and a coroutine alike (a call from inside a running loop blocks that loop
for the length of the query, which for a test's check is what is wanted).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

T = TypeVar("T")
TIMEOUT_S = 60.0


class HubDatabase:
    def __init__(self, url: str) -> None:
        self.url = url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        # NullPool: no connection outlives a call, so a hub killed and restarted, or a
        # database server restarted, never leaves this reader holding a dead one.
        self._engine: AsyncEngine = create_async_engine(url, poolclass=NullPool)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(TIMEOUT_S)

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """The rows of one query (``:name`` parameters)."""

        async def query() -> list[tuple[Any, ...]]:
            async with self._engine.connect() as conn:
                result = await conn.execute(sa.text(sql), dict(params or {}))
                return [tuple(row) for row in result]

        return self._run(query())

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        found = self.rows(sql, params)
        return found[0][0] if found else None

    def execute(
        self, sql: str, params: list[dict[str, Any]] | dict[str, Any] | None = None
    ) -> None:
        """One statement in its own committed transaction (``executemany`` for a list)."""

        async def run() -> None:
            async with self._engine.begin() as conn:
                await conn.execute(sa.text(sql), params or {})

        self._run(run())

    def close(self) -> None:
        async def dispose() -> None:
            await self._engine.dispose()

        self._run(dispose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def json_value(raw: Any) -> Any:
    """A JSON column's value: text on SQLite, already decoded (or text) on PostgreSQL."""
    return json.loads(raw) if isinstance(raw, str | bytes) else raw
