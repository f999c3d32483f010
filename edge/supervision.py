"""Device supervision: is each device alive? Transitions become ``device.offline`` /
``device.online`` events (normal lane) for the hub, which files maintenance tasks and
groups simultaneous outages (a power cut) into one alert.

Two sources of truth feed it:

* polled devices: the driver's bus scheduler decides (``offline_after`` failed
  transactions in a row) and calls :meth:`Supervisor.offline` / :meth:`Supervisor.online`;
* devices that speak on their own (MQTT doors and lockers, call buttons): the driver calls
  :meth:`Supervisor.heard` on every message, and a device that has been silent for
  ``missed`` heartbeat intervals is declared offline by :meth:`run`.

Only transitions are reported, never a state twice in a row, so a dead meter polled every
second costs one event, not one per poll. The callers are synchronous (scheduler
callbacks, MQTT callbacks), so transitions are queued and recorded in order by
:meth:`run`; one that the outbox cannot store yet is retried, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contract import Lane
from contract.envelope import format_time, utc_now
from edge.errors import OutboxError
from edge.sink import EventSink

log = logging.getLogger(__name__)

OFFLINE = "device.offline"
ONLINE = "device.online"
RETRY_S = 1.0


@dataclass(slots=True)
class _Watch:
    interval_s: float
    missed: int
    last_heard: float


class Supervisor:
    def __init__(self, sink: EventSink, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._sink = sink
        self._clock = clock
        self._online: dict[str, bool] = {}  # absent: not heard from yet
        self._watches: dict[str, _Watch] = {}
        self._queue: deque[tuple[str, str, dict[str, Any]]] = deque()
        self._wake = asyncio.Event()
        self.stats = {"offline": 0, "online": 0}

    # -- facts from the drivers -----------------------------------------------------------
    def watch(self, device_id: str, heartbeat_interval_s: float, missed: int = 3) -> None:
        """Expect ``device_id`` to be heard at least every ``heartbeat_interval_s``."""
        self._watches[device_id] = _Watch(heartbeat_interval_s, missed, self._clock())

    def heard(self, device_id: str) -> None:
        watch = self._watches.get(device_id)
        if watch is not None:
            watch.last_heard = self._clock()
        self.online(device_id)

    def online(self, device_id: str) -> None:
        was = self._online.get(device_id)
        self._online[device_id] = True
        if was is False:
            self.stats["online"] += 1
            self._enqueue(device_id, ONLINE, {})

    def offline(self, device_id: str, reason: str) -> None:
        if self._online.get(device_id) is False:
            return
        self._online[device_id] = False
        self.stats["offline"] += 1
        self._enqueue(device_id, OFFLINE, {"reason": reason, "since": format_time(utc_now())})

    def is_online(self, device_id: str) -> bool | None:
        return self._online.get(device_id)

    def online_count(self) -> int:
        return sum(1 for up in self._online.values() if up)

    def _enqueue(self, device_id: str, kind: str, data: dict[str, Any]) -> None:
        log.info("%s %s %s", device_id, kind, data.get("reason", ""))
        self._queue.append((device_id, kind, data))
        self._wake.set()

    # -- running --------------------------------------------------------------------------
    def check_heartbeats(self) -> None:
        now = self._clock()
        for device_id, watch in self._watches.items():
            silent = now - watch.last_heard
            overdue = silent > watch.interval_s * watch.missed
            if overdue and self._online.get(device_id) is not False:
                self.offline(
                    device_id,
                    f"no message for {silent:.0f} s ({watch.missed} heartbeats of "
                    f"{watch.interval_s:g} s missed)",
                )

    async def run(self) -> None:
        tick = min([w.interval_s for w in self._watches.values()] + [1.0])
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):  # not wait_for: 3.11 can swallow a cancel
                    await self._wake.wait()
            self._wake.clear()
            self.check_heartbeats()
            while self._queue:
                device_id, kind, data = self._queue[0]
                try:
                    await self._sink.record(device_id, kind, Lane.NORMAL, data)
                except OutboxError as err:
                    log.warning("cannot record %s of %s yet (%s); retrying", kind, device_id, err)
                    await asyncio.sleep(RETRY_S)
                    continue
                self._queue.popleft()
