"""Lets the API's writes in between ingest's transactions on the same SQLite file.

SQLite has one write lock. A writer that finds it taken sleeps and retries inside
``busy_timeout`` (5 s), polling every 100 ms at most; ingest, working through a large
message in several short transactions, used to take the lock again within a millisecond of
releasing it, so a waiting API write could miss every gap and fail with "database is
locked" (issue #11: a 1 MiB flood of unknown-device events did exactly that).

The gate watches every write statement run through SQLAlchemy on the engine (the API's,
the escalation timer's, the effect dispatcher's; ingest's bulk statements go to the driver
directly and are not seen). While one is executing (most likely waiting for the lock),
:meth:`WriteGate.yield_to_writers` holds ingest back before its next transaction, for at
most ``max_wait_s``; once the statement has run its writer holds the lock, and ingest's
next transaction queues behind it in SQLite's own busy wait. All callbacks run on the
event loop's thread (SQLAlchemy's asyncio layer executes there), so no lock is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLAC")


class WriteGate:
    def __init__(self, max_wait_s: float = 2.0) -> None:
        self.max_wait_s = max_wait_s
        #: id() of each cursor executing a write statement → when it began (monotonic); an
        #: entry older than ``max_wait_s`` is forgotten, so a lost callback costs one wait.
        self._running: dict[int, float] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.yields = 0  # times ingest waited for another writer (for tests and metrics)

    def install(self, engine: AsyncEngine) -> None:
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._before)
        event.listen(sync, "after_cursor_execute", self._after)
        event.listen(sync, "handle_error", self._error)

    @property
    def busy(self) -> bool:
        """Whether another writer's statement is executing right now."""
        return not self._idle.is_set()

    async def yield_to_writers(self) -> None:
        """Wait (bounded) until no other writer's statement is executing."""
        stale = time.monotonic() - self.max_wait_s
        for key in [k for k, began in self._running.items() if began < stale]:
            self._done(key)
        if self._idle.is_set():
            return
        self.yields += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.max_wait_s)

    def _before(self, _conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip()[:6].upper() in _WRITES:
            self._running[id(cursor)] = time.monotonic()
            self._idle.clear()

    def _after(self, _conn: Any, cursor: Any, *_args: Any) -> None:
        self._done(id(cursor))

    def _error(self, context: ExceptionContext) -> None:
        # SQLAlchemy leaves ``cursor`` unset on some error paths (an OverflowError while
        # binding a too-large int, say): look for it on the execution context too, and never
        # raise here, or the caller's own error is replaced by an AttributeError.
        cursor = getattr(context, "cursor", None)
        if cursor is None:
            cursor = getattr(context.execution_context, "cursor", None)
        if cursor is not None:
            self._done(id(cursor))

    def _done(self, key: int) -> None:
        self._running.pop(key, None)
        if not self._running:
            self._idle.set()
