"""SOS latency from the pty write to the on-duty worker's event stream.

t0 is taken just before the SOS frame is written to the pty master, t1 when the SSE
notification line arrives at the client in the same process, so one clock measures both.
Every SOS opens a new case (dedupe window 0) so every press produces one notification.
The path measured: pty → edge (decode, outbox commit with fsync, link ack) → uplink (alarm
lane first) → Mosquitto → hub (alarm messages first; insert, case, audit, notification
rows, commit with fsync, ack) → SSE.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from bench.measure import percentile
from bench.rig import SOS_BUTTON, Notifications, worker_id
from simulators.button import SimulatedButtonBus

GRID_WORKER_PHONE = "13800000001"  # 王丽, on duty for the SOS button's grid


@dataclass
class Latencies:
    samples: list[float] = field(default_factory=list)
    lost: int = 0  # presses whose notification did not arrive within the timeout

    def p(self, q: float) -> float:
        return percentile(self.samples, q) * 1000

    def text(self) -> str:
        if not self.samples:
            return f"no notification arrived (n=0, lost {self.lost})"
        lost = f", {self.lost} lost" if self.lost else ""
        return f"p50 {self.p(0.5):.1f} / p99 {self.p(0.99):.1f} ms (n={len(self.samples)}{lost})"


class SosProbe:
    """The measured SOS button and the grid worker's phone that should hear it."""

    def __init__(self, bus: SimulatedButtonBus, check: Callable[[], None]) -> None:
        self.bus = bus
        self.check = check  # raises when a process of the stack has died
        self.stream = Notifications()

    async def connect(self, client: httpx.AsyncClient) -> None:
        """(Re)subscribe to the worker's stream, e.g. after a hub restart."""
        await self.stream.close()
        self.stream = Notifications()
        await self.stream.follow(client, await worker_id(client, GRID_WORKER_PHONE))

    async def close(self) -> None:
        await self.stream.close()

    def _sos_arrivals(self, after: int) -> list[float]:
        return [t for t, data in self.stream.arrivals[after:] if data.get("kind") == "sos"]

    async def sample(
        self,
        count: int,
        *,
        gap_s: float = 0.1,
        timeout_s: float = 10.0,
        while_: Callable[[], bool] | None = None,
    ) -> Latencies:
        """Press SOS ``count`` times, one at a time; stop early once ``while_()`` is false."""
        result = Latencies()
        for _ in range(count):
            self.check()
            if while_ is not None and not while_():
                break
            before = len(self.stream.arrivals)
            t0 = time.perf_counter()
            self.bus.button(SOS_BUTTON).press_sos()
            deadline = t0 + timeout_s
            while time.perf_counter() < deadline:
                arrived = self._sos_arrivals(before)
                if arrived:
                    result.samples.append(arrived[0] - t0)
                    break
                await asyncio.sleep(0.0005)
            else:
                result.lost += 1
            await asyncio.sleep(gap_s)  # spacing between presses, not synchronisation
        return result
