"""The live feed's write side and its wake-up: what the pages' streams send (issue #12).

Every stream event is a row of ``live_feed`` (``hub.db.schema``), so its id survives a hub
restart and a client that reconnects with ``Last-Event-ID`` gets everything after it
(``hub.api.routes.stream``). Case and task changes are written by database triggers in the
transaction that made them; a worker's notifications are written here, as a notifier
channel, right after the case transaction commits. (A hub killed between that commit and
this write loses the notification's row, not the case's: the page still sees the case.)

Streams do not poll the table each on their own: one watcher reads the newest id every
``WATCH_S`` while anybody listens, and :meth:`WorkerStreams.wait_beyond` wakes every stream
at once when it grows; a notification written here wakes them without waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.db.schema import live_feed
from hub.domain.notification import Notification

log = logging.getLogger(__name__)

#: How often the watcher looks for rows written by other paths (triggers): the worst-case
#: extra delay of a case change on a page.
WATCH_S = 0.25
#: Feed rows older than this are deleted at start-up; a client further behind reloads.
RETENTION = "-7 days"


class WorkerStreams:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._head = 0
        self._grew = asyncio.Event()
        self._listeners = 0
        self._watcher: asyncio.Task[None] | None = None
        self.delivered = 0  # notifications written to the feed
        self.dropped = 0  # notifications that could not be written (logged)

    async def notify(self, notification: Notification) -> None:
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(
                    sa.insert(live_feed).values(
                        event="notification",
                        case_id=notification.case_id,
                        task_id=notification.task_id,
                        worker_id=notification.worker_id,
                        data=notification.to_json_obj(),
                    )
                )
        except Exception:
            self.dropped += 1
            log.exception("live feed: a notification for worker %s lost", notification.worker_id)
            return
        self.delivered += 1
        key = result.inserted_primary_key
        if key is not None and key[0] is not None:
            self._advance(int(key[0]))

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

    async def prune(self) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.delete(live_feed).where(live_feed.c.at < sa.func.datetime("now", RETENTION))
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
        while self._listeners > 0:
            try:
                await self.head()
            except Exception:
                log.exception("live feed watcher: reading the newest id failed")
            await asyncio.sleep(WATCH_S)
