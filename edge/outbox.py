"""The edge's durable outbox: every decoded event is written here before anything else.

Durability (see docs/reliability.md):
- The database runs in WAL mode with ``synchronous=FULL``: every COMMIT fsyncs the WAL.
- Alarm-lane events (SOS, fall) are committed on their own, at once; ``record`` returns
  only after that fsync. The writer lock serves them before every other waiter
  (:class:`edge.writer_lock.WriterLock`), so an alarm waits at most for the one
  transaction under way, never for queued group commits or ack deletes. Other events are
  group-committed, adaptively (issue #13): when the writer is idle, the first event waits
  at most ``group_commit_s`` (5 ms by default) for company; while a commit runs, whatever
  arrives meanwhile goes into the next one as soon as it ends (up to ``group_commit_max``
  rows). So a commit is small and prompt at low load and large at high load, and storage
  never caps the edge below what its disk can do; ``record`` returns after the commit.
  A device is told "got it" (CB-100 link ack) only after ``record`` returned, so an
  event the device believes delivered is on disk.
- A row is deleted only when the hub's end-to-end ack names its seq (``ack``); the broker's
  PUBACK is never taken as delivery.
- ``recent_keys`` remembers the dedupe keys (device + frame seq) of the last
  ``dedupe_window_s`` seconds in the same transaction as the event, so a retransmitted frame
  is recorded once even across an edge restart. While running, the window is measured on
  the monotonic clock, so a wall-clock jump (NTP, a dead RTC battery) neither reopens nor
  closes it. A copy that arrives while the first is
  still waiting for its commit returns only after that commit.
- ``frame_windows`` remembers, per CB-100 device, which frame sequence numbers were
  recorded (:mod:`edge.frame_window`: the last 256 of each device's run). A record that
  names its ``frame_seq`` updates the device's window in the same transaction as the event
  (so it is fsynced with it, and a write that fails leaves the window as it was); the
  windows are read once at open, so a frame replayed after the dedupe window, or after an
  edge restart, is recognised (:meth:`Outbox.frame_verdict`).

Bounds (issue #5; :class:`OutboxSettings`):
- A cap on rows (exact: a running counter, counted once at open) and on bytes (database
  pages in use, read from SQLite's header inside the writing transaction). A commit that
  goes over it deletes, in the same transaction, the oldest telemetry rows, and only when
  no telemetry is left the oldest normal rows. Alarms are never deleted and are accepted
  beyond the cap. Drops are counted per lane in ``meta`` in that same transaction, so the
  totals survive restarts and reach the hub in the edge status.
- A full disk (SQLITE_FULL or an I/O error) never escapes as an exception from the writer:
  the outbox deletes a chunk of the oldest droppable rows (telemetry, then normal; SQLite
  reuses their pages without needing more disk), checkpoints the WAL and tries again, a
  bounded number of rounds. A telemetry batch only ever displaces older telemetry.
  For alarms it then gives up the *reserve*: a file of ``reserve_bytes`` kept beside the
  database for exactly this moment. An event that still cannot be stored makes ``record``
  raise :class:`OutboxError`; the device is not acknowledged and retransmits. While the
  reserve is spent and the disk has less than its size free, non-alarm events are
  refused, so the space left goes to alarms; the reserve is re-created once the disk has
  room again.
- ``buffer_pressure`` turns on at ``pressure_pct`` of the room the outbox may use, or
  while writes fail for lack of space (:class:`edge.outbox_space.BufferGauge`); each change
  is logged once and reported via ``on_buffer_change``.

All SQL runs on aiosqlite's one connection thread; an asyncio lock keeps transactions whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from contract import Event, Lane
from edge import frame_window
from edge.errors import OutboxError
from edge.frame_window import SeqWindow, Verdict
from edge.outbox_space import (
    BufferGauge,
    OutboxSettings,
    SpaceReserve,
    disk_free_bytes,
    out_of_space,
)
from edge.writer_lock import WriterLock

__all__ = ["Outbox", "OutboxSettings"]

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
CREATE TABLE IF NOT EXISTS frame_windows (
    device_id TEXT PRIMARY KEY, win TEXT NOT NULL, updated_at REAL NOT NULL
);
"""

#: Lanes whose oldest rows may be deleted to stay within bounds, in the order they go.
DROP_ORDER = (Lane.TELEMETRY, Lane.NORMAL)
#: Rows deleted at least at once to make room on a full disk (whole pages must empty).
FULL_DISK_DROP_ROWS = 1000
#: At most this many such chunks per batch (a bound on how long one write can take).
FULL_DISK_DROP_ROUNDS = 8
#: Repeated failures of one kind are logged at most this often (all are counted).
LOG_INTERVAL_S = 60.0


@dataclass(slots=True)
class _Pending:
    row: tuple[int, str, str, str, str]
    key: str | None
    done: asyncio.Future[None]
    frame_seq: int | None = None


class Outbox:
    """SQLite queue of events awaiting the hub's end-to-end ack. Implements ``EventSink``."""

    def __init__(
        self,
        path: str | Path,
        *,
        group_commit_s: float = 0.005,
        group_commit_max: int = 1000,
        dedupe_window_s: float | None = None,
        settings: OutboxSettings | None = None,
        on_buffer_change: Callable[[], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = Path(path)
        self._group_commit_s = group_commit_s
        self._group_commit_max = group_commit_max
        self._settings = settings or OutboxSettings()
        self._dedupe_window_s = (
            self._settings.dedupe_window_s if dedupe_window_s is None else dedupe_window_s
        )
        self._windows: dict[str, SeqWindow] = {}  # device → frames recorded (committed)
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._db: aiosqlite.Connection | None = None
        self._lock = WriterLock()
        self._pending: list[_Pending] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._flush_wanted = asyncio.Event()  # some rows wait for a group commit
        self._flush_full = asyncio.Event()  # group_commit_max rows wait: commit now
        self._pending_since = 0.0  # monotonic time the oldest waiting row arrived
        self._recent: dict[str, float] = {}  # dedupe key → when recorded, monotonic
        self._last_recent_prune = 0.0
        self._unsettled: dict[str, asyncio.Future[None]] = {}  # dedupe key → its commit
        self._last_prune = 0.0
        self._reserve = SpaceReserve(
            self._path.with_name(self._path.name + ".reserve"),
            self._settings.reserve_bytes,
            monotonic=monotonic,
        )
        self._page_size = 4096
        self._rows = 0  # running count of rows in the outbox table
        self._gauge = BufferGauge(self._settings, self._path.parent, on_buffer_change)
        self._dropped = dict.fromkeys(DROP_ORDER, 0)  # cumulative, mirrored in meta
        self._failed_acks: set[int] = set()
        self._last_logged: dict[str, float] = {}
        self.incarnation = ""
        #: Set whenever new rows are committed; the uplink waits on it.
        self.new_events = asyncio.Event()
        self.stats = {
            "recorded": 0,
            "duplicates": 0,
            "acked": 0,
            "write_errors": 0,  # failed batches, for any reason
            "disk_full_errors": 0,  # writes that failed for lack of space
            "refused_low_disk": 0,  # non-alarm batches refused to keep space for alarms
            "reserve_releases": 0,
            "read_errors": 0,
        }

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        """Open (or create) the database. On a disk so full that SQLite cannot even open
        it (the WAL index needs space), the reserve left by the last run is given up, so
        an edge restarted on a full disk comes up and can still take alarms."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            await self._open_db()
        except sqlite3.Error as err:
            await self._close_db()
            if not (out_of_space(err) and self._reserve.discard_leftover()):
                raise OutboxError(f"{self._path}: cannot open outbox: {err}") from err
            log.warning(
                "outbox: disk full at start, space reserve given up to open the outbox "
                "· 磁盘已满：已释放预留空间以启动"
            )
            try:
                await self._open_db()
            except sqlite3.Error as err2:
                await self._close_db()
                raise OutboxError(f"{self._path}: cannot open outbox: {err2}") from err2
        try:
            await self._enforce_cap()  # the caps may have been lowered since the last run
        except sqlite3.Error as err:
            log.warning("outbox: cap not applied at start (the next commit applies it): %s", err)
        if not await self._reserve.claim() and self._reserve.size:
            log.warning(
                "outbox: disk nearly full at start; non-alarm events wait until it has room "
                "· 磁盘将满：非报警事件暂不接收"
            )
            free = disk_free_bytes(self._path.parent)
            self._gauge.set_disk_full(free is not None and free < self._reserve.size)
        self._flush_task = asyncio.create_task(self._flush_loop(), name="outbox-group-commit")
        if self._rows:
            self.new_events.set()

    async def _open_db(self) -> None:
        self._db = await aiosqlite.connect(self._path, isolation_level=None)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=FULL")
        await self._db.executescript(_SCHEMA)
        meta = await self._read_meta()
        self.incarnation = meta.get("incarnation", "")
        if not self.incarnation:
            self.incarnation = uuid.uuid4().hex[:16]
            await self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('incarnation', ?)", (self.incarnation,)
            )
        for lane in DROP_ORDER:
            self._dropped[lane] = int(meta.get(_dropped_key(lane), "0"))
        wall_now, mono_now = self._wall_clock(), self._monotonic()
        horizon = wall_now - self._dedupe_window_s
        async with self._db.execute(
            "SELECT key, recorded_at FROM recent_keys WHERE recorded_at >= ?", (horizon,)
        ) as cur:
            # Stored in wall time (it survives restarts), kept in monotonic time (a clock
            # jump while running must not reopen the window); a key "from the future"
            # (the clock went back while we were down) counts as just recorded.
            self._recent = {
                str(k): mono_now - max(0.0, wall_now - float(t)) for k, t in await cur.fetchall()
            }
        self._windows = {}
        async with self._db.execute("SELECT device_id, win FROM frame_windows") as cur:
            for device_id, text in await cur.fetchall():
                try:
                    self._windows[str(device_id)] = SeqWindow.from_text(str(text))
                except ValueError:  # not ours: start that device afresh rather than stop
                    log.warning("outbox: unreadable frame window of %s ignored", device_id)
        async with self._db.execute("PRAGMA page_size") as cur:
            row = await cur.fetchone()
            self._page_size = int(row[0]) if row else 4096
        async with self._db.execute("SELECT COUNT(*) FROM outbox") as cur:  # once only
            row = await cur.fetchone()
            self._rows = int(row[0]) if row else 0

    async def _close_db(self) -> None:
        """Close a half-opened connection: its thread would keep the process alive."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                await self._db.close()
            self._db = None

    async def close(self) -> None:
        if self._flush_task is not None:
            self._flush_task.cancel()
            await asyncio.gather(self._flush_task, return_exceptions=True)
            self._flush_task = None
        await self._flush()
        await self._close_db()

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

    async def _read_meta(self) -> dict[str, str]:
        async with self._conn.execute("SELECT key, value FROM meta") as cur:
            return {str(k): str(v) for k, v in await cur.fetchall()}

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
        frame_seq: int | None = None,
    ) -> bool:
        now = self._wall_clock()
        if self._is_duplicate(dedupe_key, self._monotonic()):
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
            # Claimed now; released again if the write fails.
            self._recent[dedupe_key] = self._monotonic()
        pending = _Pending(row, dedupe_key, asyncio.get_running_loop().create_future(), frame_seq)
        if dedupe_key is not None:
            self._unsettled[dedupe_key] = pending.done
            pending.done.add_done_callback(lambda _f: self._unsettled.pop(dedupe_key, None))
        if lane == Lane.ALARM:
            await self._commit([pending], urgent=True)  # alone, at once, ahead of the queue
        else:
            self._pending.append(pending)
            if len(self._pending) == 1:
                self._pending_since = time.monotonic()
                self._flush_wanted.set()
            if len(self._pending) >= self._group_commit_max:
                self._flush_full.set()
        await pending.done  # raises OutboxError if the write failed
        return True

    def frame_verdict(self, device_id: str, seq: int, dedupe_key: str) -> Verdict:
        """Whether frame ``seq`` of ``device_id`` is new, a replay of one already recorded,
        or taken as a restart of the device (:mod:`edge.frame_window`). A frame whose
        ``dedupe_key`` is still in the dedupe window is a retransmission, not a replay:
        ``NEW`` here, and :meth:`record` answers it as a duplicate."""
        if self._is_duplicate(dedupe_key, self._monotonic()):
            return Verdict.NEW
        return frame_window.classify(self._windows.get(device_id), seq)

    async def _flush_loop(self) -> None:
        """Adaptive group commit: see the module docstring. Rows that arrived while the
        last commit ran have waited already; they linger only for what is left of
        ``group_commit_s`` since the oldest of them arrived."""
        while True:
            await self._flush_wanted.wait()
            linger = self._pending_since + self._group_commit_s - time.monotonic()
            if linger > 0 and len(self._pending) < self._group_commit_max:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_full.wait(), linger)
            await self._flush()

    async def _flush(self) -> None:
        self._flush_wanted.clear()
        self._flush_full.clear()
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        await self._commit(batch)

    async def _commit(self, batch: Sequence[_Pending], *, urgent: bool = False) -> None:
        """Store rows (and their dedupe keys) in one fsynced transaction; settle futures.

        Never raises: a batch that cannot be stored fails its own ``record`` calls only,
        so the group-commit task lives on through a full disk.
        """
        now = self._wall_clock()
        async with self._lock.hold(urgent=urgent):
            try:
                failure = await self._store(batch, now)
            except Exception as err:
                log.exception("outbox: unexpected error while writing %d event(s)", len(batch))
                failure = f"unexpected error: {err!r}"
        if failure is not None:
            self._fail(batch, failure)
            return
        mono_now = self._monotonic()
        if abs(mono_now - self._last_recent_prune) > 10:
            self._last_recent_prune = mono_now
            horizon = mono_now - self._dedupe_window_s
            self._recent = {k: t for k, t in self._recent.items() if t >= horizon}
        self.stats["recorded"] += len(batch)
        for p in batch:
            if not p.done.done():
                p.done.set_result(None)
        self.new_events.set()

    async def _store(self, batch: Sequence[_Pending], now: float) -> str | None:
        """Write ``batch``, applying the full-disk policy. Returns why it failed, or None."""
        lanes = {p.row[0] for p in batch}
        alarm = Lane.ALARM in lanes
        if not alarm and await self._keeping_space_for_alarms():
            self.stats["refused_low_disk"] += 1
            self._gauge.set_disk_full(True)
            return "disk nearly full: the space left is kept for alarms"
        err = await self._insert(batch, now)
        if err is None:
            if self._gauge.disk_full and self._gauge.has_room(self._reserve):
                self._gauge.set_disk_full(False)
            return None
        if not out_of_space(err):
            return f"outbox write failed: {err}"
        self.stats["disk_full_errors"] += 1
        self._gauge.set_disk_full(True)
        droppable = DROP_ORDER if lanes - {Lane.TELEMETRY} else (Lane.TELEMETRY,)
        for _ in range(FULL_DISK_DROP_ROUNDS):
            if not await self._drop_for_space(droppable, max(FULL_DISK_DROP_ROWS, len(batch))):
                break  # nothing left to drop, or not even a delete fits
            await self._checkpoint()
            if (err := await self._insert(batch, now)) is None:
                return None
        if alarm and self._reserve.release():
            self.stats["reserve_releases"] += 1
            log.warning(
                "outbox: disk full, space reserve given to an alarm · 磁盘已满，预留空间已用于报警"
            )
            await self._checkpoint()
            if (err := await self._insert(batch, now)) is None:
                return None
        return f"disk full, not stored: {err}"

    async def _keeping_space_for_alarms(self) -> bool:
        """True while the reserve is spent and cannot come back: refuse non-alarm events."""
        if not self._reserve.size or self._reserve.held or await self._reserve.restore():
            return False
        free = disk_free_bytes(self._path.parent)
        return free is not None and free < self._reserve.size

    async def _insert(self, batch: Sequence[_Pending], now: float) -> sqlite3.Error | None:
        """One transaction: the rows, their dedupe keys, and drops to stay within the caps."""
        keys = [(p.key, now) for p in batch if p.key is not None]
        windows: dict[str, SeqWindow] = {}
        for p in batch:
            if p.frame_seq is not None:
                device_id = p.row[1]
                before = windows.get(device_id, self._windows.get(device_id))
                windows[device_id] = frame_window.accept(before, p.frame_seq)
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
            if windows:
                await db.executemany(
                    "INSERT INTO frame_windows (device_id, win, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (device_id) DO UPDATE SET win = excluded.win, "
                    "updated_at = excluded.updated_at",
                    [(d, w.to_text(), now) for d, w in windows.items()],
                )
            if abs(now - self._last_prune) > 10:  # wall time: abs() survives a jump back
                self._last_prune = now
                await db.execute(
                    "DELETE FROM recent_keys WHERE recorded_at < ?",
                    (now - self._dedupe_window_s,),
                )
            rows = self._rows + len(batch)
            drops, rows, used, spare = await self._drop_over_cap(rows)
            await db.execute("COMMIT")
        except sqlite3.Error as err:
            await self._rollback()
            return err
        self._rows = rows
        self._windows.update(windows)
        self._count_drops(drops, "over its cap")
        self._gauge.measure(self._rows, used, spare)
        return None

    async def _enforce_cap(self) -> None:
        await self._conn.execute("BEGIN IMMEDIATE")
        try:
            drops, rows, used, spare = await self._drop_over_cap(self._rows)
            await self._conn.execute("COMMIT")
        except sqlite3.Error:
            await self._rollback()
            raise
        self._rows = rows
        self._count_drops(drops, "over its cap")
        self._gauge.measure(self._rows, used, spare)

    async def _drop_over_cap(self, rows: int) -> tuple[dict[Lane, int], int, int, int]:
        """Inside a transaction: delete the oldest droppable rows beyond the caps.

        A lane is touched only when the one before it has nothing left, so normal events
        are never dropped while telemetry remains. Returns (drops, rows, used, spare).
        """
        s = self._settings
        used, spare = await self._pages()
        drops: dict[Lane, int] = {}
        for lane in DROP_ORDER:
            excess_rows, excess_bytes = rows - s.max_rows, used - s.max_bytes
            if excess_rows <= 0 and excess_bytes <= 0:
                break
            per_row = max(1, used // max(1, rows))
            want = max(excess_rows, -(-excess_bytes // per_row))
            got = await self._delete_oldest(lane, want)
            if got:
                drops[lane] = got
                rows -= got
                used, spare = await self._pages()
            if got >= want:
                break  # what is left over the byte cap is half-empty pages: later commits
        else:
            self._log_throttled(
                "alarms-over-cap",
                logging.WARNING,
                f"outbox over its cap ({rows} rows, {used} bytes) with nothing left to drop: "
                "alarms are kept beyond it · 报警事件超出缓存上限仍予保留",
            )
        if drops:
            await self._save_drops(drops)
        return drops, rows, used, spare

    async def _drop_for_space(self, lanes: Sequence[Lane], count: int) -> bool:
        """Full disk: delete the ``count`` oldest rows of the first of ``lanes`` that has any,
        so SQLite can reuse their pages. Its own transaction; False if nothing was freed."""
        db = self._conn
        drops: dict[Lane, int] = {}
        try:
            await db.execute("BEGIN IMMEDIATE")
            for lane in lanes:
                if got := await self._delete_oldest(lane, count):
                    drops[lane] = got
                    break
            if drops:
                await self._save_drops(drops)
            await db.execute("COMMIT")
        except sqlite3.Error as err:
            await self._rollback()
            self._log_throttled("drop", logging.WARNING, f"cannot free space on a full disk: {err}")
            return False
        self._rows = max(0, self._rows - sum(drops.values()))
        self._count_drops(drops, "full disk")
        return bool(drops)

    async def _delete_oldest(self, lane: Lane, count: int) -> int:
        cur = await self._conn.execute(
            "DELETE FROM outbox WHERE seq IN "
            "(SELECT seq FROM outbox WHERE lane = ? ORDER BY seq LIMIT ?)",
            (int(lane), count),
        )
        return max(cur.rowcount, 0)

    async def _save_drops(self, drops: Mapping[Lane, int]) -> None:
        await self._conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(_dropped_key(lane), str(self._dropped[lane] + n)) for lane, n in drops.items()],
        )

    def _count_drops(self, drops: Mapping[Lane, int], why: str) -> None:
        """After the commit that deleted them: update totals and say so (throttled)."""
        for lane, n in drops.items():
            self._dropped[lane] += n
            self._log_throttled(
                f"drop-{lane.name}",
                logging.WARNING,
                f"outbox {why}: dropped the {n} oldest {lane.name.lower()} event(s) "
                f"({self._dropped[lane]} in all) · 缓存已满，丢弃最早的{_LANE_ZH[lane]}事件",
            )

    async def _pages(self) -> tuple[int, int]:
        """(bytes in use, bytes of free pages) of the database, as this connection sees it."""
        async with self._conn.execute(
            "SELECT page_count, freelist_count FROM pragma_page_count(), pragma_freelist_count()"
        ) as cur:
            row = await cur.fetchone()
        pages, free = (int(row[0]), int(row[1])) if row else (0, 0)
        return (pages - free) * self._page_size, free * self._page_size

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database so the next transaction can reuse the WAL file
        from its start instead of growing it. On a disk too full to extend the database
        this fails, and the WAL keeps what it has (nothing is lost)."""
        try:
            await self._conn.execute("PRAGMA wal_checkpoint(RESTART)")
        except sqlite3.Error as err:
            self._log_throttled("checkpoint", logging.WARNING, f"WAL checkpoint failed: {err}")

    def _fail(self, batch: Sequence[_Pending], why: str) -> None:
        self.stats["write_errors"] += 1
        for p in batch:
            if p.key is not None:
                self._recent.pop(p.key, None)
            if not p.done.done():
                p.done.set_exception(OutboxError(why))
        self._log_throttled(
            "write",
            logging.ERROR,
            f"outbox: {len(batch)} event(s) not stored, so not acknowledged to the device "
            f"(it will retransmit): {why} · 事件未能写入网关缓存，设备将重发",
        )

    async def _rollback(self) -> None:
        try:
            await self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction was open (SQLite may have rolled back by itself)

    async def buffer_status(self) -> dict[str, Any]:
        """Fill level, pressure and cumulative drops, measured now, for the edge status."""
        async with self._lock.hold():
            await self._reserve.restore()
            try:
                used, spare = await self._pages()
            except sqlite3.Error as err:
                raise OutboxError(f"outbox: cannot measure: {err}") from err
            self._gauge.measure(self._rows, used, spare)
            if self._gauge.disk_full and self._gauge.has_room(self._reserve):
                self._gauge.set_disk_full(False)  # space came back while nothing was written
        info = self._gauge.as_info(self._reserve)
        info["dropped"] = {lane.name.lower(): self._dropped[lane] for lane in DROP_ORDER}
        return info

    @property
    def buffer_pressure(self) -> bool:
        return self._gauge.pressure

    @property
    def disk_full(self) -> bool:
        """The last write failed, or was refused, for lack of disk space."""
        return self._gauge.disk_full

    def _log_throttled(self, what: str, level: int, text: str) -> None:
        now = self._monotonic()
        last = self._last_logged.get(what)
        if last is None or now - last >= LOG_INTERVAL_S:
            self._last_logged[what] = now
            log.log(level, "%s", text)

    # -- reading and acknowledging -----------------------------------------------------------
    async def fetch(self, lane: Lane, after_seq: int, limit: int) -> list[Event]:
        """Oldest unacknowledged events of ``lane`` with seq > ``after_seq``.

        A read error is logged and counted and gives an empty list: the uplink asks again
        on its next tick rather than dying with the agent.
        """
        try:
            # execute + fetch in ONE hop to the connection thread: a write queued between
            # them (an ack's DELETE) would change the table under a running SELECT.
            rows = await self._conn.execute_fetchall(
                "SELECT seq, device_id, kind, at, data FROM outbox "
                "WHERE lane = ? AND seq > ? ORDER BY seq LIMIT ?",
                (int(lane), after_seq, limit),
            )
        except sqlite3.Error as err:
            self.stats["read_errors"] += 1
            self._log_throttled("read", logging.ERROR, f"outbox read failed: {err}")
            return []
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
        """Forget events the hub has committed. Returns how many rows were removed.

        If the delete fails (a full disk), the seqs are kept and deleted with the next ack.
        """
        wanted = set(seqs) | self._failed_acks
        self._failed_acks = set()
        if not wanted:
            return 0
        params = [(s,) for s in sorted(wanted)]
        async with self._lock.hold():
            db = self._conn
            try:
                await db.execute("BEGIN IMMEDIATE")
                cur = await db.executemany("DELETE FROM outbox WHERE seq = ?", params)
                removed = max(cur.rowcount, 0)
                await db.execute("COMMIT")
            except sqlite3.Error as err:
                await self._rollback()
                self._failed_acks |= wanted
                self._log_throttled(
                    "ack", logging.ERROR, f"outbox ack of {len(params)} seq(s) failed: {err}"
                )
                return 0
            self._rows = max(0, self._rows - removed)
            if self._gauge.pressure:
                with contextlib.suppress(sqlite3.Error):
                    self._gauge.measure(self._rows, *await self._pages())
        self.stats["acked"] += removed
        return removed

    async def depth(self) -> dict[str, int]:
        """Unacknowledged rows per lane name."""
        try:
            rows = await self._conn.execute_fetchall(  # one hop: see fetch()
                "SELECT lane, COUNT(*) FROM outbox GROUP BY lane"
            )
        except sqlite3.Error as err:
            raise OutboxError(f"outbox: cannot count: {err}") from err
        found = {int(lane): int(n) for lane, n in rows}
        return {lane.name.lower(): found.get(int(lane), 0) for lane in Lane}

    async def oldest_age_s(self) -> float:
        try:
            rows = list(await self._conn.execute_fetchall("SELECT MIN(at) FROM outbox"))
        except sqlite3.Error as err:  # one hop, like depth(): see fetch()
            raise OutboxError(f"outbox: cannot read: {err}") from err
        row = rows[0] if rows else None
        if row is None or row[0] is None:
            return 0.0
        return max(0.0, self._wall_clock() - datetime.fromisoformat(str(row[0])).timestamp())


_LANE_ZH = {Lane.TELEMETRY: "遥测", Lane.NORMAL: "普通"}


def _dropped_key(lane: Lane) -> str:
    return f"dropped_{lane.name.lower()}"
