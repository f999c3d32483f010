"""The DL/T 645 meter driver against simulated meters on a real pty: the issue's test
vector, readings as events, a silent meter going offline and backing off while the other
keeps being read, abnormal replies, bad checksums, noise and a cron schedule."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from apscheduler.triggers.interval import IntervalTrigger

from contract import Lane
from edge.codecs import dlt645
from edge.drivers.base import DeviceEntry
from edge.drivers.dlt645_meter import (
    DEFAULT_LINE,
    BusTiming,
    Dlt645MeterDriver,
    Meter,
    MeterPoint,
    MeterPoll,
    meters_from_entries,
)
from edge.supervision import Supervisor
from edge.transports.serial_port import LinkTiming, SerialLink
from profiles import load_profile
from simulators.dlt645_meter import SimulatedMeter, SimulatedMeterBus
from tests.conftest import wait_until
from tests.edge.conftest import REPO, FakeSink, RecordedEvent

pytestmark = pytest.mark.integration

A = "000012345678"
B = "000012345679"
ENERGY = MeterPoint("energy_kwh", dlt645.DI_FORWARD_ACTIVE_ENERGY_TOTAL, 8, 2, unit="kWh")
VOLTAGE = MeterPoint("voltage_v", dlt645.DI_PHASE_A_VOLTAGE, 4, 1, unit="V", min=0, max=400)
FAST_LINK = LinkTiming(read_timeout_s=0.02, backoff_initial_s=0.01, backoff_max_s=0.05)
REQUEST_VECTOR = bytes.fromhex("68 78 56 34 12 00 00 68 11 04 33 34 34 35 C9 16")
RESPONSE_VECTOR = bytes.fromhex("68 78 56 34 12 00 00 68 91 06 33 34 34 35 34 55 D4 16")


def meter(
    address: str,
    points: tuple[MeterPoint, ...] = (ENERGY, VOLTAGE),
    *,
    every_s: float = 0.1,
    trigger: Any = None,
) -> Meter:
    poll = MeterPoll(
        tuple(p.name for p in points), trigger or IntervalTrigger(seconds=every_s, timezone=UTC)
    )
    return Meter(f"meter-{address}", address, points, (poll,))


@asynccontextmanager
async def running(
    meters: list[Meter], sim: SimulatedMeterBus, sink: FakeSink, **timing: Any
) -> AsyncIterator[Dlt645MeterDriver]:
    supervisor = Supervisor(sink)
    link = SerialLink(sim.path, DEFAULT_LINE, timing=FAST_LINK)
    settings = {"timeout_s": 0.1, "inter_frame_gap_s": 0.002, **timing}
    driver = Dlt645MeterDriver(link, meters, sink, supervisor, timing=BusTiming(**settings))
    tasks = [asyncio.create_task(driver.run()), asyncio.create_task(supervisor.run())]
    try:
        yield driver
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task


def readings(sink: FakeSink, device_id: str) -> list[dict[str, Any]]:
    return [e.data for e in sink.events if e.device_id == device_id and e.kind == "meter_reading"]


def state_events(sink: FakeSink, device_id: str) -> list[str]:
    return [e.kind for e in sink.events if e.device_id == device_id and e.kind.startswith("dev")]


async def test_issue_test_vector_through_simulator_and_driver(fake_sink: FakeSink) -> None:
    async with SimulatedMeterBus([SimulatedMeter(A, wake_up=0)]) as sim:
        sim.meter(A).fixed[dlt645.DI_PHASE_A_VOLTAGE] = Decimal("220.1")
        async with running([meter(A, (VOLTAGE,))], sim, fake_sink, wake_up=0):
            await wait_until(lambda: readings(fake_sink, f"meter-{A}"), 5, message="a reading")
    assert bytes(sim.received[: len(REQUEST_VECTOR)]) == REQUEST_VECTOR
    assert sim.meter(A).replies[0] == RESPONSE_VECTOR
    assert fake_sink.events[0] == RecordedEvent(
        f"meter-{A}", "meter_reading", Lane.TELEMETRY, {"voltage_v": 220.1}, None
    )


async def test_a_poll_is_one_event_with_every_value_as_float(fake_sink: FakeSink) -> None:
    async with SimulatedMeterBus([A]) as sim:  # replies with 0-4 random FE bytes
        sim.meter(A).fixed[dlt645.DI_FORWARD_ACTIVE_ENERGY_TOTAL] = Decimal("12345.67")
        sim.meter(A).fixed[dlt645.DI_PHASE_A_VOLTAGE] = Decimal("221.3")
        async with running([meter(A)], sim, fake_sink) as driver:
            await wait_until(lambda: len(readings(fake_sink, f"meter-{A}")) >= 3, 5)
            stats = driver.stats()
    assert (
        readings(fake_sink, f"meter-{A}")[:3] == [{"energy_kwh": 12345.67, "voltage_v": 221.3}] * 3
    )
    assert all(type(v) is float for v in fake_sink.events[0].data.values())
    # With 4 FE bytes ahead of each request, as DL/T 645 masters send them.
    assert bytes(sim.received[:4]) == b"\xfe" * 4
    device = stats["devices"][f"meter-{A}"]
    assert device["online"] is True
    assert device["last_reading"] == {"energy_kwh": 12345.67, "voltage_v": 221.3}
    assert stats["bad_frames"] == {}


async def test_simulated_energy_grows_and_voltage_stays_near_220(fake_sink: FakeSink) -> None:
    sim = SimulatedMeterBus([SimulatedMeter(A, load_kw=3.0, time_scale=36_000)])
    async with sim, running([meter(A)], sim, fake_sink):
        await wait_until(lambda: len(readings(fake_sink, f"meter-{A}")) >= 4, 5)
    values = readings(fake_sink, f"meter-{A}")
    energies = [v["energy_kwh"] for v in values]
    assert energies == sorted(energies) and energies[-1] > energies[0]
    assert all(205 <= v["voltage_v"] <= 235 for v in values)


async def test_silent_meter_goes_offline_and_backs_off_while_the_other_is_read(
    fake_sink: FakeSink,
) -> None:
    async with SimulatedMeterBus([A, B]) as sim:
        sim.meter(B).silent = True
        meters = [meter(A), meter(B)]
        async with running(
            meters, sim, fake_sink, offline_after=2, backoff_s=0.5, backoff_max_s=1.0
        ) as driver:
            await wait_until(
                lambda: state_events(fake_sink, f"meter-{B}") == ["device.offline"],
                5,
                message="meter B offline",
            )
            offline = next(e for e in fake_sink.events if e.kind == "device.offline")
            assert "timeout" in offline.data["reason"]
            # The other meter keeps its schedule while B backs off.
            before = len(readings(fake_sink, f"meter-{A}"))
            asked_b = len(sim.meter(B).requests)
            await wait_until(lambda: len(readings(fake_sink, f"meter-{A}")) >= before + 5, 5)
            stats_b = driver.meter_stats(f"meter-{B}")
            assert driver.stats()["devices"][f"meter-{B}"]["polls_skipped"] >= 1
            # Meanwhile B was asked at most for a backoff retry or two.
            assert len(sim.meter(B).requests) <= asked_b + 2
            sim.meter(B).silent = False
            await wait_until(
                lambda: (
                    state_events(fake_sink, f"meter-{B}") == ["device.offline", "device.online"]
                ),
                5,
                message="meter B back online",
            )
            await wait_until(lambda: readings(fake_sink, f"meter-{B}"), 5)
    assert state_events(fake_sink, f"meter-{A}") == []
    assert stats_b.timeouts >= 2


async def test_abnormal_reply_is_a_device_error_and_the_meter_goes_offline(
    fake_sink: FakeSink,
) -> None:
    async with SimulatedMeterBus([A]) as sim:
        sim.meter(A).error_byte = 0x04  # password wrong / not authorised
        async with running([meter(A)], sim, fake_sink, offline_after=3) as driver:
            await wait_until(lambda: state_events(fake_sink, f"meter-{A}"), 5)
            stats = driver.meter_stats(f"meter-{A}")
            health = driver.bus.health[f"meter-{A}"]
    assert stats.device_errors >= 3
    assert health.failures["device_error"] >= 3
    assert "密码错或未授权" in stats.last_error
    offline = fake_sink.events[0]
    assert offline.kind == "device.offline"
    assert offline.data["reason"].startswith("device_error: meter 000012345678 refused DI")
    assert "not authorised" in offline.data["reason"]
    assert readings(fake_sink, f"meter-{A}") == []


async def test_unknown_data_identifier_gives_a_partial_reading(fake_sink: FakeSink) -> None:
    unknown = MeterPoint("reactive_kvarh", 0x00030000, 8, 2)
    async with SimulatedMeterBus([A]) as sim:
        sim.meter(A).fixed[dlt645.DI_FORWARD_ACTIVE_ENERGY_TOTAL] = Decimal("7.5")
        async with running([meter(A, (unknown, ENERGY))], sim, fake_sink) as driver:
            await wait_until(lambda: readings(fake_sink, f"meter-{A}"), 5)
            stats = driver.meter_stats(f"meter-{A}")
    assert readings(fake_sink, f"meter-{A}")[0] == {"energy_kwh": 7.5}
    assert stats.device_errors >= 1
    assert "no such data" in stats.last_error


async def test_bad_checksum_is_a_failure(fake_sink: FakeSink) -> None:
    async with SimulatedMeterBus([A]) as sim:
        sim.meter(A).bad_checksum = True
        async with running([meter(A)], sim, fake_sink, offline_after=2) as driver:
            await wait_until(lambda: state_events(fake_sink, f"meter-{A}"), 5)
            stats = driver.meter_stats(f"meter-{A}")
            health = driver.bus.health[f"meter-{A}"]
            bad_frames = driver.stats()["bad_frames"]
    assert stats.bad_replies >= 2
    assert health.failures["bad_reply"] >= 2
    assert "checksum" in stats.last_error
    assert bad_frames["checksum"] >= 2
    assert readings(fake_sink, f"meter-{A}") == []


async def test_noise_and_frames_for_other_meters_are_ignored(fake_sink: FakeSink) -> None:
    foreign = dlt645.encode(
        dlt645.read_reply("000099999999", dlt645.DI_PHASE_A_VOLTAGE, b"\x00\x23")
    )
    async with SimulatedMeterBus([A]) as sim:
        sim.meter(A).fixed[dlt645.DI_PHASE_A_VOLTAGE] = Decimal("219.9")
        sim.meter(A).preamble = b"\x00\x13\x37\xfe" + foreign
        async with running([meter(A, (VOLTAGE,))], sim, fake_sink) as driver:
            await wait_until(lambda: len(readings(fake_sink, f"meter-{A}")) >= 2, 5)
            stats = driver.stats()
    assert readings(fake_sink, f"meter-{A}")[:2] == [{"voltage_v": 219.9}] * 2
    assert stats["ignored_frames"]["other_address"] >= 2
    assert stats["garbage_bytes"] >= 6
    assert stats["devices"][f"meter-{A}"]["timeouts"] == 0


async def test_out_of_range_value_is_dropped_and_counted(fake_sink: FakeSink) -> None:
    async with SimulatedMeterBus([A]) as sim:
        sim.meter(A).fixed[dlt645.DI_PHASE_A_VOLTAGE] = Decimal("999.9")  # max is 400
        sim.meter(A).fixed[dlt645.DI_FORWARD_ACTIVE_ENERGY_TOTAL] = Decimal("1")
        async with running([meter(A)], sim, fake_sink) as driver:
            await wait_until(lambda: readings(fake_sink, f"meter-{A}"), 5)
            stats = driver.meter_stats(f"meter-{A}")
    assert readings(fake_sink, f"meter-{A}")[0] == {"energy_kwh": 1.0}
    assert stats.out_of_range >= 1


async def test_the_shipped_profile_reads_every_meter_at_the_full_hour(fake_sink: FakeSink) -> None:
    profile = load_profile(REPO / "device_profiles" / "dlt645-meter.yaml")  # cron "0 * * * *"
    # The wall clock as the driver sees it: 0.3 s before a full hour.
    real = datetime.now(UTC)
    full_hour = real.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    shift = full_hour - real - timedelta(seconds=0.3)
    async with SimulatedMeterBus([A, B]) as sim:
        entries = [
            DeviceEntry(profile.device_id_for_address(a), profile, a, port=sim.path) for a in (A, B)
        ]
        driver = Dlt645MeterDriver.from_entries(
            entries, fake_sink, Supervisor(fake_sink), wall_clock=lambda: datetime.now(UTC) + shift
        )
        task = asyncio.create_task(driver.run())
        try:
            await wait_until(lambda: len(fake_sink.events) == 2, 5, message="hourly reads")
            read_at = [driver.meter_stats(f"meter-{a}").last_read_at for a in (A, B)]
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
    assert {e.device_id for e in fake_sink.events} == {f"meter-{A}", f"meter-{B}"}
    assert all(set(e.data) == {"energy_kwh", "voltage_v"} for e in fake_sink.events)
    assert all(t is not None and t >= full_hour for t in read_at)
    # Once per point and meter, and not again before the next hour.
    assert len(sim.meter(A).requests) == len(sim.meter(B).requests) == 2
    assert driver.bus.health[f"meter-{A}"].online is True


def test_from_entries_takes_the_profile_settings_and_one_port_only() -> None:
    profile = load_profile(REPO / "device_profiles" / "dlt645-meter.yaml")
    meters = meters_from_entries([DeviceEntry(f"meter-{A}", profile, A, port="/dev/ttyUSB2")])
    assert meters[0].points[0] == MeterPoint(
        "energy_kwh", dlt645.DI_FORWARD_ACTIVE_ENERGY_TOTAL, 8, 2, unit="kWh", min=0
    )
    assert meters[0].polls[0].points == ("energy_kwh", "voltage_v")
    assert meters[0].offline_after == 3
    entries = [
        DeviceEntry(f"meter-{A}", profile, A, port="/dev/ttyUSB2"),
        DeviceEntry(f"meter-{B}", profile, B, port="/dev/ttyUSB3"),
    ]
    with pytest.raises(ValueError, match="shares port"):
        Dlt645MeterDriver.from_entries(entries, FakeSink(), Supervisor(FakeSink()))


async def test_commands_are_rejected() -> None:
    driver = Dlt645MeterDriver.on_serial_port(
        "/dev/null-meter-bus", [meter(A)], FakeSink(), Supervisor(FakeSink())
    )
    assert driver.knows(f"meter-{A}") and not driver.knows(f"meter-{B}")
    assert (await driver.command(f"meter-{A}", "open_door", {}))[0] == "rejected"
    assert (await driver.command(f"meter-{B}", "anything", {}))[0] == "rejected"


@pytest.mark.parametrize(
    ("meters", "problem"),
    [
        ([meter(A), meter(A)], "appears twice"),
        ([meter(A), Meter("meter-x", A, (ENERGY,), ())], "address"),
        (
            [Meter("meter-x", A, (ENERGY,), (MeterPoll(("nope",), IntervalTrigger(seconds=1)),))],
            "unknown points",
        ),
        ([Meter("meter-x", "12345", (), ())], "12 digits"),
    ],
)
def test_bad_meter_lists_are_refused(meters: list[Meter], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Dlt645MeterDriver(SerialLink("/dev/null"), meters, FakeSink(), Supervisor(FakeSink()))
