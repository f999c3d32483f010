"""The Modbus driver core with an in-memory link: what a poll reads and records, limits,
write_point outcomes, schedules from APScheduler triggers, RTU CRC checks, and the
adapter from v2 profiles. (Real pymodbus servers and ptys: tests/integration.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from contract import Lane
from edge.command_deadline import CommandDeadline
from edge.drivers.modbus import ModbusDevice, PointSpec, PollPlan, ReadPlan
from edge.drivers.modbus_rtu import ModbusRtuDriver, frame_gap_s
from edge.drivers.modbus_tcp import ModbusTcpDriver, TcpDevice
from edge.transports.bus_scheduler import NEVER, BusScheduler, TriggerSchedule
from edge.transports.modbus_client import (
    BadCrc,
    ModbusExceptionReply,
    ModbusTimeout,
    Table,
    rtu_crc_ok,
    rtu_reply_size,
)
from edge.transports.serial_port import LineSettings
from profiles.registers import Point
from tests.conftest import wait_until
from tests.edge.conftest import FakeSink


class Gauge:
    """Requests in flight across links, and the most seen at once."""

    def __init__(self) -> None:
        self.now = 0
        self.max = 0


class FakeLink:
    """Units with holding registers in memory; errors and clamping on demand."""

    def __init__(self, name: str = "fake", gauge: Gauge | None = None) -> None:
        self.name = name
        self.gauge = gauge or Gauge()
        self.registers: dict[int, dict[int, int]] = {}
        self.requests: list[tuple[str, int, int, int]] = []  # op, unit, start, count
        self.fail: dict[int, Exception] = {}
        self.clamp: dict[tuple[int, int], tuple[int, int]] = {}  # (unit, addr) → low, high
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay_s = 0.0

    async def read(
        self, unit: int, table: Table, start: int, count: int, timeout_s: float
    ) -> list[int]:
        self.requests.append(("read", unit, start, count))
        await self._wait(unit)
        regs = self.registers.setdefault(unit, {})
        return [regs.get(a, 0) for a in range(start, start + count)]

    async def write(self, unit: int, address: int, registers: list[int], timeout_s: float) -> None:
        self.requests.append(("write", unit, address, len(registers)))
        await self._wait(unit)
        regs = self.registers.setdefault(unit, {})
        for offset, value in enumerate(registers):
            low, high = self.clamp.get((unit, address + offset), (0, 0xFFFF))
            regs[address + offset] = max(low, min(high, value))

    async def _wait(self, unit: int) -> None:
        self.in_flight += 1
        self.gauge.now += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.gauge.max = max(self.gauge.max, self.gauge.now)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if unit in self.fail:
                raise self.fail[unit]
        finally:
            self.in_flight -= 1
            self.gauge.now -= 1

    def close(self) -> None:
        pass


class Transitions:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, str]] = []

    def online(self, device_id: str) -> None:
        self.seen.append((device_id, True, ""))

    def offline(self, device_id: str, reason: str) -> None:
        self.seen.append((device_id, False, reason))


def bin_device(device_id: str = "bin-1", unit: int = 1, every_s: float = 0.02) -> ModbusDevice:
    points = (
        PointSpec(Point("fill_pct", 0, "u16", scale=0.1), minimum=0, maximum=100),
        PointSpec(Point("temperature_c", 1, "i16", scale=0.1), minimum=-40, maximum=120),
        PointSpec(Point("tilt_deg", 2, "u16", scale=0.1), minimum=0, maximum=90),
        PointSpec(Point("report_interval_s", 10, "u16"), minimum=10, maximum=3600, writable=True),
        PointSpec(Point("total", 0, "u32", scale=0.001), table="input"),
    )
    poll = PollPlan.every(every_s, ["fill_pct", "temperature_c", "tilt_deg"], "bin_reading")
    return ModbusDevice(device_id, unit, points, (poll,), timeout_s=0.05, offline_after=2)


@contextlib.asynccontextmanager
async def running(driver: ModbusRtuDriver | ModbusTcpDriver) -> AsyncIterator[None]:
    task = asyncio.create_task(driver.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ---- planning and schedules ------------------------------------------------------------


def test_a_poll_reads_adjacent_points_in_one_request_per_table() -> None:
    device = bin_device()
    plan = ReadPlan.of(device, device.polls[0])
    assert [(t, b.start, b.count) for t, b in plan.blocks] == [("holding", 0, 3)]
    everything = PollPlan.every(1, [p.name for p in device.points], "bin_reading")
    plan = ReadPlan.of(device, everything)
    assert [(t, b.start, b.count) for t, b in plan.blocks] == [("holding", 0, 11), ("input", 0, 2)]


def test_interval_trigger_gives_evenly_spaced_due_times_and_skips_missed_slots() -> None:
    now = [1000.0]
    wall = datetime(2025, 3, 1, 8, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    trigger = IntervalTrigger(seconds=2, start_date=wall, timezone=ZoneInfo("Asia/Shanghai"))
    schedule = TriggerSchedule(trigger, clock=lambda: now[0], wall_clock=lambda: wall)
    first = schedule.first_due()
    assert first == pytest.approx(1000.0)
    assert schedule(first, first) == pytest.approx(1002.0)
    # the bus was busy for 3.5 intervals: the next slot after now, not a burst of 3
    assert schedule(1002.0, 1009.0) == pytest.approx(1010.0)


def test_cron_trigger_fires_at_every_full_hour_local_time() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    wall = datetime(2025, 3, 1, 8, 59, 30, tzinfo=zone)
    schedule = TriggerSchedule(
        CronTrigger.from_crontab("0 * * * *", timezone=zone),
        clock=lambda: 500.0,
        wall_clock=lambda: wall,
    )
    first = schedule.first_due()
    assert first == pytest.approx(530.0)  # 09:00:00 is 30 s away
    assert schedule(first, first + 0.01) == pytest.approx(530.0 + 3600)


def test_an_ended_trigger_gives_no_more_due_times() -> None:
    zone = ZoneInfo("UTC")
    wall = datetime(2025, 3, 1, tzinfo=zone)
    trigger = IntervalTrigger(
        seconds=1, start_date=wall, end_date=wall + timedelta(seconds=2), timezone=zone
    )
    schedule = TriggerSchedule(trigger, clock=lambda: 0.0, wall_clock=lambda: wall)
    assert schedule(2.0, 2.0) == NEVER


def test_rtu_frame_gap_is_three_and_a_half_characters() -> None:
    assert frame_gap_s(LineSettings(baudrate=9600)) == pytest.approx(3.5 * 11 / 9600)
    assert frame_gap_s(LineSettings(baudrate=115200)) == pytest.approx(0.00175)


@pytest.mark.parametrize(
    ("frame", "size"),
    [
        (bytes.fromhex("0103"), None),
        (bytes.fromhex("010306"), 11),
        (bytes.fromhex("0183"), 5),
        (bytes.fromhex("0106"), 8),
    ],
)
def test_rtu_reply_size(frame: bytes, size: int | None) -> None:
    assert rtu_reply_size(frame) == size


def test_rtu_crc_check() -> None:
    reply = bytes.fromhex("01030604d20000000098e3")  # unit 1, 3 registers: 1234, 0, 0
    assert rtu_crc_ok(reply)
    assert not rtu_crc_ok(reply[:-1] + bytes([reply[-1] ^ 1]))


# ---- the bus scheduler's extensions -----------------------------------------------------


@contextlib.asynccontextmanager
async def scheduling(*schedulers: BusScheduler) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(s.run()) for s in schedulers]
    try:
        yield
    finally:
        for scheduler, task in zip(schedulers, tasks, strict=True):
            scheduler.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_per_poll_timeouts_reasons_and_offline_after_per_device() -> None:
    states: list[tuple[str, bool, str]] = []
    scheduler = BusScheduler(
        "bus", inter_frame_gap_s=0.0, timeout_s=5.0, offline_after=10, backoff_s=0.05,
        on_state=lambda *s: states.append(s),
    )  # fmt: skip

    async def hangs() -> None:
        await asyncio.sleep(3600)

    async def crc() -> None:
        raise BadCrc("unit 2: reply with a bad CRC")

    scheduler.add_poll("slow", 0.01, hangs, timeout_s=0.02)
    scheduler.add_poll("noisy", 0.01, crc)
    scheduler.set_offline_after("slow", 2)
    scheduler.set_offline_after("noisy", 2)
    async with scheduling(scheduler):
        await wait_until(lambda: len(states) == 2, 10, message="both offline")
    assert scheduler.health["slow"].failures["timeout"] >= 2
    assert scheduler.health["noisy"].failures["bad_crc"] >= 2
    assert {s[0] for s in states} == {"slow", "noisy"}
    with pytest.raises(ValueError, match="at least 1"):
        scheduler.set_offline_after("x", 0)


async def test_a_shared_gate_bounds_transactions_across_schedulers() -> None:
    gate = asyncio.Semaphore(2)
    gauge = Gauge()

    async def exchange() -> None:
        gauge.now += 1
        gauge.max = max(gauge.max, gauge.now)
        try:
            await asyncio.sleep(0.01)
        finally:
            gauge.now -= 1

    schedulers = [BusScheduler(f"s{n}", inter_frame_gap_s=0.0, gate=gate) for n in range(6)]
    for n, scheduler in enumerate(schedulers):
        scheduler.add_poll(f"d{n}", 0.005, exchange)
    async with scheduling(*schedulers):
        await wait_until(lambda: all(s.transactions >= 10 for s in schedulers), 20)
    assert gauge.max == 2


async def test_waiting_for_the_gate_does_not_count_against_the_timeout() -> None:
    gate = asyncio.Semaphore(1)
    slow, quick = BusScheduler("slow", gate=gate), BusScheduler("quick", gate=gate)

    async def takes_200_ms() -> None:
        await asyncio.sleep(0.2)

    async def instant() -> None:
        pass

    slow.add_poll("slow", 3600, takes_200_ms, timeout_s=10)
    async with scheduling(slow):
        await wait_until(lambda: slow.transactions == 1, 10, message="the gate taken")
        quick.add_poll("quick", 3600, instant, timeout_s=0.05)
        async with scheduling(quick):
            await wait_until(lambda: quick.health["quick"].successes == 1, 10)
    assert not quick.health["quick"].failures


async def test_polls_follow_a_next_due_function_and_stop_when_it_ends() -> None:
    runs: list[float] = []
    loop = asyncio.get_running_loop()
    scheduler = BusScheduler("bus", inter_frame_gap_s=0.0, clock=loop.time)
    dues = iter([loop.time() + 0.02, loop.time() + 0.04, NEVER])

    async def poll() -> None:
        runs.append(loop.time())

    scheduler.add_poll("m", 3600, poll, next_due=lambda _previous, _now: next(dues))
    async with scheduling(scheduler):
        await wait_until(lambda: len(runs) == 3, 10, message="three polls")
        assert not scheduler._polls  # the schedule has ended
    assert len(scheduler.lateness) == 3


# ---- polls -----------------------------------------------------------------------------


async def test_each_poll_becomes_one_event_and_out_of_range_values_are_left_out() -> None:
    link, sink, states = FakeLink(), FakeSink(), Transitions()
    link.registers[1] = {0: 805, 1: (-52) & 0xFFFF, 2: 1500}  # 80.5 %, -5.2 °C, 150° (bad)
    driver = ModbusRtuDriver(link, [bin_device()], sink, states, inter_frame_gap_s=0.001)
    async with running(driver):
        await wait_until(lambda: len(sink.events) >= 3, 10, message="three readings")
    event = sink.events[0]
    assert (event.device_id, event.kind, event.lane) == ("bin-1", "bin_reading", Lane.TELEMETRY)
    assert event.data == {"fill_pct": pytest.approx(80.5), "temperature_c": pytest.approx(-5.2)}
    stats = driver.stats()["devices"]["bin-1"]
    assert stats["out_of_range"]["tilt_deg"] >= 3
    assert stats["online"] is True
    assert all(r == ("read", 1, 0, 3) for r in link.requests)
    assert states.seen == [("bin-1", True, "")]


async def test_a_failing_device_goes_offline_with_its_reason_and_comes_back() -> None:
    link, sink, states = FakeLink(), FakeSink(), Transitions()
    link.fail[2] = ModbusExceptionReply(2, 3, 4)
    devices = [bin_device("bin-1", 1), bin_device("bin-2", 2)]
    driver = ModbusRtuDriver(
        link, devices, sink, states, inter_frame_gap_s=0.0, backoff_s=0.05, backoff_max_s=0.1
    )
    async with running(driver):
        await wait_until(lambda: ("bin-2", False) in [s[:2] for s in states.seen], 10)
        reason = next(s[2] for s in states.seen if s[:2] == ("bin-2", False))
        assert "exception_4" in reason and "server device failure" in reason
        before = driver.device_stats("bin-1").polls_ok
        await wait_until(lambda: driver.device_stats("bin-1").polls_ok > before + 5, 10)
        del link.fail[2]
        await wait_until(lambda: states.seen[-1][:2] == ("bin-2", True), 10, message="online")
    assert driver.stats()["devices"]["bin-2"]["failures"]["exception_4"] >= 2


async def test_a_stalled_outbox_drops_readings_instead_of_holding_up_the_bus() -> None:
    link, sink, states = FakeLink(), FakeSink(), Transitions()
    sink.gate = asyncio.Event()  # record() never returns
    driver = ModbusRtuDriver(
        link, [bin_device()], sink, states, inter_frame_gap_s=0.0, max_pending=3
    )
    async with running(driver):
        await wait_until(lambda: driver.device_stats("bin-1").dropped >= 5, 10, message="drops")
        assert driver.stats()["pending_results"] == 3
        sink.gate.set()
        await wait_until(lambda: len(sink.events) >= 4, 10, message="recording resumes")


async def test_tcp_driver_bounds_requests_in_flight() -> None:
    gauge = Gauge()
    links: dict[tuple[str, int], FakeLink] = {}

    def factory(host: str, port: int, timeout_s: float) -> FakeLink:
        link = links[(host, port)] = FakeLink(f"{host}:{port}", gauge)
        link.delay_s = 0.02
        return link

    targets = [TcpDevice("10.0.0.1", 502 + n, bin_device(f"bin-{n}", 1)) for n in range(10)]
    driver = ModbusTcpDriver(
        targets, FakeSink(), Transitions(), max_in_flight=3, link_factory=factory
    )
    async with running(driver):
        await wait_until(
            lambda: all(len(link.requests) >= 5 for link in links.values()), 20, message="polls"
        )
    assert 2 <= gauge.max <= 3
    assert len(driver.links) == 10
    assert all(link.max_in_flight == 1 for link in links.values())  # one at a time per host


# ---- write_point -----------------------------------------------------------------------


@pytest.fixture
def bus() -> tuple[FakeLink, ModbusRtuDriver, FakeSink]:
    link, sink = FakeLink(), FakeSink()
    link.clamp[(1, 10)] = (10, 3600)
    device = bin_device(every_s=3600)
    return link, ModbusRtuDriver(link, [device], sink, Transitions(), inter_frame_gap_s=0.0), sink


@pytest.mark.parametrize(
    ("args", "status", "detail"),
    [
        ({"point": "report_interval_s", "value": 600}, "ok", "read back"),
        ({"point": "report_interval_s", "value": 5}, "rejected", "outside"),
        ({"point": "fill_pct", "value": 50}, "rejected", "read-only"),
        ({"point": "nope", "value": 1}, "rejected", "one of ['report_interval_s']"),
        ({"point": "report_interval_s", "value": "600"}, "rejected", "number"),
        ({"point": "report_interval_s", "value": True}, "rejected", "number"),
        ({"point": "report_interval_s", "value": 60.5}, "rejected", "multiple"),
        ({"point": "report_interval_s", "value": 60, "x": 1}, "rejected", "unexpected"),
    ],
)
async def test_write_point_outcomes(
    bus: tuple[FakeLink, ModbusRtuDriver, FakeSink],
    args: dict[str, Any],
    status: str,
    detail: str,
) -> None:
    link, driver, _ = bus
    async with running(driver):
        outcome = await driver.command("bin-1", "write_point", args)
    assert outcome[0] == status, outcome
    assert detail in outcome[1]
    if status == "ok":
        assert link.registers[1][10] == 600
        assert [r[0] for r in link.requests] == ["write", "read"]
    else:
        assert not any(r[0] == "write" for r in link.requests)


async def test_write_point_read_back_mismatch_is_a_device_error(
    bus: tuple[FakeLink, ModbusRtuDriver, FakeSink],
) -> None:
    link, driver, _ = bus
    link.clamp[(1, 10)] = (100, 3600)  # the device keeps at least 100 s
    async with running(driver):
        status, detail = await driver.command(
            "bin-1", "write_point", {"point": "report_interval_s", "value": 20}
        )
    assert status == "device_error"
    assert "read back 100" in detail


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ModbusExceptionReply(1, 6, 2), "device_error"),
        (BadCrc("unit 1: bad CRC"), "device_error"),
        (ModbusTimeout("unit 1: no reply"), "timeout"),
    ],
)
async def test_write_point_failures(
    bus: tuple[FakeLink, ModbusRtuDriver, FakeSink], error: Exception, status: str
) -> None:
    link, driver, _ = bus
    link.fail[1] = error
    async with running(driver):
        outcome = await driver.command(
            "bin-1", "write_point", {"point": "report_interval_s", "value": 60}
        )
    assert outcome[0] == status
    assert driver.stats()["devices"]["bin-1"]["commands"] == {status: 1}


async def test_unknown_devices_and_commands_are_rejected(
    bus: tuple[FakeLink, ModbusRtuDriver, FakeSink],
) -> None:
    _, driver, _ = bus
    assert (await driver.command("bin-9", "write_point", {}))[0] == "rejected"
    assert (await driver.command("bin-1", "open_door", {}))[0] == "rejected"
    assert driver.knows("bin-1") and not driver.knows("bin-9")


def test_a_poll_of_an_unknown_point_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown points"):
        ModbusDevice(
            "wm-1",
            1,
            (PointSpec(Point("total_m3", 0, "u32")),),
            (PollPlan.every(1, ["flow"], "water_reading"),),
        )


async def test_a_write_past_its_deadline_never_reaches_the_bus(
    bus: tuple[FakeLink, ModbusRtuDriver, FakeSink],
) -> None:
    """Issue #11: checked when the scheduler runs the write, so a command that waited its
    turn past its deadline ends ``expired`` with nothing on the wire."""
    link, driver, _ = bus
    now = [100.0]
    deadline = CommandDeadline(expires_at=100.0, why="time to live 5 s", clock=lambda: now[0])
    async with running(driver):
        status, detail = await driver.command(
            "bin-1", "write_point", {"point": "report_interval_s", "value": 600}, deadline=deadline
        )
    assert status == "expired", detail
    assert "before the bus write" in detail
    assert not any(r[0] == "write" for r in link.requests)
    assert driver.stats()["devices"]["bin-1"]["failures"] == {}  # not held against the device
