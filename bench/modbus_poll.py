"""Issue #3's bench rows: Modbus TCP polling at scale, and one RS-485 bus against its wire.

**200 Modbus TCP devices, polled every second, one edge process.** A real ``python -m
edge`` whose config lists 200 ``bin-sensor`` devices (the shipped profile with its poll
set to every second), served by ``bench.modbus_fleet`` in its own process (10 TCP ports ×
20 unit ids, 100 registers each). The servers stamp each request as it arrives; the poll
rate is requests ÷ window, and schedule jitter is, per device, how far each interval
between two of its requests is from 1 s (p99 over all devices). CPU and RSS of the edge
come from ``/proc``.

**One RS-485 bus at 9600 baud, real byte timing.** The edge's Modbus RTU driver, in this
process, polls one unit (ten 16-bit registers, one request) as fast as its schedule
allows through two pty pairs joined by a relay that delivers each direction's bytes at
the wire's pace (11 bits per character: 8E1 framing; a pty itself has no baud rate). The
ceiling is what that wire allows: request (8 bytes) + reply (25 bytes) + the 3.5-character
silence before each frame, i.e. ``1 / ((33 + 7) × 11 / 9600)`` = 21.8 requests/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.measure import CpuWindow, memory_kib, percentile
from contract import Lane
from edge.drivers.modbus import ModbusDevice, PointSpec, PollPlan
from edge.drivers.modbus_rtu import ModbusRtuDriver
from profiles.registers import Point
from profiles.transports import ModbusRtuTransport
from simulators.broker import MosquittoProcess
from simulators.stack import REPO_ROOT

TCP_DEVICES = 200
PER_PORT = 1  # each device its own endpoint, as a sensor with its own IP
BAUD = 9600
BITS_PER_CHAR = 11
REQUEST_BYTES = 8  # unit, function, address, count, CRC
REPLY_BYTES = 5 + 2 * 10  # unit, function, byte count, 10 registers, CRC


def wire_ceiling_per_s() -> float:
    chars = REQUEST_BYTES + REPLY_BYTES + 2 * 3.5
    return 1 / (chars * BITS_PER_CHAR / BAUD)


@dataclass
class TcpFleetResult:
    devices: int
    polls_per_s: float
    jitter_p50_ms: float
    jitter_p99_ms: float
    cpu_share: float
    rss_mib: float
    peak_mib: float


@dataclass
class RtuResult:
    requests_per_s: float
    ceiling_per_s: float
    polls_ok: int
    failures: int


class _Fleet:
    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.modbus_fleet", *argv],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"modbus fleet did not start: {line}")
        self.where = line[1].split(",")

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def _profiles(work: Path, every_s: float) -> Path:
    """The shipped bin-sensor profile with its poll every ``every_s`` seconds."""
    folder = work / "profiles"
    folder.mkdir(parents=True, exist_ok=True)
    profile = yaml.safe_load((REPO_ROOT / "device_profiles" / "bin-sensor.yaml").read_text())
    for poll in profile["polls"]:
        poll.pop("cron", None)
        poll["every_s"] = every_s
    (folder / "bin-sensor.yaml").write_text(yaml.safe_dump(profile, allow_unicode=True))
    return folder


def _jitter_ms(stamps: dict[str, list[float]], period_s: float) -> list[float]:
    out: list[float] = []
    for times in stamps.values():
        out.extend(abs((b - a) - period_s) * 1000 for a, b in itertools.pairwise(times))
    return out


def _start_edge(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "edge", "--config", str(config)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def tcp_fleet(work: Path, warm_s: float = 15.0, window_s: float = 30.0) -> TcpFleetResult:
    work.mkdir(parents=True, exist_ok=True)
    fleet = _Fleet(["tcp", "--ports", str(TCP_DEVICES // PER_PORT), "--units", str(PER_PORT)])
    broker = MosquittoProcess(work / "broker").start()
    edge: subprocess.Popen[bytes] | None = None
    try:
        devices = [
            {"profile": "bin-sensor", "address": str(unit), "host": "127.0.0.1", "port": int(p),
             "id": f"bin-{p}-{unit}"}
            for p in fleet.where
            for unit in range(1, PER_PORT + 1)
        ]  # fmt: skip
        config = {
            "edge_id": "edge-modbus-bench",
            "data_dir": str(work / "edge"),
            "profiles_dir": str(_profiles(work, 1.0)),
            "broker": {"host": "127.0.0.1", "port": broker.port},
            "devices": devices,
            "log_level": "WARNING",
        }
        path = work / "edge.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
        edge = _start_edge(path, work / "edge.log")
        await asyncio.sleep(warm_s)  # start-up and first polls; not synchronisation
        if edge.poll() is not None:
            raise RuntimeError(f"edge exited: {(work / 'edge.log').read_text()[-2000:]}")
        fleet.ask("mark")
        cpu = CpuWindow(edge.pid).start()
        await asyncio.sleep(window_s)
        share = cpu.share()
        memory = memory_kib(edge.pid)
        stamps: dict[str, list[float]] = json.loads(fleet.ask("report"))
        requests = sum(len(t) for t in stamps.values())
        jitter = _jitter_ms(stamps, 1.0) or [float("nan")]
        return TcpFleetResult(
            devices=len(devices),
            polls_per_s=requests / window_s,
            jitter_p50_ms=percentile(jitter, 0.5),
            jitter_p99_ms=percentile(jitter, 0.99),
            cpu_share=share,
            rss_mib=memory["VmRSS"] / 1024,
            peak_mib=memory["VmHWM"] / 1024,
        )
    finally:
        if edge is not None and edge.poll() is None:
            edge.terminate()
            try:
                edge.wait(10)
            except subprocess.TimeoutExpired:
                edge.kill()
        broker.stop()
        fleet.close()


class _WireRelay:
    """Joins two pty masters; each direction's bytes arrive at 9600 baud, 11 bits/char."""

    def __init__(self) -> None:
        self.a_master, a_slave = os.openpty()
        self.b_master, b_slave = os.openpty()
        for fd in (self.a_master, a_slave, self.b_master, b_slave):
            tty.setraw(fd)
        self.a_path, self.b_path = os.ttyname(a_slave), os.ttyname(b_slave)
        self._slaves = (a_slave, b_slave)
        self._stop = threading.Event()
        self._char_s = BITS_PER_CHAR / BAUD
        self._threads = [
            threading.Thread(target=self._pump, args=(self.a_master, self.b_master), daemon=True),
            threading.Thread(target=self._pump, args=(self.b_master, self.a_master), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, src: int, dst: int) -> None:
        free_at = 0.0
        while not self._stop.is_set():
            try:
                data = os.read(src, 4096)
            except OSError:
                return
            now = time.monotonic()
            free_at = max(now, free_at) + len(data) * self._char_s
            time.sleep(max(0.0, free_at - now))
            with contextlib.suppress(OSError):
                os.write(dst, data)

    def close(self) -> None:
        self._stop.set()
        for fd in (*self._slaves, self.a_master, self.b_master):
            with contextlib.suppress(OSError):
                os.close(fd)


class _NullSink:
    async def record(
        self,
        device_id: str,
        kind: str,
        lane: Lane,
        data: dict[str, Any],
        *,
        dedupe_key: Any = None,
        frame_seq: int | None = None,
    ) -> bool:
        return True


class _NullLiveness:
    def online(self, device_id: str) -> None:
        pass

    def offline(self, device_id: str, reason: str) -> None:
        pass


async def rtu_wire(window_s: float = 20.0) -> RtuResult:
    relay = _WireRelay()
    fleet = _Fleet(["rtu", "--port", relay.b_path, "--units", "1"])
    try:
        points = tuple(PointSpec(Point(f"r{i}", i)) for i in range(10))
        device = ModbusDevice(
            "bench-rtu-1",
            1,
            points,
            (PollPlan.every(0.001, tuple(p.point.name for p in points), "reading"),),
            timeout_s=0.5,
        )
        line = ModbusRtuTransport(kind="modbus-rtu", baudrate=BAUD)
        driver = ModbusRtuDriver.on_serial_port(
            relay.a_path, [device], _NullSink(), _NullLiveness(), line=line
        )
        task = asyncio.create_task(driver.run())
        try:
            await asyncio.sleep(3)  # port open, first polls; not synchronisation
            t0, n0 = time.monotonic(), driver.bus.transactions
            await asyncio.sleep(window_s)
            rate = (driver.bus.transactions - n0) / (time.monotonic() - t0)
            stats = driver.stats()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        health = driver.bus.health.get("bench-rtu-1")
        failures = sum(health.failures.values()) if health else 0
        return RtuResult(rate, wire_ceiling_per_s(), int(_polls_ok(stats)), failures)
    finally:
        fleet.close()
        relay.close()


def _polls_ok(stats: dict[str, Any]) -> int:
    devices = stats.get("devices", {})
    found = devices.get("bench-rtu-1", {}) if isinstance(devices, dict) else {}
    return int(found.get("polls_ok", 0)) if isinstance(found, dict) else 0


def main() -> int:
    """``python -m bench.modbus_poll``: both rows alone, printed as plain figures."""
    work = Path(os.environ.get("BENCH_WORK", REPO_ROOT / "var" / "bench-modbus"))
    shutil.rmtree(work, ignore_errors=True)
    print(asyncio.run(rtu_wire()))
    print(asyncio.run(tcp_fleet(work)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
