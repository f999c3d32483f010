"""SOS latency from the pty write to the on-duty worker's event stream (issue #2).

Three situations, measured in one run on this machine with real processes (private
Mosquitto, ``python -m hub`` on SQLite, ``python -m edge``):

1. idle;
2. while a separate process feeds 2,000 telemetry events/s through the same edge;
3. while a 100,000-event backlog drains after a broker outage.

t0 is taken just before the SOS frame is written to the pty master, t1 when the SSE
notification line arrives at the client in the same process, so one clock measures both.
Every SOS opens a new case (dedupe window 0) so every press produces one notification.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from simulators.broker import MosquittoProcess
from simulators.button import SimulatedButtonBus
from simulators.stack import REPO_ROOT, Stack
from simulators.worker_phone import stream_events

BUTTON = 77626
LOAD_FIRST_SERIAL = 900_000
LOAD_DEVICES = 200


@dataclass
class Result:
    name: str
    samples: list[float]
    note: str = ""

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class Notifications:
    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.ready = asyncio.Event()

    async def follow(self, client: httpx.AsyncClient, worker_id: int) -> None:
        async for event, data in stream_events(client, worker_id):
            if event == "ready":
                self.ready.set()
            elif event == "notification" and data["kind"] == "sos":
                self.arrivals.append(time.perf_counter())


async def sample(
    bus: SimulatedButtonBus,
    notes: Notifications,
    count: int,
    gap_s: float = 0.1,
    timeout_s: float = 10.0,
) -> list[float]:
    samples = []
    for _ in range(count):
        before = len(notes.arrivals)
        t0 = time.perf_counter()
        bus.button(BUTTON).press_sos()
        deadline = t0 + timeout_s
        while len(notes.arrivals) == before and time.perf_counter() < deadline:
            await asyncio.sleep(0.0005)
        if len(notes.arrivals) > before:
            samples.append(notes.arrivals[before] - t0)
        await asyncio.sleep(gap_s)  # spacing between presses, not synchronisation
    return samples


def sos_edge_to_hub_ms(db_path: Path, last: int) -> list[float]:
    """For the last ``last`` SOS events: hub commit time minus edge outbox time, in ms."""
    with sqlite3.connect(db_path, timeout=30) as db:
        rows = db.execute(
            "SELECT (julianday(received_at) - julianday(occurred_at)) * 86400000.0 "
            "FROM events WHERE kind = 'sos' ORDER BY id DESC LIMIT ?",
            (last,),
        ).fetchall()
    return sorted(float(r[0]) for r in rows)


def register_load_devices(db_path: Path) -> None:
    with sqlite3.connect(db_path, timeout=30) as db:
        household = db.execute(
            "SELECT household_id FROM devices WHERE id = ?", (f"cb100-{BUTTON}",)
        ).fetchone()[0]
        db.executemany(
            "INSERT OR IGNORE INTO devices (id, household_id, place, edge_id, profile, online) "
            "VALUES (?, ?, 'bench', 'edge-demo', 'cb100', 0)",
            [(f"cb100-{LOAD_FIRST_SERIAL + i}", household) for i in range(LOAD_DEVICES)],
        )


def hub_event_count(db_path: Path) -> int:
    with sqlite3.connect(db_path, timeout=30) as db:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def outbox_depth(path: Path) -> int:
    try:
        with sqlite3.connect(path, timeout=30) as db:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except sqlite3.Error:
        return -1


def start_load(link: Path, rate: float, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.load",
            str(link),
            str(rate),
            str(seconds),
            str(LOAD_FIRST_SERIAL),
            str(LOAD_DEVICES),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


async def run(samples: int = 100, backlog: int = 100_000) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="bench-sos-") as tmp:
        work = Path(tmp)
        stack = Stack(work)
        stack.start_broker()
        stack.start_hub(escalation={"grid_worker_s": 36000, "dedupe_window_s": 0})
        db_path = work / "hub" / "hub.db"
        register_load_devices(db_path)
        sos_link, load_link = work / "bus0", work / "bus1"
        results: list[Result] = []
        try:
            async with (
                SimulatedButtonBus([BUTTON], link_path=sos_link, retransmit_s=5) as bus,
                httpx.AsyncClient(
                    base_url=stack.hub_url, headers=stack.headers(), timeout=30
                ) as client,
            ):
                load = start_load(load_link, 0, 0.1)  # create the link before the edge starts
                load.wait()
                stack.start_edge("edge-demo", [str(sos_link), str(load_link)], status_interval_s=1)
                worker = (
                    await client.get("/api/v1/workers", params={"role": "grid_worker"})
                ).json()[0]["id"]
                notes = Notifications()
                follower = asyncio.create_task(notes.follow(client, worker))
                await asyncio.wait_for(notes.ready.wait(), 10)
                await sample(bus, notes, 5)  # warm-up, not counted
                results.append(Result("idle", await sample(bus, notes, samples)))

                load = start_load(load_link, 2000, samples * 0.1 + 15)
                before = hub_event_count(db_path)
                t_load = time.perf_counter()
                await asyncio.sleep(3)  # let the load reach steady state
                lat = await sample(bus, notes, samples)
                rate = (hub_event_count(db_path) - before) / (time.perf_counter() - t_load)
                results.append(
                    Result(
                        "2,000 telemetry/s", lat, f"hub committed {rate:,.0f} events/s meanwhile"
                    )
                )
                load.wait()

                assert stack.broker is not None
                port = stack.broker.port
                stack.broker.kill()
                load = start_load(load_link, 10000, backlog / 10000)
                load.wait()
                outbox = work / "edge-demo" / "outbox.db"
                deadline = time.monotonic() + 300
                while outbox_depth(outbox) < backlog * 0.98 and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                depth = outbox_depth(outbox)
                stack.broker = MosquittoProcess(work / "broker2", port).start()
                t_drain = time.perf_counter()
                while outbox_depth(outbox) > depth * 0.9 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)  # sample during the drain, not the reconnect
                lat = await sample(bus, notes, min(samples, 40), gap_s=0.05, timeout_s=30)
                drained_during = depth - outbox_depth(outbox)
                while outbox_depth(outbox) > 0 and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                drain_s = time.perf_counter() - t_drain
                split = sos_edge_to_hub_ms(db_path, len(lat))
                print(f"backlog: edge outbox -> hub commit ms: {[round(x) for x in split]}")
                print(f"backlog: pty -> stream ms: {sorted(round(x * 1000) for x in lat)}")
                results.append(
                    Result(
                        f"{depth:,}-event backlog draining",
                        lat,
                        f"{drained_during:,} drained while sampling; backlog gone after "
                        f"{drain_s:.1f} s ({depth / drain_s:,.0f} events/s)",
                    )
                )
                follower.cancel()
        finally:
            stack.stop()
        return results


def table(results: list[Result]) -> str:
    lines = [
        "| SOS latency, pty → worker stream | n | p50 ms | p99 ms | goal p99 | p99/goal | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if not r.samples:
            lines.append(f"| {r.name} | 0 | - | - | 50 | - | no sample arrived; {r.note} |")
            continue
        p99 = r.pct(0.99)
        lines.append(
            f"| {r.name} | {len(r.samples)} | {r.pct(0.5):.1f} | {p99:.1f} | 50 | "
            f"{p99 / 50:.2f} | {r.note} |"
        )
    return "\n".join(lines)


def main() -> int:
    results = asyncio.run(run())
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
