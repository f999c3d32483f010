"""The Modbus drivers against real pymodbus device simulators: an RTU bus on a socat pty
pair and Modbus TCP servers on localhost.

* one device on a three-device bus stops answering / answers exceptions / answers with a
  bad CRC: it is reported offline (``device.offline`` through the real Supervisor) and
  probed with backoff, while the other two keep their schedule (measured), then online;
* adjacent points are read in one request (counted at the server);
* 20 TCP devices polled concurrently, never more requests in flight than the bound;
* a TCP device whose server goes away is offline and back online when it returns;
* write_point: ok, read-back mismatch, rejected, exception, no answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from contract import Lane
from edge.drivers.base import DeviceEntry
from edge.drivers.modbus import ModbusDevice, PointSpec, PollPlan
from edge.drivers.modbus_rtu import ModbusRtuDriver
from edge.drivers.modbus_tcp import ModbusTcpDriver, TcpDevice
from edge.supervision import Supervisor
from profiles import load_profile
from profiles.registers import Point
from simulators.modbus_devices import BinSensor, DeviceServer, WaterMeter
from tests.conftest import wait_until, wait_until_sync

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
POLL_S = 0.1


@dataclass
class Recorded:
    at: float
    device_id: str
    kind: str
    lane: Lane
    data: dict[str, Any]


@dataclass
class TimedSink:
    """An in-memory event sink that notes when each event arrived."""

    events: list[Recorded] = field(default_factory=list)

    async def record(
        self,
        device_id: str,
        kind: str,
        lane: Lane,
        data: dict[str, Any],
        *,
        dedupe_key: str | None = None,
    ) -> bool:
        self.events.append(Recorded(time.monotonic(), device_id, kind, lane, dict(data)))
        return True

    def of(self, device_id: str, kind: str) -> list[Recorded]:
        return [e for e in self.events if e.device_id == device_id and e.kind == kind]


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked ptys (socat): the edge's end and the devices' end of one RS-485 bus."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (apt-get install socat)")
    edge_end, device_end = tmp_path / "bus-edge", tmp_path / "bus-devices"
    proc = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={edge_end}", f"pty,raw,echo=0,link={device_end}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_sync(lambda: edge_end.exists() and device_end.exists(), 10, message="ptys")
        yield str(edge_end), str(device_end)
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.asynccontextmanager
async def running(*tasks: Any) -> AsyncIterator[None]:
    started = [asyncio.create_task(t) for t in tasks]
    try:
        yield
    finally:
        for task in started:
            task.cancel()
        for task in started:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def serving(server: DeviceServer) -> AsyncIterator[DeviceServer]:
    try:
        yield server
    finally:
        await server.stop()


def water_meter(unit: int, *, every_s: float = POLL_S, timeout_s: float = 0.25) -> ModbusDevice:
    """As device_profiles/water-meter.yaml says (input registers 0-2)."""
    points = (
        PointSpec(Point("total_m3", 0, "u32", scale=0.001), table="input", minimum=0),
        PointSpec(Point("flow_m3h", 2, "u16", scale=0.01), table="input", minimum=0),
    )
    poll = PollPlan.every(every_s, ["total_m3", "flow_m3h"], "water_reading")
    return ModbusDevice(
        f"wm-{unit}", unit, points, (poll,), timeout_s=timeout_s, offline_after=3, writable=False
    )


def bin_sensor(unit: int = 1, *, every_s: float = POLL_S, name: str = "") -> ModbusDevice:
    """As device_profiles/bin-sensor.yaml says."""
    points = (
        PointSpec(Point("fill_pct", 0, "u16", scale=0.1), minimum=0, maximum=100),
        PointSpec(Point("temperature_c", 1, "i16", scale=0.1), minimum=-40, maximum=125),
        PointSpec(Point("tilt_deg", 2, "u16", scale=0.1), minimum=0, maximum=180),
        PointSpec(Point("report_interval_s", 10, "u16"), minimum=1, maximum=3600, writable=True),
    )
    poll = PollPlan.every(every_s, ["fill_pct", "temperature_c", "tilt_deg"], "bin_reading")
    return ModbusDevice(name or f"bin-{unit}", unit, points, (poll,), timeout_s=0.3)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# ---- RTU: one bad device on a bus of three -----------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code", "reason"),
    [
        ("silent", 0, "timeout"),
        ("exception", 2, "exception_2"),
        ("exception", 4, "exception_4"),
        ("bad_crc", 0, "bad_crc"),
    ],
)
async def test_a_bad_device_goes_offline_and_the_others_keep_their_schedule(
    pty_pair: tuple[str, str], fault: str, code: int, reason: str
) -> None:
    edge_end, device_end = pty_pair
    meters = [WaterMeter(unit) for unit in (1, 2, 3)]
    sink = TimedSink()
    supervisor = Supervisor(sink)
    driver = ModbusRtuDriver.on_serial_port(
        edge_end,
        [water_meter(unit) for unit in (1, 2, 3)],
        sink,
        supervisor,
        backoff_s=1.0,
        backoff_max_s=2.0,
    )
    async with serving(DeviceServer(meters)) as server:
        await server.start_rtu(device_end)
        async with running(driver.run(), supervisor.run()):
            await wait_until(
                lambda: all(len(sink.of(f"wm-{u}", "water_reading")) >= 3 for u in (1, 2, 3)),
                10,
                message="every meter read",
            )
            meters[1].set_fault(fault, code)  # type: ignore[arg-type]
            offline = await wait_until(
                lambda: sink.of("wm-2", "device.offline"), 10, message="wm-2 offline"
            )
            assert reason in offline[0].data["reason"]
            assert offline[0].lane == Lane.NORMAL

            # During the outage the healthy meters keep their 100 ms schedule.
            start = time.monotonic()
            before = {u: len(sink.of(f"wm-{u}", "water_reading")) for u in (1, 3)}
            probes_before = meters[1].reads()
            await wait_until(
                lambda: all(
                    len(sink.of(f"wm-{u}", "water_reading")) >= before[u] + 20 for u in (1, 3)
                ),
                15,
                message="20 more readings of wm-1 and wm-3",
            )
            elapsed = time.monotonic() - start
            probes = meters[1].reads() - probes_before
            # 20 slots take 2 s; a probe of the bad meter may cost one or two slots now
            # and then. Without backoff every round would wait out its 250 ms timeout.
            assert elapsed < 20 * POLL_S * 1.6, f"20 polls took {elapsed:.2f} s"
            for unit in (1, 3):
                times = [e.at for e in sink.of(f"wm-{unit}", "water_reading")[before[unit] :]]
                assert max(gaps(times)) < POLL_S + 0.25 + 0.3, gaps(times)
            assert probes <= 4, f"the offline meter was asked {probes} times in {elapsed:.1f} s"
            assert sink.of("wm-2", "water_reading")[-1].at < start

            meters[1].set_fault(None)
            await wait_until(lambda: sink.of("wm-2", "device.online"), 10, message="wm-2 online")
    stats = driver.stats()["devices"]
    assert stats["wm-2"]["failures"][reason] >= 3
    # the healthy meters were never reported offline (on a loaded machine one of their
    # answers may come late once; that is a single failure, not an outage)
    assert not sink.of("wm-1", "device.offline") and not sink.of("wm-3", "device.offline")
    assert sum(stats["wm-1"]["failures"].values()) <= 1
    assert sum(stats["wm-3"]["failures"].values()) <= 1


async def test_readings_match_the_simulated_meter_and_points_are_coalesced(
    pty_pair: tuple[str, str],
) -> None:
    edge_end, device_end = pty_pair
    meter = WaterMeter(7, total_m3=4321.5, stuck=True)
    sink = TimedSink()
    driver = ModbusRtuDriver.on_serial_port(edge_end, [water_meter(7)], sink, Supervisor(sink))
    async with serving(DeviceServer([meter])) as server:
        await server.start_rtu(device_end)
        async with running(driver.run()):
            await wait_until(lambda: len(sink.of("wm-7", "water_reading")) >= 5, 10)
    reading = sink.of("wm-7", "water_reading")[-1]
    assert reading.lane == Lane.TELEMETRY
    assert reading.data["total_m3"] == pytest.approx(meter.total_m3, abs=0.002)
    assert reading.data["flow_m3h"] > 0  # stuck: never zero
    # total_m3 (2 registers) and flow_m3h (1) in one request of 3 input registers per poll
    assert set(meter.log) == {(4, 0, 3)}
    assert meter.reads() == driver.stats()["devices"]["wm-7"]["requests"]
    assert driver.stats()["devices"]["wm-7"]["polls_ok"] >= meter.reads() - 1


async def test_write_point_over_rtu_and_a_bad_crc_reply_to_a_write(
    pty_pair: tuple[str, str],
) -> None:
    edge_end, device_end = pty_pair
    sensor = BinSensor(3)
    sink = TimedSink()
    driver = ModbusRtuDriver.on_serial_port(
        edge_end, [bin_sensor(3, every_s=3600)], sink, Supervisor(sink)
    )
    args = {"point": "report_interval_s", "value": 120}
    async with serving(DeviceServer([sensor])) as server:
        await server.start_rtu(device_end)
        async with running(driver.run()):
            assert await driver.command("bin-3", "write_point", args) == (
                "ok",
                "report_interval_s = 120 (read back)",
            )
            sensor.set_fault("bad_crc")
            status, detail = await driver.command("bin-3", "write_point", args)
    assert sensor.report_interval_s == 120
    assert status == "device_error" and "bad CRC" in detail


# ---- TCP -----------------------------------------------------------------------------------


class Gauge:
    now = 0
    max = 0


class CountedBin(BinSensor):
    """A bin sensor that takes 50 ms to answer and counts requests in flight across all."""

    gauge: ClassVar[Gauge]

    async def action(
        self,
        function: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> Any:
        gauge = type(self).gauge
        gauge.now += 1
        gauge.max = max(gauge.max, gauge.now)
        try:
            return await super().action(function, start, address, count, registers, values)
        finally:
            gauge.now -= 1


async def test_twenty_tcp_devices_polled_concurrently_within_the_in_flight_bound() -> None:
    CountedBin.gauge = Gauge()
    servers = [DeviceServer([CountedBin(1, response_delay_s=0.05)]) for _ in range(20)]
    ports = [await server.start_tcp() for server in servers]
    sink = TimedSink()
    targets = [
        TcpDevice("127.0.0.1", port, bin_sensor(1, name=f"bin-{n}")) for n, port in enumerate(ports)
    ]
    driver = ModbusTcpDriver(targets, sink, Supervisor(sink), max_in_flight=5)
    try:
        async with running(driver.run()):
            await wait_until(
                lambda: all(len(sink.of(f"bin-{n}", "bin_reading")) >= 5 for n in range(20)),
                20,
                message="5 readings of each of 20 bins",
            )
    finally:
        for server in servers:
            await server.stop()
    # 20 devices × 50 ms each per 100 ms would need 10 at once; the bound says 5
    assert 4 <= CountedBin.gauge.max <= 5, CountedBin.gauge.max
    assert len(driver.links) == 20
    reading = sink.of("bin-0", "bin_reading")[0].data
    assert set(reading) == {"fill_pct", "temperature_c", "tilt_deg"}
    assert reading["fill_pct"] == pytest.approx(20.0, abs=0.2)


async def test_a_tcp_device_that_goes_away_is_offline_and_comes_back() -> None:
    sensor = BinSensor(1)
    first = DeviceServer([sensor])
    port = await first.start_tcp()
    sink = TimedSink()
    supervisor = Supervisor(sink)
    driver = ModbusTcpDriver(
        [TcpDevice("127.0.0.1", port, bin_sensor(1))],
        sink,
        supervisor,
        backoff_s=0.2,
        backoff_max_s=0.5,
    )
    second = DeviceServer([sensor])
    try:
        async with running(driver.run(), supervisor.run()):
            await wait_until(lambda: sink.of("bin-1", "bin_reading"), 10, message="reading")
            await first.stop()
            offline = await wait_until(lambda: sink.of("bin-1", "device.offline"), 10)
            assert (
                "link_down" in offline[0].data["reason"] or "timeout" in offline[0].data["reason"]
            )
            await second.start_tcp(port=port)
            await wait_until(lambda: sink.of("bin-1", "device.online"), 15, message="online")
            count = len(sink.of("bin-1", "bin_reading"))
            await wait_until(lambda: len(sink.of("bin-1", "bin_reading")) > count, 10)
    finally:
        await second.stop()
    assert driver.links[("127.0.0.1", port)].connects >= 2  # type: ignore[attr-defined]


async def test_write_point_outcomes_against_a_tcp_bin_sensor() -> None:
    sensor = BinSensor(1)
    server = DeviceServer([sensor])
    port = await server.start_tcp()
    sink = TimedSink()
    driver = ModbusTcpDriver(
        [TcpDevice("127.0.0.1", port, bin_sensor(1, every_s=3600))], sink, Supervisor(sink)
    )

    async def write(point: str, value: object) -> tuple[str, str]:
        return await driver.command("bin-1", "write_point", {"point": point, "value": value})

    try:
        async with running(driver.run()):
            assert (await write("report_interval_s", 600))[0] == "ok"
            assert sensor.report_interval_s == 600
            # the sensor keeps at least 10 s: it answers the write but holds 10
            status, detail = await write("report_interval_s", 5)
            assert status == "device_error" and "read back 10" in detail, detail
            assert (await write("fill_pct", 50))[0] == "rejected"
            assert (await write("report_interval_s", 99999))[0] == "rejected"
            assert (await write("lid", 1))[0] == "rejected"
            sensor.set_fault("exception", 4)
            status, detail = await write("report_interval_s", 60)
            assert status == "device_error" and "exception 4" in detail
            sensor.set_fault("silent")
            assert (await write("report_interval_s", 60))[0] == "timeout"
    finally:
        await server.stop()
    assert sensor.requests[6] == 4  # ok, mismatch, exception, silent: rejected never sent


# ---- from the shipped profiles -------------------------------------------------------------


async def test_drivers_built_from_the_shipped_profiles_read_the_simulators(
    pty_pair: tuple[str, str],
) -> None:
    edge_end, device_end = pty_pair
    water = load_profile(REPO / "device_profiles" / "water-meter.yaml")
    bins = load_profile(REPO / "device_profiles" / "bin-sensor.yaml")
    meter, sensor = WaterMeter(5), BinSensor(2)
    tcp_server = DeviceServer([sensor])
    port = await tcp_server.start_tcp()
    sink = TimedSink()
    supervisor = Supervisor(sink)
    # the profiles poll every 10 s and 5 s: the first poll runs at start
    rtu = ModbusRtuDriver.from_entries(
        edge_end, [DeviceEntry("wm-5", water, "5", edge_end)], sink, supervisor, poll_at_start=True
    )
    tcp = ModbusTcpDriver.from_entries(
        [DeviceEntry("bin-2", bins, "2", str(port), "127.0.0.1")],
        sink,
        supervisor,
        poll_at_start=True,
    )
    assert tcp.max_in_flight == 32
    async with serving(DeviceServer([meter])) as rtu_server:
        await rtu_server.start_rtu(device_end)
        try:
            async with running(rtu.run(), tcp.run()):
                await wait_until(
                    lambda: sink.of("wm-5", "water_reading") and sink.of("bin-2", "bin_reading"),
                    10,
                    message="a reading of each",
                )
                outcome = await tcp.command(
                    "bin-2", "write_point", {"point": "report_interval_s", "value": 30}
                )
        finally:
            await tcp_server.stop()
    assert outcome[0] == "ok"
    assert set(sink.of("wm-5", "water_reading")[0].data) == {"total_m3", "flow_m3h"}
    assert set(sink.of("bin-2", "bin_reading")[0].data) == {"fill_pct", "temperature_c", "tilt_deg"}
    assert meter.log[0] == (4, 0, 3) and sensor.log[0] == (3, 0, 3)


# ---- links that break ----------------------------------------------------------------------


async def test_an_rtu_bus_whose_port_disappears_recovers_when_it_returns(tmp_path: Path) -> None:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    edge_end, device_end = tmp_path / "edge", tmp_path / "devices"
    command = ["socat", f"pty,raw,echo=0,link={edge_end}", f"pty,raw,echo=0,link={device_end}"]

    def start_socat() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_sync(lambda: edge_end.exists() and device_end.exists(), 10, message="ptys")
        return proc

    meter = WaterMeter(1)
    sink = TimedSink()
    supervisor = Supervisor(sink)
    driver = ModbusRtuDriver.on_serial_port(
        str(edge_end), [water_meter(1, timeout_s=0.1)], sink, supervisor, backoff_s=0.2,
        backoff_max_s=0.5,
    )  # fmt: skip
    socat = start_socat()
    server = DeviceServer([meter])
    try:
        await server.start_rtu(str(device_end))
        async with running(driver.run(), supervisor.run()):
            await wait_until(lambda: sink.of("wm-1", "water_reading"), 10, message="reading")
            # the USB adapter is pulled: both ends of the bus go away
            await server.stop()
            socat.terminate()
            socat.wait(10)
            await wait_until(lambda: not edge_end.exists(), 10, message="pty gone")
            await wait_until(lambda: sink.of("wm-1", "device.offline"), 10, message="offline")
            # … and plugged in again (new pty devices under the same names)
            socat = start_socat()
            server = DeviceServer([meter])
            await server.start_rtu(str(device_end))
            await wait_until(lambda: sink.of("wm-1", "device.online"), 20, message="online")
            count = len(sink.of("wm-1", "water_reading"))
            await wait_until(lambda: len(sink.of("wm-1", "water_reading")) > count + 3, 10)
    finally:
        await server.stop()
        socat.terminate()
        socat.wait(10)


async def test_a_tcp_connection_that_stops_answering_is_made_afresh() -> None:
    sensor = BinSensor(1)
    server = DeviceServer([sensor])
    port = await server.start_tcp()
    sink = TimedSink()
    supervisor = Supervisor(sink)
    device = bin_sensor(1)
    driver = ModbusTcpDriver(
        [TcpDevice("127.0.0.1", port, device)], sink, supervisor, backoff_s=0.2, backoff_max_s=0.4
    )
    link = driver.links[("127.0.0.1", port)]
    try:
        async with running(driver.run(), supervisor.run()):
            await wait_until(lambda: sink.of("bin-1", "bin_reading"), 10, message="reading")
            sensor.set_fault("silent")
            offline = await wait_until(lambda: sink.of("bin-1", "device.offline"), 10)
            assert "timeout" in offline[0].data["reason"]
            await wait_until(
                lambda: getattr(link, "reconnects_after_timeouts", 0) >= 1, 10, message="redial"
            )
            sensor.set_fault(None)
            await wait_until(lambda: sink.of("bin-1", "device.online"), 10, message="online")
    finally:
        await server.stop()
    assert getattr(link, "connects", 0) >= 2
