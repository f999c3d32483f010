"""Small measuring tools shared by the benchmarks: percentiles, process CPU and memory.

Process figures come from ``/proc`` (Linux), read from outside the measured process, so
measuring costs the edge nothing and needs no extra dependency.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty sequence."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered))))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


@dataclass
class CpuWindow:
    """CPU share of one process over a wall-clock window: ``start()`` … ``stop()``."""

    pid: int
    wall0: float = 0.0
    cpu0: float = 0.0

    def start(self) -> CpuWindow:
        self.wall0, self.cpu0 = time.monotonic(), cpu_seconds(self.pid)
        return self

    def share(self) -> float:
        """Fraction of one core used since ``start()``."""
        return (cpu_seconds(self.pid) - self.cpu0) / max(1e-9, time.monotonic() - self.wall0)


def machine_load() -> str:
    """The 1/5/15-minute load averages, to show how busy the machine was."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def max_rowid(db_path: Path, table: str, column: str = "id") -> int:
    """``MAX(column)`` of a table, 0 if empty: O(1) on an integer primary key."""
    with sqlite3.connect(db_path, timeout=30) as db:
        value = db.execute(f"SELECT MAX({column}) FROM {table}").fetchone()[0]
    return int(value or 0)


def row_count(db_path: Path, table: str) -> int:
    with sqlite3.connect(db_path, timeout=30) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
