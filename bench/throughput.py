"""Events per second: sustained edge → hub, backlog drain, and the hub's own ingest rate.

- **Sustained**: the load generators offer heartbeats on ``LOAD_PTYS`` ptys at a fixed
  total rate; after a warm-up the hub's committed events/s over a window is the figure
  (with the edge's intake and outbox growth over the same window, so a figure that only
  holds because the outbox is filling up is visible as such).
- **Backlog**: with the hub stopped (it says offline; the edge keeps everything), the
  generators fill the edge's outbox through the real serial path, as fast as the edge
  takes frames; then the hub starts and the backlog drains. Drain rate = events of the
  backlog ÷ (last − first hub commit time of them), from the hub's ``events`` table.
- **Hub ingest**: ``bench.synthetic_edge`` publishes pre-encoded 250-event batches with
  the uplink's window; the hub's rate from first publish to last ack. Meanwhile the case
  list API (``GET /api/v1/cases``) is polled and timed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx

from bench.measure import CpuWindow
from bench.rig import LOAD_BASE, LOAD_DEVICES, LOAD_PTYS, Rig, run_loads
from bench.sos_latency import Latencies, SosProbe
from simulators.stack import REPO_ROOT


@dataclass
class Sustained:
    offered_per_s: float
    sent_per_s: float
    hub_per_s: float
    edge_stored_per_s: float
    outbox_growth: int
    cpu: dict[str, float]

    @property
    def held(self) -> bool:
        """Everything offered reached the hub: no frames lost, no backlog building up."""
        return self.hub_per_s >= 0.95 * self.sent_per_s and self.edge_stored_per_s >= (
            0.95 * self.sent_per_s
        )

    def text(self) -> str:
        return (
            f"offered {self.offered_per_s:,.0f}/s (written {self.sent_per_s:,.0f}/s): edge "
            f"stored {self.edge_stored_per_s:,.0f}/s, hub committed {self.hub_per_s:,.0f}/s, "
            f"outbox grew by {self.outbox_growth:,}"
        )


def cpu_windows(
    rig: Rig, *, loads: bool = True, extra: dict[str, int] | None = None
) -> dict[str, CpuWindow]:
    """CPU meters for the stack's processes (edges, hub, broker, load generators, ``extra``)."""
    procs: dict[str, int] = dict(extra or {})
    for name, edge in rig.stack.edges.items():
        if edge.running and edge.process is not None:
            procs[name] = edge.process.pid
    if rig.stack.hub is not None and rig.stack.hub.process is not None:
        procs["hub"] = rig.stack.hub.process.pid
    if rig.stack.broker is not None and rig.stack.broker.process is not None:
        procs["mosquitto"] = rig.stack.broker.process.pid
    for k, load in enumerate(rig.loads if loads else []):
        procs[f"load{k}"] = load.proc.pid
    return {name: CpuWindow(pid).start() for name, pid in procs.items()}


def cpu_text(cpu: dict[str, float]) -> str:
    loads = sum(v for k, v in cpu.items() if k.startswith("load"))
    parts = [f"{k} {v:.0%}" for k, v in cpu.items() if not k.startswith("load")]
    if loads:
        parts.append(f"load generators {loads:.0%}")
    return ", ".join(parts)


async def sustained(
    rig: Rig, goal: float, warm_s: float, window_s: float, trials: int
) -> tuple[Sustained | None, list[Sustained]]:
    """The highest offered rate that held (see ``Sustained.held``), in at most ``trials``
    tries: the goal first, then between the best rate that held and the lowest that did
    not, starting from what the edge managed to store. Returns (best, every trial)."""
    tried: list[Sustained] = []
    best: Sustained | None = None
    low, high = 0.0, goal
    rate = goal
    for _ in range(trials):
        trial = await offer(rig, rate, warm_s, window_s)
        tried.append(trial)
        if trial.held:
            best, low = trial, rate
            if rate >= goal:
                break
            rate = (low + high) / 2
        else:
            high = rate
            first_guess = 0.8 * min(trial.edge_stored_per_s, trial.sent_per_s)
            rate = (low + high) / 2 if low else max(1_000.0, min(first_guess, 0.8 * high))
    return best, tried


async def offer(rig: Rig, total_rate: float, warm_s: float, window_s: float) -> Sustained:
    """Offer ``total_rate`` heartbeats/s on the load ptys and measure one window."""
    await rig.wait_drained(600)
    each = total_rate / LOAD_PTYS
    count_each = int(each * (warm_s + window_s + 2))
    t_start = time.monotonic()
    for load in rig.loads:
        load.start(each, count_each)
    await asyncio.sleep(warm_s)  # measurement window, not synchronisation
    e1, s1, t1 = rig.hub_events(), rig.outbox_seq(), time.monotonic()
    depth1 = rig.outbox_depth()
    meters = cpu_windows(rig)
    await asyncio.sleep(window_s)
    cpu = {name: meter.share() for name, meter in meters.items()}
    e2, s2, t2 = rig.hub_events(), rig.outbox_seq(), time.monotonic()
    depth2 = rig.outbox_depth()
    sent = sum(await asyncio.gather(*(load.wait() for load in rig.loads)))
    sent_s = time.monotonic() - t_start
    await rig.wait_drained(600)
    return Sustained(
        offered_per_s=total_rate,
        sent_per_s=sent / sent_s,
        hub_per_s=(e2 - e1) / (t2 - t1),
        edge_stored_per_s=(s2 - s1) / (t2 - t1),
        outbox_growth=depth2 - depth1,
        cpu=cpu,
    )


@dataclass
class Backlog:
    size: int
    build_per_s: float
    drain_per_s: float
    drain_wall_s: float
    sos: Latencies
    hub_restart_s: float
    cpu: dict[str, float] = field(default_factory=dict)


async def fill_outbox(rig: Rig, target: int, first_rate: float = 12_000.0) -> None:
    """Write heartbeats until the edge has stored ``target`` more events.

    Paced rounds of at most 10 s: the edge's frame queue is bounded and drops what it
    cannot take (a real button would retransmit; the generator does not), so the offered
    rate follows what the edge stored in the previous round.
    """
    rate = first_rate
    start = rig.outbox_seq()
    while (stored := rig.outbox_seq() - start) < target:
        seconds = min(10.0, (target - stored) / rate + 0.5)
        before = rig.outbox_seq()
        t = time.monotonic()
        sent = await run_loads(rig.loads, rate / LOAD_PTYS, int(rate / LOAD_PTYS * seconds))
        await asyncio.sleep(0.5)  # the last group commit of the round
        got = rig.outbox_seq() - before
        if got < 0.97 * sent:
            rate = max(1_000.0, got / (time.monotonic() - t) * 0.95)
        else:
            rate *= 1.15


async def backlog(rig: Rig, probe: SosProbe, client: httpx.AsyncClient, target: int) -> Backlog:
    """Build ``target`` events in the edge's outbox with the hub down, then drain them."""
    await rig.wait_drained(600)
    await probe.close()  # an open event stream would hold the hub's graceful shutdown
    await asyncio.to_thread(rig.stop_hub)
    seq0 = rig.outbox_seq()
    t0 = time.monotonic()
    await fill_outbox(rig, target)
    build_s = time.monotonic() - t0
    size = rig.outbox_depth()
    first_id = rig.hub_events() + 1
    t_restart = time.monotonic()
    await asyncio.to_thread(rig.start_hub, **rig.hub_overrides)
    hub_restart_s = time.monotonic() - t_restart
    await probe.connect(client)
    meters = cpu_windows(rig)
    goal = first_id - 1 + int(size * 0.9)
    sos = await probe.sample(200, gap_s=0.05, timeout_s=30, while_=lambda: rig.hub_events() < goal)
    await rig.wait_drained(3600)
    drain_wall_s = time.monotonic() - t_restart
    cpu = {name: meter.share() for name, meter in meters.items()}
    with rig.hub_sql() as db:
        count, first, last = db.execute(
            "SELECT COUNT(*), MIN(julianday(received_at)), MAX(julianday(received_at)) "
            "FROM events WHERE id >= ? AND lane = 'telemetry'",
            (first_id,),
        ).fetchone()
    drain_s = max(1e-3, (last - first) * 86400.0) if count else float("inf")
    return Backlog(
        size=size,
        build_per_s=(rig.outbox_seq() - seq0) / build_s,
        drain_per_s=count / drain_s,
        drain_wall_s=drain_wall_s,
        sos=sos,
        hub_restart_s=hub_restart_s,
        cpu=cpu,
    )


@dataclass
class HubIngest:
    events: int
    per_s: float
    api: Latencies
    cpu: dict[str, float]


SYNTHETIC_EDGE = "edge-synthetic"


def start_synthetic_edge(rig: Rig, events: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.synthetic_edge",
            str(rig.stack.broker_port),
            SYNTHETIC_EDGE,
            str(events),
            "8",  # the uplink's default window
            str(LOAD_BASE),
            str(LOAD_PTYS),
            str(LOAD_DEVICES),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


async def hub_ingest(rig: Rig, client: httpx.AsyncClient, events: int) -> HubIngest:
    # The load buttons move behind the synthetic edge for this run (the hub takes a
    # device's events only from its registered edge), and back afterwards.
    rig.register_devices(LOAD_BASE, LOAD_PTYS, LOAD_DEVICES, edge_id=SYNTHETIC_EDGE)
    try:
        return await _hub_ingest(rig, client, events)
    finally:
        rig.register_devices(LOAD_BASE, LOAD_PTYS, LOAD_DEVICES)


async def _hub_ingest(rig: Rig, client: httpx.AsyncClient, events: int) -> HubIngest:
    proc = start_synthetic_edge(rig, events)
    assert proc.stdout is not None
    stdout = proc.stdout
    try:
        line = await asyncio.to_thread(stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"bench.synthetic_edge: {line.strip()}")
        meters = cpu_windows(rig, loads=False, extra={"synthetic edge": proc.pid})
        finished = asyncio.create_task(asyncio.to_thread(stdout.readline))
        api = Latencies()
        while not finished.done():
            t = time.perf_counter()
            reply = await client.get("/api/v1/cases", params={"limit": 50})
            reply.raise_for_status()
            api.samples.append(time.perf_counter() - t)
            await asyncio.sleep(0.1)  # ten requests a second, as a few dashboards would
        cpu = {name: meter.share() for name, meter in meters.items()}
        words = (await finished).split()
    finally:
        if proc.poll() is None:
            proc.wait(30)
    if not words or words[0] != "done":
        raise RuntimeError(f"bench.synthetic_edge ended with {' '.join(words)!r}")
    acked, t0, t1 = int(words[1]), float(words[2]), float(words[3])
    return HubIngest(events=acked, per_s=acked / max(1e-9, t1 - t0), api=api, cpu=cpu)
