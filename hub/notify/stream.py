"""The live feed's write side and its wake-up: what the pages' streams send (issue #12).

Every stream event is a row of ``live_feed`` (``hub.db.schema``), so its id survives a hub
restart and a client that reconnects with ``Last-Event-ID`` gets everything after it
(``hub.api.routes.stream``). Case and task changes are written by database triggers in the
transaction that made them; a worker's notifications are written here, as a notifier
channel, right after the case transaction commits: :meth:`WorkerStreams.notify` only queues
them (a notifier must return at once; the dispatch path also publishes "help is coming"),
and one writer task inserts them in batches. (A hub killed before that write loses the
notification's row, not the case's: the page still sees the case.) The queue is bounded
(:data:`QUEUE_SIZE`); a notification that finds it full is dropped, counted and logged.

Streams do not poll the table each on their own: one watcher reads the newest id every
``WATCH_S`` while anybody listens, and :meth:`WorkerStreams.wait_beyond` wakes every stream
at once when it grows; a notification written here wakes them without waiting for it,
and so does news of a change committed by another hub process (:meth:`poke`, called by
``hub.news``): the API process sees what an ingest process or another replica committed
as soon as it is told, and within ``WATCH_S`` if the news is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.db.schema import live_feed, live_feed_triggers
from hub.domain.notification import Notification

log = logging.getLogger(__name__)

#: How often the watcher looks for rows written by other paths (triggers): the worst-case
#: extra delay of a case change on a page.
WATCH_S = 0.25
#: Feed rows older than this are deleted (at start-up, then hourly while anybody listens);
#: a client further behind reloads.
RETENTION = timedelta(days=7)
PRUNE_EVERY_S = 3600.0
QUEUE_SIZE = 10_000


def _feed_time(when: datetime) -> str:
    """``live_feed.at`` as stored: UTC text "YYYY-MM-DD HH:MM:SS" (SQLite's CURRENT_TIMESTAMP;
    migration 0014 gives PostgreSQL the same), so text order is time order on both."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


class WorkerStreams:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._head = 0
        self._grew = asyncio.Event()
        self._listeners = 0
        self._watcher: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[Notification] = asyncio.Queue(QUEUE_SIZE)
        self._writer: asyncio.Task[None] | None = None
        self._pruned_at = 0.0
        self._poked = asyncio.Event()
        self.delivered = 0  # notifications written to the feed
        self.dropped = 0  # notifications that could not be written (logged)

    async def notify(self, notification: Notification) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="live-feed-writer")
        try:
            self._queue.put_nowait(notification)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error(
                "live feed: queue full; a notification for worker %s dropped",
                notification.worker_id,
            )

    async def aclose(self) -> None:
        """Write what is queued, then stop the background tasks (at shutdown)."""
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), 5.0)
        for task in (self._writer, self._watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _write(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 500:
                batch.append(self._queue.get_nowait())
            rows = [
                {
                    "event": "notification",
                    "case_id": n.case_id,
                    "task_id": n.task_id,
                    "worker_id": n.worker_id,
                    "data": n.to_json_obj(),
                }
                for n in batch
            ]
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(sa.insert(live_feed), rows)
            except Exception:
                self.dropped += len(batch)
                log.exception("live feed: %d notifications not written", len(batch))
            else:
                self.delivered += len(batch)
                with contextlib.suppress(Exception):
                    await self.head()  # wakes the streams now; the watcher would anyway
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def head(self) -> int:
        """The newest feed id now (0 for an empty feed)."""
        async with self._engine.connect() as conn:
            newest = (await conn.execute(sa.select(sa.func.max(live_feed.c.id)))).scalar()
        self._advance(int(newest or 0))
        return self._head

    async def oldest(self) -> int:
        async with self._engine.connect() as conn:
            first = (await conn.execute(sa.select(sa.func.min(live_feed.c.id)))).scalar()
        return int(first or 0)

    async def ensure_triggers(self) -> None:
        """Create the case and task triggers if missing (see ``hub.db.schema``)."""
        async with self._engine.begin() as conn:
            for trigger in live_feed_triggers(conn.dialect.name):
                await conn.exec_driver_sql(trigger)

    async def prune(self) -> int:
        self._pruned_at = asyncio.get_running_loop().time()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.delete(live_feed).where(
                    live_feed.c.at < _feed_time(datetime.now(UTC) - RETENTION)
                )
            )
        return int(result.rowcount or 0)

    def _advance(self, newest: int) -> None:
        if newest > self._head:
            self._head = newest
            self._grew.set()
            self._grew = asyncio.Event()

    async def wait_beyond(self, last_id: int, within_s: float) -> bool:
        """Wait until the feed has a row after ``last_id`` (True) or ``within_s`` passes."""
        if self._head > last_id:
            return True
        self._listeners += 1
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name="live-feed-watcher")
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._grew.wait(), within_s)
        finally:
            self._listeners -= 1
        return self._head > last_id

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._listeners > 0:
            try:
                await self.head()
                if loop.time() - self._pruned_at > PRUNE_EVERY_S:
                    self._pruned_at = loop.time()
                    await self.prune()
            except Exception:
                log.exception("live feed watcher: reading the newest id failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), WATCH_S)
            self._poked.clear()

    def poke(self) -> None:
        """Another process committed a change (``hub.news``): read the head now."""
        self._poked.set()
