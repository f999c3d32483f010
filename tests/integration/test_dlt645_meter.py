"""The meter simulator as a process of its own (``python -m simulators.dlt645_meter``):
the issue's test vector byte for byte on its pty, and the edge driver reading two meters
over a socat pty pair with real byte timing at 2400 baud while one of them is silent."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import serial
from apscheduler.triggers.interval import IntervalTrigger

from edge.codecs import dlt645
from edge.drivers.dlt645_meter import DEFAULT_LINE, BusTiming, Dlt645MeterDriver, Meter
from edge.drivers.dlt645_meter import MeterPoint as Point
from edge.drivers.dlt645_meter import MeterPoll as Poll
from edge.supervision import Supervisor
from edge.transports.serial_port import LinkTiming, SerialLink
from tests.conftest import wait_until
from tests.edge.conftest import FakeSink

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
A = "000012345678"
B = "000012345679"
REQUEST_VECTOR = bytes.fromhex("68 78 56 34 12 00 00 68 11 04 33 34 34 35 C9 16")
RESPONSE_VECTOR = bytes.fromhex("68 78 56 34 12 00 00 68 91 06 33 34 34 35 34 55 D4 16")
POINTS = (
    Point("energy_kwh", dlt645.DI_FORWARD_ACTIVE_ENERGY_TOTAL, 8, 2, unit="kWh"),
    Point("voltage_v", dlt645.DI_PHASE_A_VOLTAGE, 4, 1, unit="V"),
)


@asynccontextmanager
async def process(*argv: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """Start a process; yields it and its first line of output."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        yield proc, first
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def simulator(*args: str) -> list[str]:
    return [sys.executable, "-m", "simulators.dlt645_meter", *args]


async def test_the_issue_vector_byte_for_byte_from_the_simulator_process() -> None:
    argv = simulator(
        "--meters", f"{A},{B}", "--wake-up", "0", "--voltage", "220.1", "--byte-timing",
        "--reply-delay-ms", "0",
    )  # fmt: skip
    async with process(*argv) as (_, first):
        path = first.rsplit(" on ", 1)[1]
        # The timeout is set once: pyserial re-applying settings to a pty fails on Linux
        # 6.x, because a pty cannot keep PARENB and nothing else would change.
        port = serial.Serial(path, 2400, parity=serial.PARITY_EVEN, timeout=0.3)
        try:
            started = time.monotonic()
            port.write(REQUEST_VECTOR)
            reply = await asyncio.to_thread(port.read, len(RESPONSE_VECTOR))
            elapsed = time.monotonic() - started
            # The other meter stays quiet: the request was not for it.
            extra = await asyncio.to_thread(port.read, 1)
        finally:
            port.close()
    assert reply == RESPONSE_VECTOR
    assert extra == b""
    # Real byte timing: 18 characters of 11 bits at 2400 baud take 82.5 ms on the wire.
    assert elapsed >= 0.08


@asynccontextmanager
async def socat_pair(tmp_path: Path) -> AsyncIterator[tuple[Path, Path]]:
    meters, edge = tmp_path / "meters", tmp_path / "edge"
    argv = ["socat", f"pty,raw,echo=0,link={meters}", f"pty,raw,echo=0,link={edge}"]
    proc = await asyncio.create_subprocess_exec(*argv)
    try:
        await wait_until(lambda: meters.exists() and edge.exists(), 10, message="socat ptys")
        yield meters, edge
    finally:
        proc.terminate()
        await proc.wait()


@asynccontextmanager
async def driven(
    port: Path, meters: list[Meter], sink: FakeSink, **timing: Any
) -> AsyncIterator[Dlt645MeterDriver]:
    supervisor = Supervisor(sink)
    link = SerialLink(str(port), DEFAULT_LINE, timing=LinkTiming(read_timeout_s=0.02))
    driver = Dlt645MeterDriver(link, meters, sink, supervisor, timing=BusTiming(**timing))
    tasks = [asyncio.create_task(driver.run()), asyncio.create_task(supervisor.run())]
    try:
        yield driver
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task


async def test_two_meters_with_real_byte_timing_one_silent(tmp_path: Path) -> None:
    sink = FakeSink()
    async with socat_pair(tmp_path) as (meter_side, edge_side):
        argv = simulator(
            "--meters", f"{A},{B}", "--port", str(meter_side), "--byte-timing",
            "--time-scale", "36000", "--silent", B, "--seed", "7",
        )  # fmt: skip
        async with process(*argv) as (_, first):
            assert first == f"meters {A}, {B} on {meter_side}"
            meters = [
                Meter(f"meter-{a}", a, POINTS, (Poll(("energy_kwh", "voltage_v"), every(0.5)),))
                for a in (A, B)
            ]
            async with driven(edge_side, meters, sink, timeout_s=0.3, offline_after=2) as driver:
                await wait_until(lambda: [e for e in sink.events if e.kind == "device.offline"], 10)
                await wait_until(lambda: len(readings(sink, A)) >= 3, 10)
                stats = driver.stats()
    values = readings(sink, A)
    energies = [v["energy_kwh"] for v in values]
    assert energies == sorted(energies) and energies[-1] > energies[0]
    assert all(205 <= v["voltage_v"] <= 235 for v in values)
    assert readings(sink, B) == []
    offline = next(e for e in sink.events if e.kind == "device.offline")
    assert offline.device_id == f"meter-{B}" and "timeout" in offline.data["reason"]
    assert stats["devices"][f"meter-{A}"]["reads_ok"] >= 6
    assert stats["devices"][f"meter-{B}"]["timeouts"] >= 2


def every(seconds: float) -> Any:
    return IntervalTrigger(seconds=seconds, timezone=UTC)


def readings(sink: FakeSink, address: str) -> list[dict[str, Any]]:
    device_id = f"meter-{address}"
    return [e.data for e in sink.events if e.device_id == device_id and e.kind == "meter_reading"]


def test_a_bad_meter_address_exits_2() -> None:
    done = subprocess.run(simulator("--meters", "123"), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2
    assert "12 digits" in done.stderr
