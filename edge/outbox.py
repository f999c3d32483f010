"""The edge's durable outbox: every decoded event is written here before anything else.

Durability (see docs/reliability.md):
- The database runs in WAL mode with ``synchronous=FULL``: every COMMIT fsyncs the WAL.
- Alarm-lane events (SOS, fall) are committed on their own, at once; ``record`` returns
  only after that fsync. Other events are group-committed: gathered for up to
  ``group_commit_s`` (200 ms by default) or ``group_commit_max`` rows and committed in one
  transaction; their ``record`` calls return after that commit. A device is told "got it"
  (CB-100 link ack) only after ``record`` returned, so an event the device believes
  delivered is on disk.
- A row is deleted only when the hub's end-to-end ack names its seq (``ack``); the broker's
  PUBACK is never taken as delivery.
- ``recent_keys`` remembers the dedupe keys (device + frame seq) of the last
  ``dedupe_window_s`` seconds in the same transaction as the event, so a retransmitted frame
  is recorded once even across an edge restart. A copy that arrives while the first is
  still waiting for its commit returns only after that commit.

All SQL runs on aiosqlite's one connection thread; an asyncio lock keeps transactions whole.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from contract import Event, Lane
from edge.errors import OutboxError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    lane INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_lane_seq ON outbox (lane, seq);
CREATE TABLE IF NOT EXISTS recent_keys (key TEXT PRIMARY KEY, recorded_at REAL NOT NULL);
"""


@dataclass(slots=True)
class _Pending:
    row: tuple[int, str, str, str, str]
    key: str | None
    done: asyncio.Future[None]


class Outbox:
    """SQLite queue of events awaiting the hub's end-to-end ack. Implements ``EventSink``."""

    def __init__(
        self,
        path: str | Path,
        *,
        group_commit_s: float = 0.2,
        group_commit_max: int = 1000,
        dedupe_window_s: float = 60.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = Path(path)
        self._group_commit_s = group_commit_s
        self._group_commit_max = group_commit_max
        self._dedupe_window_s = dedupe_window_s
        self._wall_clock = wall_clock
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._pending: list[_Pending] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._flush_wanted = asyncio.Event()
        self._recent: dict[str, float] = {}
        self._unsettled: dict[str, asyncio.Future[None]] = {}  # dedupe key → its commit
        self._last_prune = 0.0
        self.incarnation = ""
        #: Set whenever new rows are committed; the uplink waits on it.
        self.new_events = asyncio.Event()
        self.stats = {"recorded": 0, "duplicates": 0, "acked": 0, "write_errors": 0}

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = await aiosqlite.connect(self._path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=FULL")
            await self._db.executescript(_SCHEMA)
            async with self._db.execute("SELECT value FROM meta WHERE key='incarnation'") as cur:
                row = await cur.fetchone()
            if row is None:
                self.incarnation = uuid.uuid4().hex[:16]
                await self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('incarnation', ?)", (self.incarnation,)
                )
            else:
                self.incarnation = str(row[0])
            horizon = self._wall_clock() - self._dedupe_window_s
            async with self._db.execute(
                "SELECT key, recorded_at FROM recent_keys WHERE recorded_at >= ?", (horizon,)
            ) as cur:
                self._recent = {str(k): float(t) for k, t in await cur.fetchall()}
        except sqlite3.Error as err:
            raise OutboxError(f"{self._path}: cannot open outbox: {err}") from err
        self._flush_task = asyncio.create_task(self._flush_loop(), name="outbox-group-commit")
        if await self.depth():
            self.new_events.set()

    async def close(self) -> None:
        if self._flush_task is not None:
            self._flush_task.cancel()
            await asyncio.gather(self._flush_task, return_exceptions=True)
            self._flush_task = None
        await self._flush()
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def __aenter__(self) -> Outbox:
        await self.open()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise OutboxError("outbox is not open")
        return self._db

    # -- writing ---------------------------------------------------------------------------
    def _is_duplicate(self, key: str | None, now: float) -> bool:
        if key is None:
            return False
        seen = self._recent.get(key)
        return seen is not None and now - seen <= self._dedupe_window_s

    async def record(
        self,
        device_id: str,
        kind: str,
        lane: Lane,
        data: dict[str, Any],
        *,
        dedupe_key: str | None = None,
    ) -> bool:
        now = self._wall_clock()
        if self._is_duplicate(dedupe_key, now):
            self.stats["duplicates"] += 1
            first = self._unsettled.get(dedupe_key) if dedupe_key is not None else None
            if first is not None:
                # The first copy is not committed yet: answer only once it is, so that a
                # caller never acks a retransmission ahead of the event being on disk.
                await asyncio.shield(first)
            return False
        at = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
        row = (int(lane), device_id, kind, at, json.dumps(data, ensure_ascii=False))
        if dedupe_key is not None:
            self._recent[dedupe_key] = now  # claimed now; released again if the write fails
        pending = _Pending(row, dedupe_key, asyncio.get_running_loop().create_future())
        if dedupe_key is not None:
            self._unsettled[dedupe_key] = pending.done
            pending.done.add_done_callback(lambda _f: self._unsettled.pop(dedupe_key, None))
        if lane == Lane.ALARM:
            await self._commit([pending])  # alone and at once: an SOS never waits 200 ms
        else:
            self._pending.append(pending)
            if len(self._pending) >= self._group_commit_max:
                self._flush_wanted.set()
        await pending.done  # raises OutboxError if the write failed
        return True

    async def _flush_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._flush_wanted.wait(), self._group_commit_s)
            except TimeoutError:
                pass
            self._flush_wanted.clear()
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        await self._commit(batch)

    async def _commit(self, batch: Sequence[_Pending]) -> None:
        """Write rows (and their dedupe keys) in one fsynced transaction; settle futures."""
        now = self._wall_clock()
        keys = [(p.key, now) for p in batch if p.key is not None]
        async with self._lock:
            db = self._conn
            try:
                await db.execute("BEGIN IMMEDIATE")
                await db.executemany(
                    "INSERT INTO outbox (lane, device_id, kind, at, data) VALUES (?,?,?,?,?)",
                    [p.row for p in batch],
                )
                if keys:
                    await db.executemany(
                        "INSERT OR REPLACE INTO recent_keys (key, recorded_at) VALUES (?, ?)", keys
                    )
                if now - self._last_prune > 10:
                    await db.execute(
                        "DELETE FROM recent_keys WHERE recorded_at < ?",
                        (now - self._dedupe_window_s,),
                    )
                await db.execute("COMMIT")
            except sqlite3.Error as err:
                await self._rollback()
                self.stats["write_errors"] += 1
                for p in batch:
                    if p.key is not None:
                        self._recent.pop(p.key, None)
                    if not p.done.done():
                        p.done.set_exception(OutboxError(f"outbox write failed: {err}"))
                log.error("outbox write of %d event(s) failed: %s", len(batch), err)
                return
        if now - self._last_prune > 10:
            self._last_prune = now
            horizon = now - self._dedupe_window_s
            self._recent = {k: t for k, t in self._recent.items() if t >= horizon}
        self.stats["recorded"] += len(batch)
        for p in batch:
            if not p.done.done():
                p.done.set_result(None)
        self.new_events.set()

    async def _rollback(self) -> None:
        try:
            await self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction was open

    # -- reading and acknowledging -----------------------------------------------------------
    async def fetch(self, lane: Lane, after_seq: int, limit: int) -> list[Event]:
        """Oldest unacknowledged events of ``lane`` with seq > ``after_seq``."""
        async with self._conn.execute(
            "SELECT seq, device_id, kind, at, data FROM outbox "
            "WHERE lane = ? AND seq > ? ORDER BY seq LIMIT ?",
            (int(lane), after_seq, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [
            Event(
                seq=int(seq),
                device_id=str(device_id),
                kind=str(kind),
                lane=lane,
                occurred_at=datetime.fromisoformat(str(at)),
                data=json.loads(data),
            )
            for seq, device_id, kind, at, data in rows
        ]

    async def ack(self, seqs: Iterable[int]) -> int:
        """Forget events the hub has committed. Returns how many rows were removed."""
        params = [(s,) for s in seqs]
        if not params:
            return 0
        async with self._lock:
            db = self._conn
            try:
                await db.execute("BEGIN IMMEDIATE")
                cur = await db.executemany("DELETE FROM outbox WHERE seq = ?", params)
                removed = cur.rowcount
                await db.execute("COMMIT")
            except sqlite3.Error as err:
                await self._rollback()
                log.error("outbox ack of %d seq(s) failed: %s", len(params), err)
                return 0
        self.stats["acked"] += max(removed, 0)
        return max(removed, 0)

    async def depth(self) -> dict[str, int]:
        """Unacknowledged rows per lane name."""
        async with self._conn.execute("SELECT lane, COUNT(*) FROM outbox GROUP BY lane") as cur:
            rows = await cur.fetchall()
        found = {int(lane): int(n) for lane, n in rows}
        return {lane.name.lower(): found.get(int(lane), 0) for lane in Lane}

    async def oldest_age_s(self) -> float:
        async with self._conn.execute("SELECT MIN(at) FROM outbox") as cur:
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return 0.0
        return max(0.0, self._wall_clock() - datetime.fromisoformat(str(row[0])).timestamp())
