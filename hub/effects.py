"""What happens after a case transaction commits: commands go out, workers are notified.

Once each, across hub replicas (issue #14): a case change is committed by one replica
only (the case's version check), and that replica dispatches its effects; the resend
sweep, which every replica runs, leaves a just-created command to its dispatcher, and
every publish is preceded by a committed claim of the row (:meth:`_publish_rows`).

The case service records commands in the ``commands`` table inside the same transaction
as the case change (a durable command outbox), so a hub crash between commit and publish
loses nothing: :meth:`EffectDispatcher.resend_unconfirmed` publishes every command that
has no result yet, at start-up and every ``retry_s``. The edge executes button feedback
idempotently, so a repeat is harmless.

Deadlines (issue #11): every command has one, ``deadline_at`` (the profile's
``deadline_s`` after the hub accepted it; button feedback queued by the case service gets
it on first publish). The hub publishes a command only before it, with the seconds left
(``ttl_s``, so the edge can measure from receipt whatever its clock says), and at the
deadline stops resending and records ``expired``; the edge refuses it past the deadline
too, so after an edge outage an operator's ``open_door`` never opens a door minutes later.
A result the edge sends afterwards (it may have executed the command just in time)
replaces the hub's ``expired``.

Result origin (issue #11): a ``CommandResult`` counts only when it comes from the edge the
command was published to, and names the command's device; otherwise :meth:`on_result`
says why, the caller quarantines the message and the command's state stays as it was.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import Command, CommandResult, topics
from edge.profiles.common import DEFAULT_COMMAND_DEADLINE_S
from edge.profiles.model import DeviceProfile
from hub.db.schema import commands as commands_table
from hub.db.schema import devices as devices_table
from hub.notify.base import Notifier
from hub.services.cases import Effects
from hub.services.remote_config import read_profile_texts

log = logging.getLogger(__name__)

#: How long the profiles read for deadlines are reused before the directory is read again.
PROFILES_TTL_S = 60.0
#: A pending command younger than this is its dispatcher's to publish (it is doing so right
#: after its transaction committed); older, its dispatcher failed or died and the resend
#: sweep takes it over.
PENDING_GRACE = timedelta(seconds=2)
#: States a result from the right edge may replace (a late result beats the hub's guess).
_OPEN_STATES = ("pending", "sent", "expired", "timeout")

_ROWS = sa.select(
    commands_table.c.id,
    commands_table.c.edge_id,
    commands_table.c.device_id,
    commands_table.c.name,
    commands_table.c.args,
    commands_table.c.created_at,
    commands_table.c.deadline_at,
    devices_table.c.profile,
).select_from(
    commands_table.outerjoin(devices_table, devices_table.c.id == commands_table.c.device_id)
)


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
        profiles_dir: Path | None = None,
        news: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._notifier = notifier
        self._clock = clock
        self._retry_s = retry_s
        self._news = news  # tells the other hub processes (``hub.news``)
        self._profiles_dir = profiles_dir
        self._profiles: Mapping[str, DeviceProfile] = {}
        self._profiles_read = -PROFILES_TTL_S
        self.stats = {"expired": 0, "results_refused": 0}
        #: Set after every dispatch; the escalation timer re-reads its next deadline on it.
        self.cases_changed = asyncio.Event()

    async def dispatch(self, effects: Effects) -> None:
        """Call after the transaction that produced ``effects`` has committed."""
        self.cases_changed.set()
        if self._news is not None:
            self._news()
        # People first: the worker's phone must not wait for our bookkeeping write below.
        for notification in effects.notifications:
            await self._notifier.notify(notification)
        if effects.commands:
            ids = [c.command_id for c in effects.commands]
            async with self._engine.connect() as conn:
                found = (await conn.execute(_ROWS.where(commands_table.c.id.in_(ids)))).all()
            by_id = {row.id: row for row in found}  # in the order the case service queued them
            rows = [by_id[i] for i in ids if i in by_id]
            await self._publish_rows(rows, self._clock(), commands_table.c.state == "pending")

    async def _publish_rows(
        self, rows: Sequence[Any], now: datetime, claimable: sa.ColumnElement[bool]
    ) -> int:
        """Claim each row that is still ``claimable`` and publish it before its deadline;
        record ``expired`` for one past it.

        The claim (state ``sent``, ``sent_at`` now) is committed *before* the publish, so
        of several hub processes looking at one command only the one whose conditional
        update matched publishes it (issue #14), and a crash between the two costs a
        resend after ``retry_s``, never a second copy now. A claimed command that could not
        be published (no broker) is resent after ``retry_s`` too.
        """
        t = commands_table
        claimed: list[tuple[Any, datetime]] = []
        async with self._engine.begin() as conn:
            for row in rows:
                deadline = row.deadline_at or row.created_at + timedelta(
                    seconds=await self._deadline_s(row.profile, row.name)
                )
                if deadline <= now:
                    await self._expire(conn, row.id, deadline, now)
                    continue
                done = await conn.execute(
                    sa.update(t)
                    .where(t.c.id == row.id, claimable)
                    .values(state="sent", sent_at=now, deadline_at=deadline)
                )
                if done.rowcount:
                    claimed.append((row, deadline))
        sent = 0
        for row, deadline in claimed:
            wire = Command(
                row.id,
                row.device_id,
                row.name,
                dict(row.args or {}),
                deadline=deadline,
                ttl_s=(deadline - now).total_seconds(),
            )
            if self._publisher.publish(topics.commands(row.edge_id), wire.encode(), qos=1):
                sent += 1
        return sent

    async def _expire(self, conn: Any, command_id: str, deadline: datetime, now: datetime) -> None:
        t = commands_table
        done = await conn.execute(
            sa.update(t)
            .where(t.c.id == command_id, t.c.state.in_(("pending", "sent")))
            .values(
                state="expired",
                result_at=now,
                deadline_at=deadline,
                detail="deadline passed without a result from the edge; not sent again "
                "/ 命令已过期，未再下发",
            )
        )
        if done.rowcount:
            self.stats["expired"] += 1
            log.info("command %s expired at its deadline %s", command_id, deadline)

    async def _deadline_s(self, profile: str | None, name: str) -> float:
        """The profile's ``deadline_s`` of command ``name`` (the default without one)."""
        if self._profiles_dir is not None and time.monotonic() - self._profiles_read > (
            PROFILES_TTL_S
        ):
            self._profiles_read = time.monotonic()
            self._profiles = await asyncio.to_thread(_read_profiles, self._profiles_dir)
        found = self._profiles.get(profile or "")
        return found.command_deadline_s(name) if found else DEFAULT_COMMAND_DEADLINE_S

    async def on_result(self, edge_id: str, result: CommandResult) -> str | None:
        """Store ``result`` from ``edge_id``'s topic. Returns why it was refused (the
        caller quarantines the message; the command is unchanged), or None when stored."""
        t = commands_table
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.select(t.c.edge_id, t.c.device_id).where(t.c.id == result.command_id)
                )
            ).first()
            refused: str | None = None
            if row is None:
                refused = f"result for unknown command {result.command_id}"
            elif row.edge_id != edge_id:
                refused = (
                    f"result for command {result.command_id} from edge {edge_id!r}; "
                    f"it was sent to edge {row.edge_id!r}"
                )
            elif row.device_id != result.device_id:
                refused = (
                    f"result for command {result.command_id} names device "
                    f"{result.device_id!r}; the command is for {row.device_id!r}"
                )
            if refused is not None:
                self.stats["results_refused"] += 1
                return refused
            await conn.execute(
                sa.update(t)
                .where(t.c.id == result.command_id, t.c.state.in_(_OPEN_STATES))
                .values(state=result.status, result_at=self._clock(), detail=result.detail[:500])
            )
        return None

    async def resend_unconfirmed(self) -> int:
        """Publish commands that are pending, or sent without a result for ``retry_s``,
        and not past their deadline; record ``expired`` for those that are."""
        now = self._clock()
        t = commands_table
        # A pending command younger than PENDING_GRACE is its dispatcher's to publish.
        due = sa.or_(
            sa.and_(t.c.state == "pending", t.c.created_at < now - PENDING_GRACE),
            sa.and_(t.c.state == "sent", t.c.sent_at < now - timedelta(seconds=self._retry_s)),
        )
        async with self._engine.begin() as conn:
            expired = await conn.execute(
                sa.update(t)
                .where(
                    t.c.state.in_(("pending", "sent")),
                    t.c.deadline_at.is_not(None),
                    t.c.deadline_at <= now,
                )
                .values(
                    state="expired",
                    result_at=now,
                    detail="deadline passed without a result from the edge; not sent again "
                    "/ 命令已过期，未再下发",
                )
            )
            self.stats["expired"] += max(expired.rowcount, 0)
            rows = (await conn.execute(_ROWS.where(due).order_by(t.c.created_at, t.c.id))).all()
        return await self._publish_rows(rows, now, due) if rows else 0

    async def run_retry_loop(self) -> None:
        while True:
            try:
                await self.resend_unconfirmed()
            except Exception:
                log.exception("command resend failed")
            await asyncio.sleep(self._retry_s)


def _read_profiles(directory: Path) -> dict[str, DeviceProfile]:
    """The valid profiles of ``directory`` (blocking file I/O; run in a thread)."""
    found, _problems = read_profile_texts(directory)
    return {name: profile for name, (_text, profile) in found.items()}
