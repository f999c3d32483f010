"""What the notification channels read from and write to the database.

* :class:`WorkerPhones`: a worker's phone number, read when an SMS is sent (so a changed
  number is used at once);
* :class:`DeliveryLog`: one ``notification_deliveries`` row per delivery outcome, written
  after the notification went out (never in the way of the worker's phone), and
  :func:`list_deliveries`, which the API serves so failed deliveries are visible.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.db.schema import notification_deliveries, workers
from hub.notify.http import MAX_ERROR_CHARS, DeliveryOutcome


class WorkerPhones:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def phone_of(self, worker_id: int) -> str | None:
        async with self._engine.connect() as conn:
            query = sa.select(workers.c.phone).where(workers.c.id == worker_id)
            phone: str | None = (await conn.execute(query)).scalar()
        return phone


class DeliveryLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, outcome: DeliveryOutcome) -> None:
        n = outcome.notification
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.insert(notification_deliveries).values(
                    at=outcome.at,
                    channel=outcome.channel,
                    state="sent" if outcome.delivered else "failed",
                    case_id=n.case_id,
                    task_id=n.task_id,
                    worker_id=n.worker_id,
                    tier=n.tier,
                    kind=n.kind,
                    attempts=outcome.attempts,
                    error=outcome.error[:MAX_ERROR_CHARS],
                )
            )


async def list_deliveries(
    conn: AsyncConnection,
    *,
    state: str | None = None,
    channel: str | None = None,
    case_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Newest first."""
    t = notification_deliveries
    query = sa.select(t)
    if state is not None:
        query = query.where(t.c.state == state)
    if channel is not None:
        query = query.where(t.c.channel == channel)
    if case_id is not None:
        query = query.where(t.c.case_id == case_id)
    rows = await conn.execute(query.order_by(t.c.id.desc()).limit(limit).offset(offset))
    return [dict(r) for r in rows.mappings()]
