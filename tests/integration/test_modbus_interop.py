"""Interoperability with Modbus implementations we did not write.

* ``mbpoll`` (libmodbus, Debian package ``mbpoll``) is the master: it reads and writes
  the simulators, run as real processes (``python -m simulators.modbus_devices``), over
  TCP and over RTU on a socat pty pair, and sees their exceptions and bad CRCs;
* the edge driver is the master against a modbus-tk TCP server (not pymodbus).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract import Lane
from edge.drivers.modbus import ModbusDevice, PointSpec, PollPlan
from edge.drivers.modbus_tcp import ModbusTcpDriver, TcpDevice
from profiles.registers import Point
from simulators.broker import free_port
from tests.conftest import wait_until, wait_until_sync

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VALUE_LINE = re.compile(r"^\[(\d+)\]:\s+(-?\d+)", re.MULTILINE)


def _mbpoll() -> str:
    path = shutil.which("mbpoll")
    if path is None:
        pytest.skip("mbpoll is not installed (apt-get install -y mbpoll)")
    return path


class Simulator:
    """``python -m simulators.modbus_devices …`` as a child process, driven over stdin.

    A thread reads its output into a queue (``select`` on a buffered pipe would miss lines
    already read into the buffer)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulators.modbus_devices", *args],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.ready = self.line_starting("READY")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def line_starting(self, prefix: str | tuple[str, ...], timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
            if line.startswith(prefix):
                return line.strip()
        raise AssertionError(f"no {prefix!r} line from the simulator: {''.join(self.output)}")

    def send(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.line_starting(("OK", "ERROR"))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)  # it ends at the end of the output
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def bin_simulator() -> Iterator[tuple[Simulator, int]]:
    sim = Simulator("bin", "--tcp-port", "0", "--units", "1")
    try:
        port = int(sim.ready.rsplit(":", 1)[1])
        yield sim, port
    finally:
        sim.stop()


@pytest.fixture
def rtu_bus(tmp_path: Path) -> Iterator[tuple[str, str]]:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (apt-get install socat)")
    master, devices = tmp_path / "master", tmp_path / "devices"
    proc = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={master}", f"pty,raw,echo=0,link={devices}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_sync(lambda: master.exists() and devices.exists(), 10, message="ptys")
        yield str(master), str(devices)
    finally:
        proc.terminate()
        proc.wait(10)


def mbpoll(*args: str) -> tuple[int, str, dict[int, int]]:
    """Run mbpoll once (``-1``, 0-based references); its exit code, output and values."""
    done = subprocess.run(
        [_mbpoll(), "-1", "-0", "-o", "0.5", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    output = done.stdout + done.stderr
    values = {int(ref): int(value) for ref, value in VALUE_LINE.findall(done.stdout)}
    return done.returncode, output, values


def tcp(port: int, *args: str) -> list[str]:
    return ["-m", "tcp", "-p", str(port), "-a", "1", *args, "127.0.0.1"]


# ---- mbpoll → simulators ---------------------------------------------------------------


def test_mbpoll_reads_and_writes_the_bin_sensor_over_tcp(
    bin_simulator: tuple[Simulator, int],
) -> None:
    sim, port = bin_simulator
    code, output, values = mbpoll(*tcp(port, "-t", "4", "-r", "0", "-c", "11"))
    assert code == 0, output
    assert sorted(values) == list(range(11))
    assert values[0] == 200  # fill 20.0 %
    assert 100 <= values[1] <= 260  # about 10..26 °C
    assert 7 <= values[2] <= 13  # tilt about 1°
    assert all(values[r] == 0 for r in range(3, 10))
    assert values[10] == 300  # report interval

    sim.send("1 full")
    sim.send("1 fire")
    _, _, values = mbpoll(*tcp(port, "-t", "4", "-r", "0", "-c", "3"))
    assert values[0] >= 950 and values[1] >= 700

    code, output, _ = mbpoll(*tcp(port, "-t", "4", "-r", "10"), "60")
    assert code == 0 and "Written 1 references" in output, output
    _, _, values = mbpoll(*tcp(port, "-t", "4", "-r", "10", "-c", "1"))
    assert values == {10: 60}

    # signed temperature as a 16-bit register, read through the input-register function
    _, _, values = mbpoll(*tcp(port, "-t", "3", "-r", "1", "-c", "1"))
    assert values[1] >= 700


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-t", "4", "-r", "20", "-c", "1"], "Illegal data address"),
        (["-t", "4", "-r", "0"], "Illegal data address"),  # a write to a read-only register
    ],
)
def test_mbpoll_sees_the_sensors_exceptions(
    bin_simulator: tuple[Simulator, int], args: list[str], message: str
) -> None:
    _, port = bin_simulator
    extra = ["500"] if args[-1] == "0" else []
    code, output, _ = mbpoll(*tcp(port, *args), *extra)
    assert code != 0 and message in output, output


def test_mbpoll_sees_a_scripted_device_failure_and_silence(
    bin_simulator: tuple[Simulator, int],
) -> None:
    sim, port = bin_simulator
    assert sim.send("1 fault exception 4").startswith("OK")
    code, output, _ = mbpoll(*tcp(port, "-t", "4", "-r", "0", "-c", "3"))
    assert code != 0 and "Slave device or server failure" in output, output
    sim.send("1 fault silent")
    code, output, _ = mbpoll(*tcp(port, "-t", "4", "-r", "0", "-c", "3"))
    assert code != 0 and "timed out" in output, output
    sim.send("1 fault none")
    code, output, _ = mbpoll(*tcp(port, "-t", "4", "-r", "0", "-c", "3"))
    assert code == 0, output


def test_mbpoll_reads_water_meters_over_rtu(rtu_bus: tuple[str, str]) -> None:
    master, devices = rtu_bus
    sim = Simulator("water-meter", "--port", devices, "--units", "1,2")
    try:
        rtu = ["-m", "rtu", "-b", "9600", "-P", "none"]
        code, output, values = mbpoll(*rtu, "-a", "1", "-t", "3:int", "-B", "-r", "0", master)
        assert code == 0, output
        assert 123_456 <= values[0] < 124_456  # total_m3 × 1000, u32 big-endian words
        sim.send("2 stuck on")
        code, output, values = mbpoll(*rtu, "-a", "2", "-t", "3", "-r", "0", "-c", "3", master)
        assert code == 0, output
        assert values[2] > 0  # flow_m3h × 100: a stuck meter never reads zero
        # unit 3 is not on the bus: nobody answers
        code, output, _ = mbpoll(*rtu, "-a", "3", "-t", "3", "-r", "0", "-c", "3", master)
        assert code != 0 and "timed out" in output, output
        sim.send("1 fault bad_crc")
        code, output, _ = mbpoll(*rtu, "-a", "1", "-t", "3", "-r", "0", "-c", "3", master)
        assert code != 0 and "CRC" in output, output
    finally:
        sim.stop()


# ---- edge → modbus-tk ------------------------------------------------------------------


@contextlib.contextmanager
def modbus_tk_server(port: int) -> Iterator[Any]:
    pytest.importorskip("modbus_tk", reason="pip install modbus-tk (a dev dependency)")
    from modbus_tk import defines, modbus_tcp  # type: ignore[import-untyped]

    server = modbus_tcp.TcpServer(port=port, address="127.0.0.1")
    slave = server.add_slave(1)
    slave.add_block("hr", defines.HOLDING_REGISTERS, 0, 11)
    slave.add_block("ir", defines.ANALOG_INPUTS, 0, 3)
    slave.set_values("hr", 0, [805, (-52) & 0xFFFF, 150])  # 80.5 %, -5.2 °C, 15.0°
    slave.set_values("hr", 10, [300])
    slave.set_values("ir", 0, [0x0001, 0xE240, 125])  # 123.456 m³, 1.25 m³/h
    server.start()
    try:
        yield slave
    finally:
        server.stop()


# modbus-tk 1.1.5's server thread calls threading.Event.isSet(), deprecated since 3.10
@pytest.mark.filterwarnings("ignore:isSet\\(\\) is deprecated:DeprecationWarning")
async def test_the_edge_reads_and_writes_a_modbus_tk_server() -> None:
    port = free_port()
    points = (
        PointSpec(Point("fill_pct", 0, "u16", scale=0.1), minimum=0, maximum=100),
        PointSpec(Point("temperature_c", 1, "i16", scale=0.1), minimum=-40, maximum=125),
        PointSpec(Point("tilt_deg", 2, "u16", scale=0.1), minimum=0, maximum=180),
        PointSpec(Point("report_interval_s", 10, "u16"), minimum=1, maximum=3600, writable=True),
        PointSpec(Point("total_m3", 0, "u32", scale=0.001), table="input"),
        PointSpec(Point("flow_m3h", 2, "u16", scale=0.01), table="input"),
    )
    polls = (
        PollPlan.every(0.1, ["fill_pct", "temperature_c", "tilt_deg"], "bin_reading"),
        PollPlan.every(0.1, ["total_m3", "flow_m3h"], "water_reading"),
    )
    device = ModbusDevice("tk-1", 1, points, polls, timeout_s=0.5)
    events: list[tuple[str, Lane, dict[str, Any]]] = []

    class Sink:
        async def record(
            self,
            device_id: str,
            kind: str,
            lane: Lane,
            data: dict[str, Any],
            *,
            dedupe_key: str | None = None,
        ) -> bool:
            events.append((kind, lane, data))
            return True

    class Liveness:
        def online(self, device_id: str) -> None:
            pass

        def offline(self, device_id: str, reason: str) -> None:
            events.append(("device.offline", Lane.NORMAL, {"reason": reason}))

    with modbus_tk_server(port) as slave:
        driver = ModbusTcpDriver([TcpDevice("127.0.0.1", port, device)], Sink(), Liveness())
        task = asyncio.create_task(driver.run())
        try:
            await wait_until(
                lambda: {"bin_reading", "water_reading"} <= {e[0] for e in events},
                15,
                message="both polls read from modbus-tk",
            )
            outcome = await driver.command(
                "tk-1", "write_point", {"point": "report_interval_s", "value": 120}
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        stored = list(slave.get_values("hr", 10, 1))
    bins = next(e for e in events if e[0] == "bin_reading")
    water = next(e for e in events if e[0] == "water_reading")
    assert bins[2] == {
        "fill_pct": pytest.approx(80.5),
        "temperature_c": pytest.approx(-5.2),
        "tilt_deg": pytest.approx(15.0),
    }
    assert water[2] == {"total_m3": pytest.approx(123.456), "flow_m3h": pytest.approx(1.25)}
    assert outcome[0] == "ok", outcome
    assert stored == [120]
    assert not [e for e in events if e[0] == "device.offline"]
