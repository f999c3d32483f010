"""SOS latency at one real edge while a city's other edges load the same hub (issue #13).

``PROCESSES`` processes of :mod:`bench.synthetic_edge` run ``EDGES`` edges between them,
each edge on its own MQTT connection with its own window and its own 20 registered
buttons, each paced at an equal share of the offered rate (5,000 events/s in batches of
``CITY_BATCH``). Meanwhile the bench presses the SOS button on the real edge's pty (the
rig's ``edge-demo``, whose own buses are quiet) and times the worker's SSE line, as in
the idle SOS row. So the hub takes this one alarm among a city's telemetry; the real
edge's path is the idle one.

Reported beside the latencies: the rate offered (what the schedules asked), published
(what the windows let out: a hub that does not keep up holds the windows shut), acked
by the hub, and committed at the hub over the SOS window (from ``MAX(events.id)``).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.measure import CpuWindow
from bench.rig import Rig
from bench.sos_latency import Latencies, SosProbe
from bench.throughput import cpu_windows
from simulators.stack import REPO_ROOT

CITY_BASE = 700_000  # serial of the first city button: process p, edge j → + 1000·(10p + j)
DEVICES_PER_EDGE = 20
CITY_BATCH = 50  # a real uplink at 100 events/s sends small batches, not full 250s
WINDOW = 8  # the uplink's default window
WARM_S = 3.0


@dataclass
class CityLoad:
    edges: int
    processes: int
    offered_per_s: float
    published_per_s: float
    acked_per_s: float
    hub_per_s: float
    behind_batches: int
    sos: Latencies
    cpu: dict[str, float]
    seconds: float


def edge_name(process: int, j: int) -> str:
    return f"edge-city{process}-{j:02d}"


def register_city(rig: Rig, edges: int, processes: int) -> None:
    """Every city edge's buttons, bound to their edge at the hub (as an installer would)."""
    per = edges // processes
    for p in range(processes):
        for j in range(per):
            first = CITY_BASE + 1000 * (per * p + j)
            rig.register_devices(first, 1, DEVICES_PER_EDGE, edge_id=edge_name(p, j))


def _start(rig: Rig, p: int, per: int, rate_each: float, seconds: float) -> subprocess.Popen[str]:
    events = max(CITY_BATCH, int(rate_each * seconds))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.synthetic_edge",
            str(rig.stack.broker_port),
            f"edge-city{p}",
            str(events),
            str(WINDOW),
            str(CITY_BASE + 1000 * per * p),
            "1",
            str(DEVICES_PER_EDGE),
            "--edges",
            str(per),
            "--rate",
            f"{rate_each:.3f}",
            "--batch",
            str(CITY_BATCH),
        ],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


async def city_load(
    rig: Rig,
    probe: SosProbe,
    *,
    edges: int,
    processes: int,
    rate: float,
    seconds: float,
    samples: int,
) -> CityLoad:
    """Offer ``rate`` events/s from ``edges`` synthetic edges for ``seconds``; sample SOS."""
    per = edges // processes
    edges = per * processes
    await asyncio.to_thread(register_city, rig, edges, processes)
    await rig.wait_drained(600)
    rate_each = rate / edges
    procs = [_start(rig, p, per, rate_each, seconds) for p in range(processes)]
    finished = False
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            if line.strip() != "ready":
                raise RuntimeError(f"bench.synthetic_edge (city): {line.strip()!r}")
        meters: dict[str, CpuWindow] = cpu_windows(
            rig, loads=False, extra={f"city{p}": proc.pid for p, proc in enumerate(procs)}
        )
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        t_go = time.monotonic()
        await asyncio.sleep(WARM_S)  # the load reaches its pace; not synchronisation
        e0, t0 = rig.hub_events(), time.monotonic()
        end = t_go + seconds - 1.0
        sos = await probe.sample(samples, while_=lambda: time.monotonic() < end)
        e1, t1 = rig.hub_events(), time.monotonic()
        cpu = {name: meter.share() for name, meter in meters.items()}
        words: list[list[str]] = []
        for proc in procs:
            assert proc.stdout is not None
            words.append((await asyncio.to_thread(proc.stdout.readline)).split())
        finished = True
    finally:
        for proc in procs:
            try:
                proc.wait(60 if finished else 0.1)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    if any(len(w) < 6 or w[0] != "done" for w in words):
        raise RuntimeError(f"bench.synthetic_edge (city) ended with {words!r}")
    acked = sum(int(w[1]) for w in words)
    first = min(float(w[2]) for w in words)
    last = max(float(w[3]) for w in words)
    published = sum(int(w[4]) for w in words)
    return CityLoad(
        edges=edges,
        processes=processes,
        offered_per_s=rate_each * edges,
        published_per_s=published / seconds,
        acked_per_s=acked / max(1e-9, last - first),
        hub_per_s=(e1 - e0) / max(1e-9, t1 - t0),
        behind_batches=sum(int(w[5]) for w in words),
        sos=sos,
        cpu=cpu,
        seconds=seconds,
    )
