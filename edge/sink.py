"""The one interface between device drivers and the outbox.

A driver hands every decoded event to an :class:`EventSink` and may tell the device that
the event was received (e.g. the CB-100 link ack) only after ``record`` has returned:
by then the event is durably in the outbox.
"""

from __future__ import annotations

from typing import Any, Protocol

from contract import Lane


class EventSink(Protocol):
    async def record(
        self,
        device_id: str,
        kind: str,
        lane: Lane,
        data: dict[str, Any],
        *,
        dedupe_key: str | None = None,
    ) -> bool:
        """Store one event durably. Returns False when ``dedupe_key`` was already recorded
        within the dedupe window (a retransmission): the caller acks it again but it is not
        stored twice. Raises :class:`edge.errors.OutboxError` when it cannot be stored."""
        ...
