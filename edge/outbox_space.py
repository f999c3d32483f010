"""Room for the outbox: its caps and pressure level (``outbox:`` in the edge config), the
fill level, which SQLite errors mean "no space", and the space reserve kept for alarms.

Why a reserve: on a disk filled by something else, SQLite often cannot even delete rows
(in WAL mode a delete appends to the WAL too) or open the database (its WAL index needs
space), so nothing the outbox does inside its own file makes room. A file of
``reserve_bytes`` held beside the database is space the outbox can give back to the file
system at the moment an alarm would otherwise be refused, or the database not open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

#: Pressure turns off only this many percentage points below ``pressure_pct``.
PRESSURE_HYSTERESIS_PCT = 5.0
#: The reserve is re-created at most this often, and only with twice its size free.
RESERVE_RETRY_S = 1.0


class OutboxSettings(BaseModel):
    """``outbox:`` in the edge config: how much the outbox may hold, and when to warn."""

    model_config = {"extra": "forbid"}

    max_rows: int = Field(default=2_000_000, ge=1, description="unacknowledged events kept")
    max_bytes: int = Field(
        default=1 << 30, ge=1 << 16, description="database pages in use, in bytes"
    )
    pressure_pct: float = Field(
        default=80.0, gt=0, le=100, description="report buffer pressure from this fill level"
    )
    reserve_bytes: int = Field(
        default=8 << 20, ge=0, le=1 << 30, description="disk space held back for alarms; 0: off"
    )
    dedupe_window_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="a frame seq seen again within this is a retransmission (acked again)",
    )


def fill_pct(
    settings: OutboxSettings, rows: int, used_bytes: int, spare_bytes: int, disk_free: int | None
) -> float:
    """How full the outbox is, in percent of the room it may use: the row cap, or the
    byte cap, or — when the disk has less left — the pages it has plus the free disk."""
    capacity = settings.max_bytes
    if disk_free is not None:
        capacity = min(capacity, used_bytes + spare_bytes + disk_free)
    by_bytes = 100.0 if capacity <= 0 else 100.0 * used_bytes / capacity
    return round(max(100.0 * rows / settings.max_rows, by_bytes), 1)


def out_of_space(err: sqlite3.Error) -> bool:
    """SQLITE_FULL, or an I/O error (a full disk can also fail a WAL-index extension)."""
    code = getattr(err, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)


def disk_free_bytes(directory: Path) -> int | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class SpaceReserve:
    """A file of ``size`` bytes beside the outbox, deleted to give an alarm room when the
    disk is full and re-created when the disk has room again. ``size`` 0 disables it."""

    def __init__(
        self, path: Path, size: int, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.size = size
        self.held = False
        self._monotonic = monotonic
        self._last_try = -math.inf

    async def claim(self) -> bool:
        """At open: keep an existing reserve file or allocate one. False if the disk is full."""
        if self.size:
            self.held = await asyncio.to_thread(self._allocate)
        return self.held

    async def restore(self) -> bool:
        """Re-create a spent reserve if the disk has twice its size free (throttled)."""
        if self.held or not self.size:
            return self.held
        now = self._monotonic()
        if now - self._last_try < RESERVE_RETRY_S:
            return False
        self._last_try = now
        free = disk_free_bytes(self.path.parent)
        if free is not None and free < 2 * self.size:
            return False
        self.held = await asyncio.to_thread(self._allocate)
        if self.held:
            log.info("outbox: space reserve of %d bytes re-created (%s)", self.size, self.path)
        return self.held

    def release(self) -> bool:
        """Delete the reserve so an alarm can use its space. False if there was none."""
        if not self.held:
            return False
        self.held = False
        self._last_try = self._monotonic()
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False  # someone removed it already: nothing to give
        except OSError as err:
            log.error("outbox: cannot delete the space reserve %s: %s", self.path, err)
            return False
        return True

    def discard_leftover(self) -> bool:
        """Before :meth:`claim`: delete a reserve file left by the last run (the disk is
        too full to open the database). False if there was none."""
        try:
            self.path.unlink()
        except OSError:
            return False
        self.held = False
        return True

    def _allocate(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)  # real blocks, not a sparse file
                os.ftruncate(fd, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:
            with contextlib.suppress(OSError):
                self.path.unlink()
            log.warning("outbox: no space reserve of %d bytes: %s", self.size, err)
            return False
        return True


#: After a full disk, writes count as normal again only with this much free (or the reserve).
HEADROOM_BYTES = 1 << 20


class BufferGauge:
    """Fill level, buffer pressure and the disk-full state, with one log line per change.

    Pressure turns on at ``pressure_pct`` of the room the outbox may use (see
    :func:`fill_pct`) or while writes fail for lack of space, and off again only
    ``PRESSURE_HYSTERESIS_PCT`` points lower, so a level near the threshold does not make
    the edge publish its status on every commit.
    """

    def __init__(
        self,
        settings: OutboxSettings,
        directory: Path,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.on_change = on_change
        self.rows = 0
        self.used_bytes = 0
        self.spare_bytes = 0  # free pages inside the database file: room needing no disk
        self.disk_free: int | None = None
        self.fill_pct = 0.0
        self.pressure = False
        self.disk_full = False

    def measure(self, rows: int, used_bytes: int, spare_bytes: int) -> None:
        """Take the outbox's figures and the disk's free space now; update pressure."""
        self.rows, self.used_bytes, self.spare_bytes = rows, used_bytes, spare_bytes
        self.disk_free = disk_free_bytes(self.directory)
        self.fill_pct = fill_pct(self.settings, rows, used_bytes, spare_bytes, self.disk_free)
        self._refresh()

    def has_room(self, reserve: SpaceReserve) -> bool:
        """Whether a full-disk episode is over: the reserve is back (or not used) and the
        disk has headroom again — not merely room for the one batch that just fitted."""
        if reserve.size and not reserve.held:
            return False
        self.disk_free = disk_free_bytes(self.directory)
        return self.disk_free is None or self.disk_free >= max(reserve.size, HEADROOM_BYTES)

    def set_disk_full(self, full: bool) -> None:
        if full == self.disk_full:
            return
        self.disk_full = full
        if full:
            log.warning(
                "outbox: disk full, only what fits is stored · 磁盘已满，网关缓存受限 (%s)",
                self.directory,
            )
        else:
            log.info("outbox: disk has room again · 磁盘空间已恢复")
        self.measure(self.rows, self.used_bytes, self.spare_bytes)
        self._notify()

    def _refresh(self) -> None:
        threshold = self.settings.pressure_pct
        if self.pressure:
            threshold -= PRESSURE_HYSTERESIS_PCT
        pressure = self.disk_full or self.fill_pct >= threshold
        if pressure == self.pressure:
            return
        self.pressure = pressure
        if pressure:
            log.warning(
                "outbox: buffer pressure, %.1f%% full (%d rows, %d bytes in use, disk free %s) "
                "· 网关缓存压力：已用 %.1f%%",
                self.fill_pct,
                self.rows,
                self.used_bytes,
                self.disk_free,
                self.fill_pct,
            )
        else:
            log.info("outbox: buffer pressure over, %.1f%% full · 缓存压力解除", self.fill_pct)
        self._notify()

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def as_info(self, reserve: SpaceReserve) -> dict[str, Any]:
        """The status fields (issue #5): pressure and fill level on top, details below."""
        return {
            "buffer_pressure": self.pressure,
            "fill_pct": self.fill_pct,
            "buffer": {
                "rows": self.rows,
                "bytes": self.used_bytes,
                "max_rows": self.settings.max_rows,
                "max_bytes": self.settings.max_bytes,
                "disk_free_bytes": self.disk_free,
                "disk_full": self.disk_full,
                "reserve_held": reserve.held,
            },
        }
