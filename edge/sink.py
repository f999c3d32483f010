"""The one interface between device drivers and the outbox.

A driver hands every decoded event to an :class:`EventSink` and may tell the device that
the event was received (e.g. the CB-100 link ack) only after ``record`` has returned:
by then the event is durably in the outbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from contract import Lane

log = logging.getLogger(__name__)


class EventSink(Protocol):
    async def record(
        self,
        device_id: str,
        kind: str,
        lane: Lane,
        data: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        frame_seq: int | None = None,
    ) -> bool:
        """Store one event durably. Returns False when ``dedupe_key`` was already recorded
        within the dedupe window (a retransmission): the caller acks it again but it is not
        stored twice. ``frame_seq`` (CB-100) marks the frame's sequence number as recorded
        in the device's replay window, with the event. Raises
        :class:`edge.errors.OutboxError` when it cannot be stored."""
        ...


class RecordPipeline:
    """Starts records in order without waiting for each to commit.

    Why: the outbox commits non-alarm events in groups (``group_commit_ms``), so a driver
    that awaited each record before the next would store at most one reading per group
    commit, whatever the bus delivers. Records are *started* in the
    order given (so the outbox assigns seqs in that order) and at most ``max_in_flight``
    wait for their commit at once; :meth:`start` waits for room beyond that.
    """

    def __init__(self, max_in_flight: int = 256) -> None:
        self._room = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, record: Coroutine[Any, Any, None]) -> None:
        await self._room.acquire()
        task = asyncio.create_task(record)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._room.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("recording a reading failed", exc_info=task.exception())

    @property
    def in_flight(self) -> int:
        return len(self._tasks)
