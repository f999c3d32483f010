"""Edge memory and CPU at steady state: 200 CB-100 buttons, heartbeats totalling 100/s.

A second edge process (``edge-footprint``, one serial bus, its own outbox) runs beside the
stack's, so its figures are not inflated by the other rows' backlogs. Its 200 buttons
(distinct serials) are registered at the hub, so the events are forwarded and committed
as in production. After a warm-up, CPU is user + system time of the whole process (all
threads) over a window ÷ wall time; memory is VmRSS at the end and VmHWM (peak) from
``/proc``. The floor beside it: a bare interpreter that has imported the edge's modules.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass

from bench.measure import CpuWindow, memory_kib
from bench.rig import FOOTPRINT_BASE, LoadProcess, Rig
from simulators.stack import REPO_ROOT

EDGE_ID = "edge-footprint"
DEVICES = 200
RATE = 100.0

_IMPORTS = "import edge.agent, edge.__main__, sys; print('ready', flush=True); sys.stdin.readline()"


@dataclass
class Footprint:
    rss_mib: float
    peak_mib: float
    cpu_share: float
    hub_events: int
    floor_rss_mib: float


def import_floor_mib() -> float:
    """RSS of a Python that has only imported the edge's code and libraries."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _IMPORTS],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        proc.stdout.readline()
        rss = memory_kib(proc.pid)["VmRSS"] / 1024
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return rss


async def footprint(rig: Rig, warm_s: float, window_s: float) -> Footprint:
    rig.register_devices(FOOTPRINT_BASE, 1, DEVICES, edge_id=EDGE_ID)
    load = LoadProcess(rig.workdir / "bus-footprint", FOOTPRINT_BASE, DEVICES)
    try:
        edge = rig.stack.start_edge(EDGE_ID, [str(load.link)], log_level="WARNING")
        assert edge.process is not None
        pid = edge.process.pid
        before = rig.hub_events()
        load.start(RATE, int(RATE * (warm_s + window_s + 10)))
        await asyncio.sleep(warm_s)  # measurement window, not synchronisation
        meter = CpuWindow(pid).start()
        await asyncio.sleep(window_s)
        cpu = meter.share()
        memory = memory_kib(pid)
        forwarded = rig.hub_events() - before
        load.stop()
        await load.wait()
        edge.stop()
        del rig.stack.edges[EDGE_ID]
    finally:
        load.close()
    return Footprint(
        rss_mib=memory["VmRSS"] / 1024,
        peak_mib=memory["VmHWM"] / 1024,
        cpu_share=cpu,
        hub_events=forwarded,
        floor_rss_mib=await asyncio.to_thread(import_floor_mib),
    )
