"""Moves the wall clock of the process it is loaded into (the edge under test).

The fault tests put this directory on the edge's ``PYTHONPATH``; Python imports
``sitecustomize`` at start-up, before the edge's modules, so everything that reads
``time.time`` / ``time.time_ns`` (the outbox's dedupe clock and its timestamps) sees real
time plus the offset in seconds written in ``$FAULTS_WALL_CLOCK_FILE`` (e.g. ``+7200``),
re-read at most every 20 ms. Monotonic clocks are left alone, as by an NTP step.

Why not libfaketime (LD_PRELOAD): it also intercepts pthread condition variables — the
GIL's among them — with known early-timeout and hang bugs in Debian's 0.9.10 (upstream
issues #469, #503); a test of the edge must not add such a variable. This shim moves
exactly the clock the edge's dedupe window reads, and nothing else.
"""

from __future__ import annotations

import os
import time

_PATH = os.environ.get("FAULTS_WALL_CLOCK_FILE")

if _PATH:
    path: str = _PATH
    _real_time, _real_time_ns, _monotonic = time.time, time.time_ns, time.monotonic
    _state = {"offset": 0.0, "read_at": float("-inf")}

    def _offset() -> float:
        now = _monotonic()
        if now - _state["read_at"] >= 0.02:
            _state["read_at"] = now
            try:
                with open(path, encoding="ascii") as file:
                    _state["offset"] = float(file.read().strip() or "0")
            except (OSError, ValueError):
                pass  # keep the last offset
        return _state["offset"]

    def _time() -> float:
        return _real_time() + _offset()

    def _time_ns() -> int:
        return _real_time_ns() + int(_offset() * 1_000_000_000)

    time.time = _time
    time.time_ns = _time_ns
