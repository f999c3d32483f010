"""One RS-485 bus of DL/T 645-2007 electricity meters: scheduled reads, one event per poll.

Why this shape: many meters share one half-duplex pair, so every poll is a transaction of
the :class:`~edge.transports.bus_scheduler.BusScheduler` — one meter on the wire at a
time, the inter-frame gap respected, and a meter that fails ``offline_after`` polls in a
row reported offline and retried with backoff while the others keep their schedule.
Polls run at an APScheduler trigger's fire times (hourly cron for real meters) through
:class:`~edge.transports.bus_scheduler.TriggerSchedule`.

A poll reads its data identifiers in turn, one read request each, with the inter-frame
gap between them, and waits for the reply *of that meter for that DI*; everything else
the decoder produces is counted and ignored: frames for other addresses (another master,
cross-talk), requests (an adapter echoing what we sent), stale replies to a read that
already timed out. Outcomes of one read:

* a reply → the BCD value as a float, checked against the point's min/max (out of range:
  dropped from the event and counted; the meter did answer);
* an abnormal reply (control code with the error bit) → :class:`MeterError` with the
  decoded error text: a device error, counted;
* damaged frames and no valid reply → :class:`BadReply`; nothing at all → ``TimeoutError``.
  The wait allows for the bytes' time on the wire (11 bits a character at 8E1, so a
  20-byte request takes 92 ms at 2400 baud) on top of the profile's ``timeout_ms``.

The values read are recorded as one event (``meter_reading``, telemetry lane) even when
another DI of the poll failed (a poll may carry only some values); the poll then still
counts as a failure of the meter for supervision. After a timeout the poll's other DIs are
not asked: nobody is answering. Results go from the scheduler to one recorder task through
a bounded queue, so the bus never waits for the disk; if the outbox stalls, readings are
dropped and counted (telemetry: the next poll brings fresh values).

The meters are given as plain dataclasses (:class:`Meter`, :class:`MeterPoint`,
:class:`MeterPoll`); :func:`meters_from_entries` builds them from configured devices and
their v2 profiles, :meth:`Dlt645MeterDriver.from_entries` the whole driver of one port.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any, Protocol

from contract import Lane
from contract.envelope import format_time
from edge.codecs import dlt645
from edge.command_deadline import CommandDeadline
from edge.drivers.base import CommandOutcome, DeviceEntry
from edge.errors import DeviceError, OutboxError
from edge.sink import EventSink, RecordPipeline
from edge.transports.bus_scheduler import (
    NEVER,
    BusScheduler,
    FireSchedule,
    ScheduledPoll,
    TriggerSchedule,
)
from edge.transports.serial_port import LineSettings, SerialLine, SerialLink
from profiles.errors import MappingError

log = logging.getLogger(__name__)

#: DL/T 645-2007 meters talk 2400 baud, 8 data bits, even parity, 1 stop bit by default.
DEFAULT_LINE = LineSettings(baudrate=2400, bytesize=8, parity="even", stopbits=1)
LOG_INTERVAL_S = 60.0  # at most one log line per meter and reason a minute
MAX_PENDING_READINGS = 1000  # readings waiting for the outbox before they are dropped
TIMEOUT_SLACK_S = 1.0  # on top of the reads' own deadlines, for the scheduler's limit
DEFAULT_GAP_S = 0.005
REPLY_OVERHEAD_BYTES = 4 + dlt645.HEAD_BYTES + 4 + 2  # wake-up, head, DI, CS and 16H


class MeterError(DeviceError):
    """The meter answered a read with an abnormal reply (its error byte decoded)."""

    reason = "device_error"


class BadReply(DeviceError):
    """The meter's answer was damaged (checksum, framing) or not a value of the point."""

    reason = "bad_reply"


class Liveness(Protocol):
    """Where transitions go: :class:`edge.supervision.Supervisor`."""

    def online(self, device_id: str) -> None: ...

    def offline(self, device_id: str, reason: str) -> None: ...


class ByteLink(Protocol):
    """What the driver needs from a transport (:class:`SerialLink`)."""

    @property
    def is_open(self) -> bool: ...

    @property
    def reopen_count(self) -> int: ...

    async def run(self, on_data: Callable[[bytes], None]) -> None: ...

    async def write(self, data: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class MeterPoint:
    """One data item: its identifier and BCD layout (``XXXXXX.XX`` kWh is 8 digits, 2)."""

    name: str
    di: int
    digits: int
    decimals: int = 0
    signed: bool = False
    unit: str = ""
    min: float | None = None
    max: float | None = None

    @property
    def byte_count(self) -> int:
        return (self.digits + 1) // 2

    def in_limits(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


@dataclass(frozen=True, slots=True)
class MeterPoll:
    """Read ``points`` whenever ``trigger`` fires; record them as one event ``kind``."""

    points: tuple[str, ...]
    trigger: FireSchedule
    kind: str = "meter_reading"
    lane: Lane = Lane.TELEMETRY
    interval_hint_s: float = 3600.0  # about how often it fires, for the scheduler's stats


@dataclass(frozen=True, slots=True)
class Meter:
    device_id: str
    address: str  # 12 BCD digits, as printed on the meter
    points: tuple[MeterPoint, ...]
    polls: tuple[MeterPoll, ...]
    offline_after: int | None = None  # failed polls in a row; None: the bus default

    def point(self, name: str) -> MeterPoint:
        for point in self.points:
            if point.name == name:
                return point
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class BusTiming:
    timeout_s: float = 0.5  # meter turnaround allowed after the request has left
    inter_frame_gap_s: float = DEFAULT_GAP_S
    offline_after: int = 3
    backoff_s: float = 2.0
    backoff_max_s: float = 60.0
    wake_up: int = 4  # FE bytes before each request

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.inter_frame_gap_s < 0 or self.offline_after < 1:
            raise ValueError("timeout_s > 0, inter_frame_gap_s ≥ 0 and offline_after ≥ 1")
        if not 0 <= self.wake_up <= 4:
            raise ValueError("wake_up: 0 to 4 FE bytes")


@dataclass
class MeterStats:
    readings: int = 0  # events recorded
    reads_ok: int = 0
    device_errors: int = 0
    bad_replies: int = 0
    timeouts: int = 0
    out_of_range: int = 0
    dropped: int = 0  # readings lost because the outbox could not take them
    last_error: str = ""
    last_reading: dict[str, float] = field(default_factory=dict)
    last_read_at: datetime | None = None


@dataclass
class _Pending:
    """The one read on the wire: whose reply we wait for, and what went wrong meanwhile."""

    address: str
    di: int
    reply: asyncio.Future[dlt645.Frame]
    rejected: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Reading:
    meter: Meter
    poll: MeterPoll
    values: dict[str, float]


def char_time_s(line: SerialLine) -> float:
    """Seconds one character takes on the wire: start, data, parity and stop bits."""
    bits = 1 + line.bytesize + (0 if line.parity == "none" else 1) + line.stopbits
    return bits / line.baudrate


class Dlt645MeterDriver:
    """Reads the meters of one bus on their schedules. Run it with :meth:`run`."""

    def __init__(
        self,
        link: ByteLink,
        meters: Iterable[Meter],
        sink: EventSink,
        supervisor: Liveness,
        *,
        name: str | None = None,
        line: SerialLine = DEFAULT_LINE,
        timing: BusTiming = BusTiming(),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name or f"dlt645 {getattr(link, 'port', 'bus')}"
        self._link = link
        self._sink = sink
        self._supervisor = supervisor
        self._timing = timing
        self._char_s = char_time_s(line)
        self._clock = clock
        self._now = wall_clock
        self._meters = _index(meters)
        self._stats = {device_id: MeterStats() for device_id in self._meters}
        self._decoder = dlt645.FrameDecoder(on_reject=self._on_reject)
        self._pending: _Pending | None = None
        self._readings: asyncio.Queue[_Reading] = asyncio.Queue(MAX_PENDING_READINGS)
        self._counts: Counter[str] = Counter()
        self._last_logged: dict[tuple[str, str], float] = {}
        self._request_bytes = timing.wake_up + dlt645.HEAD_BYTES + 4 + 2
        self._polls: dict[str, list[ScheduledPoll]] = {}
        self.bus = BusScheduler(
            self.name,
            inter_frame_gap_s=timing.inter_frame_gap_s,
            timeout_s=timing.timeout_s + TIMEOUT_SLACK_S,
            offline_after=timing.offline_after,
            backoff_s=timing.backoff_s,
            backoff_max_s=timing.backoff_max_s,
            on_state=self._state_changed,
            clock=clock,
        )
        for meter in self._meters.values():
            if meter.offline_after is not None:
                self.bus.set_offline_after(meter.device_id, meter.offline_after)
            self._polls[meter.device_id] = [
                scheduled
                for poll in meter.polls
                if (scheduled := self._add_poll(meter, poll, clock, wall_clock)) is not None
            ]

    @classmethod
    def on_serial_port(
        cls,
        port: str,
        meters: Iterable[Meter],
        sink: EventSink,
        supervisor: Liveness,
        *,
        line: SerialLine = DEFAULT_LINE,
        **kwargs: Any,
    ) -> Dlt645MeterDriver:
        """A driver for the meters on ``port`` (``/dev/ttyUSB2``) with these line settings."""
        link = SerialLink(port, line)
        return cls(link, meters, sink, supervisor, name=f"dlt645 {port}", line=line, **kwargs)

    @classmethod
    def from_entries(
        cls,
        entries: Sequence[DeviceEntry],
        sink: EventSink,
        supervisor: Liveness,
        *,
        timezone: tzinfo | str | None = None,
        **kwargs: Any,
    ) -> Dlt645MeterDriver:
        """The driver of one port's configured meters (one ``(dlt645, port)`` group of
        :class:`edge.device_plan.DevicePlan`). Line settings, ``timeout_ms`` and the gap come
        from the first entry's profile; all entries must share port and line settings."""
        if not entries:
            raise ValueError("no meters to drive")
        first = entries[0]
        line = first.profile.serial_line()
        for entry in entries:
            if entry.port != first.port or entry.profile.serial_line() != line:
                raise ValueError(
                    f"{entry.device_id}: every meter of one driver shares port {first.port} "
                    "and its line settings"
                )
        if first.port is None:
            raise ValueError(f"{first.device_id}: a DL/T 645 meter needs a serial port")
        gap = getattr(line, "frame_gap_s", None)
        timing = BusTiming(
            timeout_s=line.timeout_s,
            inter_frame_gap_s=DEFAULT_GAP_S if gap is None else float(gap),
            offline_after=first.profile.supervision.offline_after,
        )
        meters = meters_from_entries(entries, timezone=timezone)
        kwargs.setdefault("timing", timing)
        return cls.on_serial_port(first.port, meters, sink, supervisor, line=line, **kwargs)

    # ---- DeviceDriver --------------------------------------------------------------

    def knows(self, device_id: str) -> bool:
        return device_id in self._meters

    async def run(self) -> None:
        """Read the port, poll every meter and record readings until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._link.run(self._on_data), name=f"{self.name} link")
                group.create_task(self.bus.run(), name=f"{self.name} bus")
                group.create_task(self._record_readings(), name=f"{self.name} recorder")
        finally:
            self.bus.close()

    async def command(
        self,
        device_id: str,
        name: str,
        args: dict[str, Any],
        *,
        deadline: CommandDeadline | None = None,
    ) -> CommandOutcome:
        if device_id not in self._meters:
            return "rejected", f"{self.name}: no meter {device_id!r} on this bus"
        return "rejected", f"{device_id}: meters take no commands (unknown command {name!r})"

    def stats(self) -> dict[str, Any]:
        """Counters for edge status and metrics; plain JSON-able values."""
        devices: dict[str, Any] = {}
        for device_id, stats in sorted(self._stats.items()):
            health = self.bus.health.get(device_id)
            devices[device_id] = {
                "online": health.online if health is not None else None,
                "failures": dict(health.failures) if health is not None else {},
                "readings": stats.readings,
                "reads_ok": stats.reads_ok,
                "device_errors": stats.device_errors,
                "bad_replies": stats.bad_replies,
                "timeouts": stats.timeouts,
                "out_of_range": stats.out_of_range,
                "dropped": stats.dropped,
                "polls_skipped": sum(p.skipped for p in self._polls[device_id]),
                "last_error": stats.last_error,
                "last_reading": dict(stats.last_reading),
                "last_read_at": format_time(stats.last_read_at) if stats.last_read_at else None,
            }
        return {
            "link_open": self._link.is_open,
            "reopen_count": self._link.reopen_count,
            "transactions": self.bus.transactions,
            "busy_s": round(self.bus.busy_s, 3),
            "frames_decoded": self._decoder.frames_decoded,
            "garbage_bytes": self._decoder.garbage_bytes,
            "bad_frames": dict(self._decoder.bad_frames),
            "ignored_frames": dict(self._counts),
            "devices": devices,
        }

    def meter_stats(self, device_id: str) -> MeterStats:
        return self._stats[device_id]

    # ---- polls ---------------------------------------------------------------------

    def _add_poll(
        self,
        meter: Meter,
        poll: MeterPoll,
        clock: Callable[[], float],
        wall_clock: Callable[[], datetime],
    ) -> ScheduledPoll | None:
        schedule = TriggerSchedule(poll.trigger, clock=clock, wall_clock=wall_clock)
        first = schedule.first_due()
        if first == NEVER:
            return None
        points = [meter.point(name) for name in poll.points]
        limit = sum(self._reply_wait_s(p) + self._timing.inter_frame_gap_s for p in points)

        async def transaction() -> None:
            await self._read_poll(meter, poll, points)

        hint = poll.interval_hint_s if math.isfinite(poll.interval_hint_s) else 3600.0
        return self.bus.add_poll(
            meter.device_id,
            max(hint, 1e-3),
            transaction,
            first_due=first,
            next_due=schedule,
            timeout_s=limit + TIMEOUT_SLACK_S,
        )

    async def _read_poll(self, meter: Meter, poll: MeterPoll, points: list[MeterPoint]) -> None:
        """One scheduler transaction: every DI of ``poll`` in turn, one reading queued."""
        stats = self._stats[meter.device_id]
        values: dict[str, float] = {}
        failure: Exception | None = None
        try:
            for index, point in enumerate(points):
                if index:
                    await asyncio.sleep(self._timing.inter_frame_gap_s)
                try:
                    value = await self._read(meter, point)
                except TimeoutError as err:
                    stats.timeouts += 1
                    failure = failure or err
                    break  # nobody answers: do not ask for the poll's other values
                # The meter is there; its other values may be fine.
                except (DeviceError, MappingError) as err:
                    if isinstance(err, MeterError):
                        stats.device_errors += 1
                    else:
                        stats.bad_replies += 1
                    failure = failure or err
                    continue
                stats.reads_ok += 1
                if point.in_limits(value):
                    values[point.name] = value
                else:
                    stats.out_of_range += 1
                    self._log(meter, "range", f"{point.name} = {value} {point.unit} out of limits")
        finally:
            if values:
                self._queue_reading(_Reading(meter, poll, values))
        if failure is not None:
            stats.last_error = str(failure)
            self._log(meter, type(failure).__name__, stats.last_error)
            raise failure

    def _queue_reading(self, reading: _Reading) -> None:
        try:
            self._readings.put_nowait(reading)
        except asyncio.QueueFull:
            self._stats[reading.meter.device_id].dropped += 1
            self._log(reading.meter, "dropped", "outbox too slow: reading dropped")

    async def _record_readings(self) -> None:
        pipeline = RecordPipeline()  # readings are not awaited one by one (see there)
        while True:
            await pipeline.start(self._record(await self._readings.get()))

    async def _record(self, reading: _Reading) -> None:
        meter, poll = reading.meter, reading.poll
        stats = self._stats[meter.device_id]
        try:
            await self._sink.record(meter.device_id, poll.kind, poll.lane, reading.values)
        except OutboxError as err:
            stats.dropped += 1
            self._log(meter, "record", f"reading not stored: {err}")
            return
        stats.readings += 1
        stats.last_reading = reading.values
        stats.last_read_at = self._now()

    # ---- one read ------------------------------------------------------------------

    def _reply_wait_s(self, point: MeterPoint) -> float:
        wire_bytes = self._request_bytes + REPLY_OVERHEAD_BYTES + point.byte_count
        return self._timing.timeout_s + wire_bytes * self._char_s

    async def _read(self, meter: Meter, point: MeterPoint) -> float:
        """Ask ``meter`` for ``point`` and wait for its answer."""
        request = dlt645.encode(
            dlt645.read_request(meter.address, point.di), wake_up=self._timing.wake_up
        )
        self._decoder.reset()  # a partial frame left by an earlier, failed read
        pending = _Pending(meter.address, point.di, asyncio.get_running_loop().create_future())
        self._pending = pending
        try:
            await self._link.write(request)
            try:
                async with asyncio.timeout(self._reply_wait_s(point)):
                    frame = await pending.reply
            except TimeoutError:
                if pending.rejected:
                    raise BadReply(
                        f"meter {meter.address} DI {point.di:08X}: reply rejected "
                        f"({', '.join(pending.rejected)})"
                    ) from None
                raise TimeoutError(
                    f"meter {meter.address} DI {point.di:08X}: no reply within "
                    f"{self._timing.timeout_s * 1000:.0f} ms"
                ) from None
        finally:
            self._pending = None
        return float(_value(meter, point, frame))

    def _on_data(self, data: bytes) -> None:
        for frame in self._decoder.feed(data):
            self._on_frame(frame)

    def _on_frame(self, frame: dlt645.Frame) -> None:
        pending = self._pending
        if not frame.is_reply:
            self._counts["requests_seen"] += 1  # an echo of ours, or another master
            return
        if pending is None or pending.reply.done():
            self._counts["unsolicited"] += 1
            return
        if frame.address != pending.address or frame.function != dlt645.READ_DATA:
            self._counts["other_address"] += 1
            return
        if not frame.is_abnormal and (
            len(frame.data) < 4 or int.from_bytes(frame.data[:4], "little") != pending.di
        ):
            self._counts["stale_replies"] += 1  # the answer to a read that timed out
            return
        pending.reply.set_result(frame)

    def _on_reject(self, reason: str) -> None:
        if self._pending is not None and len(self._pending.rejected) < 8:
            self._pending.rejected.append(reason)

    # ---- supervision and logs ------------------------------------------------------

    def _state_changed(self, device_id: str, online: bool, reason: str) -> None:
        if online:
            self._supervisor.online(device_id)
        else:
            self._supervisor.offline(device_id, reason)

    def _log(self, meter: Meter, reason: str, text: str) -> None:
        now = self._clock()
        key = (meter.device_id, reason)
        last = self._last_logged.get(key)
        if last is not None and now - last < LOG_INTERVAL_S:
            log.debug("%s: %s: %s", self.name, meter.device_id, text)
            return
        self._last_logged[key] = now
        log.warning("%s: %s: %s", self.name, meter.device_id, text)


def _value(meter: Meter, point: MeterPoint, frame: dlt645.Frame) -> Decimal:
    try:
        result = dlt645.parse_read_reply(frame, expected_di=point.di)
    except dlt645.CodecError as err:
        raise BadReply(f"meter {meter.address} DI {point.di:08X}: {err}") from err
    if result.error is not None:
        raise MeterError(f"meter {meter.address} refused DI {point.di:08X}: {result.error}")
    if len(result.value_bytes) != point.byte_count:
        raise BadReply(
            f"meter {meter.address} DI {point.di:08X}: {len(result.value_bytes)} value bytes, "
            f"expected {point.byte_count}"
        )
    try:
        return dlt645.bcd_decode(result.value_bytes, decimals=point.decimals, signed=point.signed)
    except dlt645.CodecError as err:
        raise BadReply(f"meter {meter.address} DI {point.di:08X}: {err}") from err


def _index(meters: Iterable[Meter]) -> dict[str, Meter]:
    """Meters by device id; raises ValueError for duplicates or polls of unknown points."""
    index: dict[str, Meter] = {}
    addresses: set[str] = set()
    for meter in meters:
        dlt645.address_bytes(meter.address)  # CodecError (a ValueError) for a bad address
        if meter.device_id in index:
            raise ValueError(f"meter device id {meter.device_id!r} appears twice")
        if meter.address in addresses:
            raise ValueError(f"meter address {meter.address} appears twice on one bus")
        names = {p.name for p in meter.points}
        for poll in meter.polls:
            unknown = [name for name in poll.points if name not in names]
            if unknown:
                raise ValueError(f"{meter.device_id}: a poll reads unknown points {unknown}")
        index[meter.device_id] = meter
        addresses.add(meter.address)
    return index


def meters_from_entries(
    entries: Iterable[DeviceEntry], *, timezone: tzinfo | str | None = None
) -> list[Meter]:
    """The :class:`Meter` of each configured device of a ``dlt645`` profile (v2).

    ``address`` is the 12-digit meter address. Polls get their triggers from the profile's
    ``PollSpec.trigger(timezone)`` (the profile's default zone when None).
    """
    meters: list[Meter] = []
    for entry in entries:
        profile = entry.profile
        if profile.codec != "dlt645":
            raise ValueError(f"{entry.device_id}: profile {profile.identity.name} is not dlt645")
        points = tuple(
            MeterPoint(
                name=spec.name,
                di=spec.di,
                digits=spec.digits,
                decimals=spec.decimals,
                signed=spec.signed,
                unit=spec.unit,
                min=spec.min,
                max=spec.max,
            )
            for spec in profile.dlt_points()
        )
        polls = tuple(
            MeterPoll(
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
        meters.append(
            Meter(
                device_id=entry.device_id,
                address=entry.address,
                points=points,
                polls=polls,
                offline_after=profile.supervision.offline_after,
            )
        )
    return meters
