"""What happens after a case transaction commits: commands go out, workers are notified.

The case service records commands in the ``commands`` table inside the same transaction
as the case change (a durable command outbox), so a hub crash between commit and publish
loses nothing: :meth:`EffectDispatcher.resend_unconfirmed` publishes every command that
has no result yet, at start-up and every ``retry_s``. The edge executes button feedback
idempotently, so a repeat is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import Command, CommandResult, topics
from hub.db.schema import commands as commands_table
from hub.notify.base import Notifier
from hub.services.cases import Effects

log = logging.getLogger(__name__)

#: A command without a result after this long is given up and marked ``timeout``.
COMMAND_EXPIRY = timedelta(minutes=10)


class CommandPublisher(Protocol):
    connected: bool

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool: ...


class EffectDispatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        publisher: CommandPublisher,
        notifier: Notifier,
        clock: Callable[[], datetime],
        *,
        retry_s: float = 15.0,
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._notifier = notifier
        self._clock = clock
        self._retry_s = retry_s
        #: Set after every dispatch; the escalation timer re-reads its next deadline on it.
        self.cases_changed = asyncio.Event()

    async def dispatch(self, effects: Effects) -> None:
        """Call after the transaction that produced ``effects`` has committed."""
        self.cases_changed.set()
        # People first: the worker's phone must not wait for our bookkeeping write below.
        for notification in effects.notifications:
            await self._notifier.notify(notification)
        sent = [c.command_id for c in effects.commands if self._publish(c)]
        if sent:
            await self._mark_sent(sent)

    def _publish(self, command: Command) -> bool:
        edge_id = command.args.get("edge_id")
        if not isinstance(edge_id, str):
            log.error("command %s has no edge_id; not sent", command.command_id)
            return False
        # edge_id routes the command here; the device's arguments are the rest
        args = {k: v for k, v in command.args.items() if k != "edge_id"}
        wire = Command(command.command_id, command.device_id, command.name, args)
        return self._publisher.publish(topics.commands(edge_id), wire.encode(), qos=1)

    async def _mark_sent(self, command_ids: list[str]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(commands_table)
                .where(commands_table.c.id.in_(command_ids), commands_table.c.state == "pending")
                .values(state="sent", sent_at=self._clock())
            )

    async def on_result(self, result: CommandResult) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(commands_table)
                .where(commands_table.c.id == result.command_id)
                .values(state=result.status, result_at=self._clock(), detail=result.detail[:500])
            )

    async def resend_unconfirmed(self) -> int:
        """Publish commands that are pending, or sent without a result for ``retry_s``."""
        now = self._clock()
        t = commands_table
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(t)
                .where(t.c.state.in_(("pending", "sent")), t.c.created_at < now - COMMAND_EXPIRY)
                .values(state="timeout", result_at=now, detail="no result from the edge")
            )
            rows = (
                await conn.execute(
                    sa.select(t.c.id, t.c.edge_id, t.c.device_id, t.c.name, t.c.args).where(
                        sa.or_(
                            t.c.state == "pending",
                            sa.and_(
                                t.c.state == "sent",
                                t.c.sent_at < now - timedelta(seconds=self._retry_s),
                            ),
                        )
                    )
                )
            ).all()
        sent = []
        for command_id, edge_id, device_id, name, args in rows:
            command = Command(command_id, device_id, name, {**(args or {}), "edge_id": edge_id})
            if self._publish(command):
                sent.append(command_id)
        if sent:
            async with self._engine.begin() as conn:
                await conn.execute(
                    sa.update(t).where(t.c.id.in_(sent)).values(state="sent", sent_at=now)
                )
        return len(sent)

    async def run_retry_loop(self) -> None:
        while True:
            try:
                await self.resend_unconfirmed()
            except Exception:
                log.exception("command resend failed")
            await asyncio.sleep(self._retry_s)
