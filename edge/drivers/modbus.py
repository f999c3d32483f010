"""Modbus devices (RTU buses and TCP devices): what is shared by both drivers.

Why one core for two transports: what a poll *means* is the same on RS-485 and on
Ethernet — read the registers a poll's points live in (adjacent ones coalesced into as
few requests as possible by :func:`profiles.registers.plan_reads`), decode them,
drop values outside a point's min/max (counted, logged at most once a minute) and record
what is left as one event; a ``write_point`` command writes an ``access: rw`` point and
reads it back. Only *how transactions are scheduled* differs, and that lives in
:mod:`edge.drivers.modbus_rtu` (one bus, one transaction at a time) and
:mod:`edge.drivers.modbus_tcp` (concurrent, bounded).

Both hand every transaction to a :class:`~edge.transports.bus_scheduler.BusScheduler`,
which counts a device's failures by reason (``timeout``, ``bad_crc``, ``exception_2``,
``link_down``…), reports it offline after ``offline_after`` failures in a row (→
``supervisor.offline``) and online at its next answer, and backs off from a dead device
so it never holds up the others. Polls run when an APScheduler trigger says (interval or
cron) through :class:`~edge.transports.bus_scheduler.TriggerSchedule`.

The drivers take plain dataclasses (:class:`ModbusDevice`, :class:`PointSpec`,
:class:`PollPlan`) so they can be built and tested without profile files;
:func:`devices_from_entries` builds them from the configured devices and their v2
profiles. Results are handed from the scheduler (synchronous callbacks) to one recorder
task through a bounded queue: if the outbox stalls, readings are dropped and counted
(telemetry; the next poll brings fresh values), the bus never waits for the disk.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Protocol

from apscheduler.triggers.interval import IntervalTrigger

from contract import Lane
from contract.envelope import format_time, utc_now
from edge.command_deadline import CommandDeadline
from edge.drivers.base import CommandOutcome, DeviceEntry
from edge.errors import CommandExpired, DeviceError, OutboxError, TransportError
from edge.sink import EventSink, RecordPipeline
from edge.transports.bus_scheduler import BusScheduler, FireSchedule, TriggerSchedule
from edge.transports.modbus_client import LinkDown, ModbusLink, Table
from profiles.errors import MappingError
from profiles.registers import (
    Block,
    Point,
    RegisterMapError,
    decode,
    encode,
    plan_reads,
    slice_block,
)

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 60.0  # at most one log line per device and reason a minute
MAX_PENDING_RESULTS = 1000  # poll results waiting for the outbox before readings are dropped
WRITE_POINT = "write_point"
TIMEOUT_SLACK_S = 0.5  # on top of the requests' own deadlines, for the scheduler's limit


class Liveness(Protocol):
    """Where online/offline transitions go: :class:`edge.supervision.Supervisor`."""

    def online(self, device_id: str) -> None: ...

    def offline(self, device_id: str, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class PointSpec:
    """One value of a device: where it is (``point``), its limits and whether it is writable."""

    point: Point
    table: Table = "holding"
    minimum: float | None = None
    maximum: float | None = None
    writable: bool = False

    def __post_init__(self) -> None:
        if self.writable and self.table != "holding":
            raise ValueError(f"{self.point.name}: only holding registers can be written")

    @property
    def name(self) -> str:
        return self.point.name

    def in_limits(self, value: float) -> bool:
        return (self.minimum is None or value >= self.minimum) and (
            self.maximum is None or value <= self.maximum
        )


@dataclass(frozen=True, slots=True)
class PollPlan:
    """Read ``points`` whenever ``trigger`` fires; record them as one event ``kind``."""

    points: tuple[str, ...]
    trigger: FireSchedule
    kind: str
    lane: Lane = Lane.TELEMETRY
    interval_hint_s: float = 60.0

    @classmethod
    def every(
        cls,
        seconds: float,
        points: Sequence[str],
        kind: str,
        lane: Lane = Lane.TELEMETRY,
        *,
        timezone: tzinfo | str = "UTC",
    ) -> PollPlan:
        return cls(
            tuple(points),
            IntervalTrigger(seconds=seconds, timezone=timezone),
            kind,
            lane,
            interval_hint_s=seconds,
        )


@dataclass(frozen=True, slots=True)
class ModbusDevice:
    """One Modbus device (a unit id behind a bus or a TCP endpoint) and what to do with it."""

    device_id: str
    unit: int
    points: tuple[PointSpec, ...]
    polls: tuple[PollPlan, ...] = ()
    timeout_s: float = 0.5  # per request
    offline_after: int = 3
    writable: bool = True  # the profile has a write_point command
    verify_writes: bool = True

    def __post_init__(self) -> None:
        names = [p.name for p in self.points]
        for poll in self.polls:
            unknown = [n for n in poll.points if n not in names]
            if unknown:
                raise ValueError(f"{self.device_id}: poll reads unknown points {unknown}")
        if not 0 <= self.unit <= 255:
            raise ValueError(f"{self.device_id}: unit id {self.unit} outside 0..255")
        if self.timeout_s <= 0:
            raise ValueError(f"{self.device_id}: timeout_s must be positive")

    def point(self, name: str) -> PointSpec | None:
        return next((p for p in self.points if p.name == name), None)


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """The requests one poll makes: blocks per table, planned once at start."""

    device: ModbusDevice
    poll: PollPlan
    blocks: tuple[tuple[Table, Block], ...]

    @classmethod
    def of(cls, device: ModbusDevice, poll: PollPlan) -> ReadPlan:
        specs = [p for p in device.points if p.name in poll.points]
        blocks: list[tuple[Table, Block]] = []
        for table in ("holding", "input"):
            points = [s.point for s in specs if s.table == table]
            blocks.extend((table, block) for block in plan_reads(points))
        return cls(device, poll, tuple(blocks))

    @property
    def timeout_s(self) -> float:
        """The scheduler's limit for the whole poll: every request's deadline, and slack."""
        return self.device.timeout_s * max(1, len(self.blocks)) + TIMEOUT_SLACK_S


@dataclass
class DeviceStats:
    polls_ok: int = 0
    requests: int = 0
    readings: int = 0  # events recorded
    out_of_range: Counter[str] = field(default_factory=Counter)  # by point
    record_failed: int = 0
    dropped: int = 0  # results not recorded: the queue to the outbox was full
    commands: Counter[str] = field(default_factory=Counter)  # by outcome status
    last_values: dict[str, float | int] = field(default_factory=dict)
    last_read_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Result:
    plan: ReadPlan
    values: dict[str, float | int]


class RateLimitedLog:
    """Logs a (device, reason) at most once per ``interval_s``; counts what it held back."""

    def __init__(
        self, interval_s: float = LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: Counter[tuple[str, str]] = Counter()

    def warning(self, device_id: str, reason: str, message: str) -> None:
        key = (device_id, reason)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._held[key] += 1
            return
        held = self._held.pop(key, 0)
        self._last[key] = now
        suffix = f" ({held} more like it since the last report)" if held else ""
        log.warning("%s: %s%s", device_id, message, suffix)


class ModbusDriverBase:
    """Polls, recording and ``write_point`` for Modbus devices; the subclass supplies, per
    device, the :class:`BusScheduler` its transactions go through and the link they use.

    ``poll_at_start``: read every device once right away instead of waiting for the first
    fire time (an interval trigger first fires one interval after start).
    """

    name: str

    def __init__(
        self,
        name: str,
        devices: Iterable[ModbusDevice],
        sink: EventSink,
        supervisor: Liveness,
        *,
        max_pending: int = MAX_PENDING_RESULTS,
        clock: Callable[[], float] = time.monotonic,
        poll_at_start: bool = False,
    ) -> None:
        self.name = name
        self._poll_at_start = poll_at_start
        self._sink = sink
        self._supervisor = supervisor
        self._clock = clock
        self._devices: dict[str, ModbusDevice] = {}
        for device in devices:
            if device.device_id in self._devices:
                raise ValueError(f"{name}: device {device.device_id!r} configured twice")
            self._devices[device.device_id] = device
        self._stats = {d: DeviceStats() for d in self._devices}
        self._results: asyncio.Queue[_Result] = asyncio.Queue(max_pending)
        self._log = RateLimitedLog(clock=clock)

    # ---- to be supplied ------------------------------------------------------------

    def _scheduler(self, device_id: str) -> BusScheduler:
        raise NotImplementedError

    def _link(self, device_id: str) -> ModbusLink:
        raise NotImplementedError

    # ---- DeviceDriver --------------------------------------------------------------

    def knows(self, device_id: str) -> bool:
        return device_id in self._devices

    @property
    def devices(self) -> Mapping[str, ModbusDevice]:
        return self._devices

    def device_stats(self, device_id: str) -> DeviceStats:
        return self._stats[device_id]

    async def command(
        self,
        device_id: str,
        name: str,
        args: dict[str, Any],
        *,
        deadline: CommandDeadline | None = None,
    ) -> CommandOutcome:
        outcome = await self._command(device_id, name, args, deadline)
        stats = self._stats.get(device_id)
        if stats is not None:
            stats.commands[outcome[0]] += 1
        return outcome

    def stats(self) -> dict[str, Any]:
        devices: dict[str, Any] = {}
        for device_id, stats in sorted(self._stats.items()):
            health = self._scheduler(device_id).health.get(device_id)
            devices[device_id] = {
                "online": health.online if health is not None else None,
                "polls_ok": stats.polls_ok,
                "requests": stats.requests,
                "readings": stats.readings,
                "failures": dict(health.failures) if health is not None else {},
                "last_error": health.last_error if health is not None else "",
                "out_of_range": dict(stats.out_of_range),
                "record_failed": stats.record_failed,
                "dropped": stats.dropped,
                "commands": dict(stats.commands),
                "last_values": dict(stats.last_values),
                "last_read_at": format_time(stats.last_read_at) if stats.last_read_at else None,
            }
        return {"devices": devices, "pending_results": self._results.qsize()}

    # ---- polling -------------------------------------------------------------------

    def _add_polls(self, device: ModbusDevice, *, clock: Callable[[], float]) -> None:
        scheduler = self._scheduler(device.device_id)
        for poll in device.polls:
            plan = ReadPlan.of(device, poll)
            schedule = TriggerSchedule(poll.trigger, clock=clock)
            first = schedule.first_due()
            if first == float("inf"):
                continue
            if self._poll_at_start:
                first = clock()
            scheduler.add_poll(
                device.device_id,
                poll.interval_hint_s if poll.interval_hint_s > 0 else 60.0,
                self._poll_transaction(plan),
                self._on_result,
                first_due=first,
                next_due=schedule,
                timeout_s=plan.timeout_s,
            )

    def _poll_transaction(self, plan: ReadPlan) -> Callable[[], Any]:
        link = self._link(plan.device.device_id)
        device = plan.device
        stats = self._stats[device.device_id]

        async def read() -> _Result:
            values: dict[str, float | int] = {}
            for table, block in plan.blocks:
                stats.requests += 1
                registers = await link.read(
                    device.unit, table, block.start, block.count, device.timeout_s
                )
                values.update(slice_block(block, registers))
            return _Result(plan, values)

        return read

    def _on_result(self, result: Any) -> None:
        """Scheduler callback (synchronous): hand the result to the recorder."""
        assert isinstance(result, _Result)
        stats = self._stats[result.plan.device.device_id]
        stats.polls_ok += 1
        try:
            self._results.put_nowait(result)
        except asyncio.QueueFull:
            stats.dropped += 1
            self._log.warning(
                result.plan.device.device_id,
                "dropped",
                "reading dropped: the outbox is not keeping up",
            )

    async def _record_results(self) -> None:
        pipeline = RecordPipeline()  # readings are not awaited one by one (see there)
        while True:
            result = await self._results.get()
            await pipeline.start(self._record(result))

    async def _record(self, result: _Result) -> None:
        device = result.plan.device
        stats = self._stats[device.device_id]
        data: dict[str, float | int] = {}
        for name in result.plan.poll.points:
            value = result.values[name]
            spec = device.point(name)
            assert spec is not None
            if not math.isfinite(value) or not spec.in_limits(value):
                stats.out_of_range[name] += 1
                self._log.warning(
                    device.device_id,
                    f"range:{name}",
                    f"{name} = {value} is outside {spec.minimum}..{spec.maximum}; left out",
                )
                continue
            data[name] = value
        stats.last_read_at = utc_now()
        if not data:
            return
        stats.last_values.update(data)
        try:
            await self._sink.record(
                device.device_id, result.plan.poll.kind, result.plan.poll.lane, data
            )
        except OutboxError as err:
            stats.record_failed += 1
            self._log.warning(device.device_id, "record", f"reading not stored: {err}")
            return
        stats.readings += 1

    def _on_state(self, device_id: str, online: bool, reason: str) -> None:
        """Scheduler listener: online/offline transitions go to the supervisor."""
        if online:
            self._supervisor.online(device_id)
        else:
            self._supervisor.offline(device_id, reason)

    # ---- write_point ---------------------------------------------------------------

    async def _command(
        self, device_id: str, name: str, args: dict[str, Any], deadline: CommandDeadline | None
    ) -> CommandOutcome:
        device = self._devices.get(device_id)
        if device is None:
            return "rejected", f"{self.name}: no device {device_id!r}"
        if name != WRITE_POINT:
            return (
                "rejected",
                f"{device_id}: unknown command {name!r} (Modbus devices take {WRITE_POINT})",
            )
        if not device.writable:
            return "rejected", f"{device_id}: its profile has no {WRITE_POINT} command"
        checked = _check_write(device, args)
        if isinstance(checked, str):
            return "rejected", f"{device_id}: {checked}"
        spec, value, registers = checked
        link = self._link(device_id)

        async def write() -> list[int] | None:
            # Checked when the bus scheduler runs it: a command that waited its turn behind
            # a poll past its deadline never reaches the wire.
            if deadline is not None and deadline.expired():
                raise CommandExpired(deadline.detail("before the bus write"))
            await link.write(device.unit, spec.point.address, registers, device.timeout_s)
            if not device.verify_writes:
                return None
            return await link.read(
                device.unit, "holding", spec.point.address, spec.point.count, device.timeout_s
            )

        try:
            back = await self._scheduler(device_id).command(
                device_id, write, timeout_s=2 * device.timeout_s + TIMEOUT_SLACK_S
            )
        except CommandExpired as err:
            return "expired", f"{device_id}: {err}"
        except TimeoutError as err:
            return "timeout", f"{device_id}: {err or 'no reply'}"
        except LinkDown as err:
            return "timeout", f"{device_id}: not reachable ({err})"
        except (DeviceError, MappingError, TransportError) as err:
            return "device_error", f"{device_id}: {err}"
        if back is None:
            return "ok", f"{spec.name} = {value} written (not read back)"
        if back != registers:
            try:
                seen: float | int | str = decode(spec.point, back)
            except RegisterMapError:
                seen = str(back)
            return "device_error", (
                f"{device_id}: wrote {spec.name} = {value}, read back {seen} (registers "
                f"{back}, expected {registers})"
            )
        return "ok", f"{spec.name} = {value} (read back)"


def _check_write(
    device: ModbusDevice, args: Mapping[str, Any]
) -> tuple[PointSpec, float | int, list[int]] | str:
    """The point, value and registers of a ``write_point``, or why it is refused."""
    unknown = sorted(set(args) - {"point", "value"})
    if unknown:
        return f"write_point: unexpected arguments {unknown}"
    name, value = args.get("point"), args.get("value")
    spec = device.point(name) if isinstance(name, str) else None
    if spec is None:
        writable = [p.name for p in device.points if p.writable]
        return f"write_point: point must be one of {writable}, not {name!r}"
    if not spec.writable:
        return f"write_point: {spec.name!r} is read-only"
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return f"write_point: value must be a number, not {value!r}"
    if not spec.in_limits(value):
        return f"write_point: {spec.name} = {value} is outside {spec.minimum}..{spec.maximum}"
    try:
        return spec, value, encode(spec.point, value)
    except RegisterMapError as err:
        return f"write_point: {err}"


# ---- from the configured devices ------------------------------------------------------


def devices_from_entries(
    entries: Iterable[DeviceEntry], *, timezone: tzinfo | str | None = None
) -> list[ModbusDevice]:
    """The :class:`ModbusDevice` of each configured Modbus device, from its v2 profile.

    ``address`` is the unit id. Polls get their triggers from the profile's
    ``PollSpec.trigger(timezone)`` (the profile's default zone when None).
    """
    devices: list[ModbusDevice] = []
    for entry in entries:
        profile = entry.profile
        transport = profile.transport
        if profile.codec != "modbus":
            raise ValueError(f"{entry.device_id}: profile {profile.identity.name} is not Modbus")
        points = tuple(
            PointSpec(
                point=spec.to_point(),
                table=spec.table,
                minimum=spec.min,
                maximum=spec.max,
                writable=spec.writable,
            )
            for spec in profile.modbus_point_specs()
        )
        polls = tuple(
            PollPlan(
                points=tuple(poll.points),
                trigger=poll.trigger() if timezone is None else poll.trigger(timezone),
                kind=poll.kind,
                lane=poll.contract_lane,
                interval_hint_s=poll.interval_hint_s
                if math.isfinite(poll.interval_hint_s)
                else 3600.0,
            )
            for poll in profile.polls
        )
        command = profile.modbus_command()
        devices.append(
            ModbusDevice(
                device_id=entry.device_id,
                unit=int(entry.address),
                points=points,
                polls=polls,
                timeout_s=float(getattr(transport, "timeout_s", 0.5)),
                offline_after=profile.supervision.offline_after,
                writable=command is not None,
                verify_writes=command.verify if command is not None else True,
            )
        )
    return devices
