"""Hub replicas: who is alive, and which edges this process ingests (issue #14).

Several ``python -m hub`` processes share one database and one broker. Every ingesting
replica subscribes to every edge's topics (plain, not shared, subscriptions) and takes the
messages of the edges it *owns*: the owner of an edge is the live replica with the highest
rendezvous score for it (``hub.domain.ownership``). Messages of other edges are PUBACKed
and left alone; their owner got the same message. Why edges are assigned rather than
messages shared out, and how news and deadlines travel: ``docs/scaling.md``, "Hub
replicas".

Membership is a table, ``hub_replicas``: each replica bumps its row's ``beat`` every
``heartbeat_s``. A replica is live for the others while its row says ``ready`` and its
beat has moved within ``dead_after_s`` by *their own* monotonic clock (no two hosts' clocks
are compared). A death is usually heard sooner: every replica's last will is the hub's
retained status ``online: false`` naming it; the broker publishes it the moment the
process's connection drops (``kill -9`` closes the socket), and the survivors drop the
dead replica from their view at once (:meth:`ReplicaSet.on_death_heard`), then announce
the hub online again so that every edge resends what is unacknowledged
(``edge.uplink``: a hub coming online rewinds every lane). What the dead replica had
received but not committed is thus resent, now to the new owner: nothing is lost, and the
uid of every event (``edge:incarnation:seq``) keeps a resend from being stored twice.

A starting replica warms up for ``dead_after_s`` before it owns anything: it watches the
beats to learn who is alive, and meanwhile the others still count it out and keep its
future edges. Then it marks its row ``ready``; the others hand those edges over at their
next heartbeat. In that moment both may take a message of one edge: that is safe (the
events' uids and the order gate of ``hub.ingest`` make the second attempt a duplicate or a
gap), only wasted work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import ContractError, topics
from contract.mqtt import Message
from hub.config import ClusterSettings
from hub.db.schema import hub_replicas
from hub.domain.ownership import owner_of

log = logging.getLogger(__name__)


def status_name(hub_id: str, replica_id: str) -> str:
    """The ``hub_id`` a replica puts in the hub's status (and its last will)."""
    return f"{hub_id}:{replica_id}"


def replica_of_status(hub_id: str, name: str) -> str | None:
    """The replica named by a hub status of this hub, or None (another hub, a single hub)."""
    prefix = f"{hub_id}:"
    return name[len(prefix) :] if name.startswith(prefix) else None


class ReplicaSet:
    """This replica's view of the live replicas, kept by :meth:`run`."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: ClusterSettings,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._clock = clock
        self._monotonic = monotonic
        self.replica_id = settings.replica_id
        #: replica → (last beat read, our monotonic time when it last moved, ready, the
        #: start of its incarnation as it wrote it)
        self._seen: dict[str, tuple[int, float, bool, datetime]] = {}
        #: replica → the incarnation (its ``started_at``) whose death was heard: counted
        #: out until a new incarnation shows up, whatever its last beats did meanwhile.
        self._heard_dead: dict[str, datetime] = {}
        self._incarnation_written = False
        self._started = monotonic()
        self._last_beat_ok: float | None = None
        #: Whether this replica has warmed up and takes its share of the edges.
        self.ready = False
        self.live: frozenset[str] = frozenset()
        self.on_ready: Callable[[], None] | None = None
        self.stats = {"heartbeats": 0, "heartbeat_errors": 0, "deaths_heard": 0, "changes": 0}

    # -- ownership --------------------------------------------------------------------------
    def owns(self, edge_id: str) -> bool:
        return self.ready and owner_of(edge_id, self.live) == self.replica_id

    def owns_message(self, message: Message) -> bool:
        """Whether this replica handles ``message`` (an edge's uplink message)."""
        try:
            edge_id, _rest = topics.parse_edge_topic(message.topic)
        except ContractError:
            return self.ready  # not an edge's topic: ingest quarantines it, once
        return self.owns(edge_id)

    @property
    def heartbeat_fresh(self) -> bool:
        """Our own heartbeat reached the database lately (readiness)."""
        last = self._last_beat_ok
        return last is not None and self._monotonic() - last < self._settings.dead_after_s

    # -- deaths heard through the broker ------------------------------------------------------
    def on_death_heard(self, replica_id: str) -> None:
        """The broker published ``replica_id``'s last will: count it out now."""
        if replica_id == self.replica_id:
            return  # an older connection of ours; we are here
        seen = self._seen.get(replica_id)
        if seen is not None:  # never seen: not live for us anyway
            self._heard_dead[replica_id] = seen[3]
        self.stats["deaths_heard"] += 1
        log.info("replica %s: heard that replica %s died", self.replica_id, replica_id)
        self._recompute()

    # -- the heartbeat ------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception:
                self.stats["heartbeat_errors"] += 1
                log.warning("replica %s: heartbeat failed", self.replica_id, exc_info=True)
            await asyncio.sleep(self._settings.heartbeat_s)

    async def beat(self) -> None:
        """Write our beat, read everybody's, and recompute who is live."""
        now = self._clock()
        warmed = self._monotonic() - self._started >= self._settings.dead_after_s
        t = hub_replicas
        values: dict[str, Any] = {
            "beat": t.c.beat + 1,  # on from the stored beat: a restart never goes back
            "role": self._settings.role,
            "ready": warmed,
            "seen_at": now,
        }
        if not self._incarnation_written:
            values["started_at"] = now  # names this incarnation (compared only for equality)
        async with self._engine.begin() as conn:
            updated = await conn.execute(
                sa.update(t).where(t.c.replica_id == self.replica_id).values(**values)
            )
            if updated.rowcount == 0:
                await conn.execute(
                    sa.insert(t).values(
                        replica_id=self.replica_id, **{**values, "beat": 1, "started_at": now}
                    )
                )
            rows = (
                await conn.execute(sa.select(t.c.replica_id, t.c.beat, t.c.ready, t.c.started_at))
            ).all()
        self._incarnation_written = True
        self._last_beat_ok = self._monotonic()
        self.stats["heartbeats"] += 1
        moment = self._monotonic()
        for replica_id, beat, ready, started_at in rows:
            previous = self._seen.get(replica_id)
            if previous is None or previous[0] != beat:
                # First sight counts as "not moved yet": a row left by a replica that died
                # long ago must not count as live for a whole window.
                moved_at = moment if previous is not None else moment - self._settings.dead_after_s
                self._seen[replica_id] = (int(beat), moved_at, bool(ready), started_at)
            else:
                self._seen[replica_id] = (previous[0], previous[1], bool(ready), started_at)
        if warmed and not self.ready:
            self.ready = True
            log.info("replica %s: warmed up; taking its share of the edges", self.replica_id)
            self._recompute()
            if self.on_ready is not None:
                self.on_ready()
        else:
            self._recompute()

    def _recompute(self) -> None:
        moment = self._monotonic()
        live = set()
        for replica_id, (_beat, moved_at, ready, started_at) in self._seen.items():
            if replica_id == self.replica_id:
                continue
            if not ready or moment - moved_at >= self._settings.dead_after_s:
                continue
            if self._heard_dead.get(replica_id) == started_at:
                continue  # its death was heard; its last beats may still have landed
            live.add(replica_id)
        if self.ready:
            live.add(self.replica_id)
        frozen = frozenset(live)
        if frozen != self.live:
            self.stats["changes"] += 1
            log.info("replica %s: live replicas now %s", self.replica_id, sorted(frozen))
            self.live = frozen

    async def leave(self) -> None:
        """At a clean shutdown: our row says not ready, so the others take over at once."""
        t = hub_replicas
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(t).where(t.c.replica_id == self.replica_id).values(ready=False)
            )
