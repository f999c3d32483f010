"""The bus scheduler: one transaction at a time, commands first, dead devices never stall
the others, offline/online reported, nothing stops the loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from edge.transports.bus_scheduler import BusScheduler
from tests.conftest import wait_until


class FakeBus:
    """Devices that answer, time out or fail; records the wire order and concurrency."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.dead: set[str] = set()
        self.broken: dict[str, Exception] = {}

    def transaction(self, device: str, what: str = "poll", duration: float = 0.002) -> Any:
        async def run() -> str:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                self.log.append(f"{what}:{device}")
                if device in self.dead:
                    await asyncio.sleep(3600)  # never answers: the scheduler's timeout ends it
                if device in self.broken:
                    raise self.broken[device]
                await asyncio.sleep(duration)
                return f"{device}-ok"
            finally:
                self.in_flight -= 1

        return run


@contextlib.asynccontextmanager
async def running(scheduler: BusScheduler) -> AsyncIterator[BusScheduler]:
    task = asyncio.create_task(scheduler.run())
    try:
        yield scheduler
    finally:
        scheduler.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_one_transaction_at_a_time_and_every_device_polled() -> None:
    bus = FakeBus()
    scheduler = BusScheduler("bus0", inter_frame_gap_s=0.001)
    for n in range(5):
        scheduler.add_poll(f"d{n}", 0.02, bus.transaction(f"d{n}"))
    async with running(scheduler):
        await wait_until(
            lambda: all(f"poll:d{n}" in bus.log[-20:] for n in range(5)) and len(bus.log) > 50,
            20,
            message="every device polled repeatedly",
        )
    assert bus.max_in_flight == 1


async def test_a_dead_device_backs_off_and_the_others_keep_their_schedule() -> None:
    bus = FakeBus()
    bus.dead.add("dead")
    states: list[tuple[str, bool]] = []
    scheduler = BusScheduler(
        "bus0",
        inter_frame_gap_s=0.001,
        timeout_s=0.05,
        offline_after=2,
        backoff_s=0.2,
        backoff_max_s=0.4,
        on_state=lambda device, online, _reason: states.append((device, online)),
    )
    for name in ("a", "b", "dead", "c"):
        scheduler.add_poll(name, 0.02, bus.transaction(name))
    async with running(scheduler):
        await wait_until(
            lambda: min(bus.log.count(f"poll:{n}") for n in "abc") >= 100,
            60,
            message="100 polls of each healthy device",
        )
    dead = scheduler.health["dead"]
    assert ("dead", False) in states and dead.online is False
    assert dead.failures["timeout"] == bus.log.count("poll:dead")
    healthy = min(bus.log.count(f"poll:{n}") for n in "abc")
    # Without backoff the dead device would be asked as often as the others (and eat
    # 50 ms of bus time each round); with it, it is probed a few times per second.
    assert bus.log.count("poll:dead") * 5 < healthy
    assert all(scheduler.health[n].online for n in "abc")
    assert bus.max_in_flight == 1


@pytest.mark.parametrize(
    "error", [ValueError("bad CRC"), ConnectionError("Modbus exception 0x02: illegal address")]
)
async def test_errors_count_as_failures_then_recovery_reports_online(error: Exception) -> None:
    bus = FakeBus()
    bus.broken["m1"] = error
    states: list[tuple[str, bool, str]] = []
    scheduler = BusScheduler(
        "bus0",
        inter_frame_gap_s=0.0,
        offline_after=3,
        backoff_s=0.05,
        on_state=lambda *state: states.append(state),
    )
    scheduler.add_poll("m1", 0.01, bus.transaction("m1"))
    async with running(scheduler):
        await wait_until(lambda: scheduler.health["m1"].online is False, 20, message="offline")
        assert str(error) in states[-1][2]
        del bus.broken["m1"]
        await wait_until(lambda: scheduler.health["m1"].online is True, 20, message="online")
    assert [s[:2] for s in states] == [("m1", False), ("m1", True)]
    assert scheduler.health["m1"].failures[type(error).__name__] >= 3


async def test_commands_go_ahead_of_due_polls() -> None:
    bus = FakeBus()
    scheduler = BusScheduler("bus0", inter_frame_gap_s=0.0)
    for n in range(20):
        scheduler.add_poll(f"d{n}", 10.0, bus.transaction(f"d{n}", duration=0.01))
    async with running(scheduler):
        await wait_until(lambda: len(bus.log) >= 2, 10, message="polling started")
        result = await scheduler.command("d19", bus.transaction("d19", "open"))
    assert result == "d19-ok"
    # At most the poll that was on the wire when the command came finished first.
    assert bus.log.index("open:d19") <= 3


async def test_a_failed_command_raises_to_its_caller_and_polling_goes_on() -> None:
    bus = FakeBus()
    bus.dead.add("door")
    scheduler = BusScheduler("bus0", inter_frame_gap_s=0.0, timeout_s=0.05)
    scheduler.add_poll("meter", 0.01, bus.transaction("meter"))
    async with running(scheduler):
        with pytest.raises(TimeoutError):
            await scheduler.command("door", bus.transaction("door", "open"))
        before = bus.log.count("poll:meter")
        await wait_until(lambda: bus.log.count("poll:meter") > before + 5, 10, message="polls")


async def test_a_failing_result_handler_does_not_stop_the_bus() -> None:
    bus = FakeBus()
    scheduler = BusScheduler("bus0", inter_frame_gap_s=0.0)

    def explode(_result: object) -> None:
        raise RuntimeError("handler bug")

    scheduler.add_poll("x", 0.01, bus.transaction("x"), on_result=explode)
    async with running(scheduler):
        await wait_until(lambda: bus.log.count("poll:x") >= 5, 10, message="still polling")


async def test_late_polls_skip_missed_slots_instead_of_bursting() -> None:
    now = [100.0]
    scheduler = BusScheduler("bus0", clock=lambda: now[0])
    bus = FakeBus()
    scheduler.add_poll("m", 1.0, bus.transaction("m"), first_due=100.0)
    now[0] = 103.5  # the bus was busy for 3.5 intervals
    poll = scheduler._next_due_poll()
    assert poll is not None and poll.due == 104.0
    assert scheduler._next_due_poll() is None


def test_bad_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        BusScheduler("bus0").add_poll("m", 0, FakeBus().transaction("m"))
