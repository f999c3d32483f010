"""One serial bus of CB-100 call buttons: frames in, events to the outbox, link acks out.

Why the order matters: a button stops retransmitting once it has the 0x80 link ack, so the
ack is written only after :meth:`EventSink.record` has returned — by then the event is
durably in the outbox. If the outbox cannot store it, nothing is acked and the button's
retransmission (every 5 s) is the retry. A retransmission that *was* stored (the ack got
lost on the line) is recognised by its dedupe key ``<device_id>:<frame seq>`` and acked
again without a second event.

Frames are decoded (framing, CRC) in the serial reader thread, one hand-over to the event
loop per chunk (issue #13), so a flood of frames does not take the loop's turns from the
uplink and the alarm path. On the loop each chunk's frames are mapped at once; **alarms
are picked out there** and their records started straight away, ahead of every queued
frame and outside the in-flight bound (they are few, and nothing telemetry fills can hold
them). The other frames are handled in order by one consumer task, which *starts* each
``record`` in frame order but does not wait for it before taking the next frame: the
outbox commits non-alarm events in groups, so awaiting each one in turn would cap a bus
at one frame per group-commit interval. Each frame is acked when its own
``record`` returns. A copy of a frame whose ``record`` is still in flight is dropped (the
first copy's ack answers it). Backpressure: at most ``max_in_flight`` records at once, and a
bounded frame queue; when that is full (the outbox is stalled) new frames are dropped and
counted, and the buttons retransmit them.

Replayed frames (issue #11): the bus has only a CRC, so a frame recorded off the wire and
played back after the dedupe window would be taken as new. With a ``windows`` view (the
outbox's per-device record of frame seqs, :mod:`edge.frame_window`) a frame whose seq was
already recorded is link-acked, so the line goes quiet, but not recorded again; it is
counted as ``replays`` (and under ``errors["replay"]``). A frame taken as a device restart
(its counter went back) is recorded, flagged ``seq_restart: true`` in its data and counted
as ``seq_restarts``: an SOS is never refused because a button lost power.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from contract import Lane
from contract.envelope import format_time, utc_now
from edge.codecs import cb100
from edge.command_deadline import CommandDeadline
from edge.errors import CommandExpired, DeviceError, OutboxError, TransportError
from edge.frame_mapping import MappedEvent, MappingError, build_command_frame, map_frame
from edge.frame_window import Verdict
from edge.sink import EventSink
from edge.transports.serial_port import SerialLink
from profiles.model import DeviceProfile

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 60.0  # at most one log line per device and minute for bad input
UNKNOWN_DEVICE = "unknown"


class ByteLink(Protocol):
    """What the bus needs from a transport (:class:`SerialLink`, or a fake in tests)."""

    @property
    def is_open(self) -> bool: ...

    @property
    def reopen_count(self) -> int: ...

    async def run(
        self, on_data: Callable[[Any], None], decode: Callable[[bytes], Any] | None = None
    ) -> None: ...

    async def write(self, data: bytes) -> None: ...


#: What the reader thread hands over per chunk: the frames and the rejected candidates.
Decoded = tuple[list[cb100.Frame], list[tuple[str, int | None]]]


class FrameWindows(Protocol):
    """Which frame seqs each device has had recorded (the outbox keeps them durably)."""

    def frame_verdict(self, device_id: str, seq: int, dedupe_key: str) -> Verdict:
        """``REPLAY`` only for a seq recorded before whose ``dedupe_key`` is no longer in
        the dedupe window (inside it, ``record`` answers the retransmission)."""
        ...


@dataclass
class DeviceStats:
    frames_ok: int = 0
    duplicates: int = 0
    replays: int = 0
    seq_restarts: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    last_seen: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_ok": self.frames_ok,
            "duplicates": self.duplicates,
            "replays": self.replays,
            "seq_restarts": self.seq_restarts,
            "errors": dict(self.errors),
            "last_seen": format_time(self.last_seen) if self.last_seen else None,
        }


class CallButtonBus:
    """Drives one serial bus with any number of CB-100 buttons. Run it with :meth:`run`."""

    def __init__(
        self,
        link: ByteLink,
        profile: DeviceProfile,
        sink: EventSink,
        *,
        name: str | None = None,
        queue_size: int = 4096,
        max_in_flight: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        windows: FrameWindows | None = None,
    ) -> None:
        self.name = name or str(getattr(link, "port", "bus"))  # for log lines
        self._windows = windows
        self._link = link
        self._profile = profile
        self._sink = sink
        self._clock = clock
        # Fed in the reader thread (one at a time); rejects are collected there and
        # counted on the loop with the chunk's frames.
        self._rejected: list[tuple[str, int | None]] = []
        self._decoder = cb100.FrameDecoder(
            on_reject=lambda reason, serial: self._rejected.append((reason, serial))
        )
        self._frames: asyncio.Queue[tuple[cb100.Frame, MappedEvent, DeviceStats]] = asyncio.Queue(
            queue_size
        )
        self._alarm_tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._in_flight: set[str] = set()  # dedupe keys whose record has not returned
        self._serials: dict[str, int] = {}  # device_id → serial, for commands
        self._devices: dict[str, DeviceStats] = {}
        self._errors: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._last_logged: dict[tuple[str, str], float] = {}
        self._acks: list[tuple[bytes, str, DeviceStats]] = []
        self._ack_writer: asyncio.Task[None] | None = None

    @classmethod
    def on_serial_port(
        cls, port: str, profile: DeviceProfile, sink: EventSink, **kwargs: Any
    ) -> CallButtonBus:
        """A bus on ``port`` with the line settings of ``profile.transport``."""
        return cls(SerialLink(port, profile.serial_line()), profile, sink, name=port, **kwargs)

    async def run(self) -> None:
        """Read, decode, record and ack until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(
                self._link.run(self._on_decoded, decode=self._decode), name=f"{self.name} link"
            )
            group.create_task(self._consume(), name=f"{self.name} frames")

    async def send_feedback(
        self, device_id: str, code: str, ref_seq: int, deadline: CommandDeadline | None = None
    ) -> None:
        """Show the resident what became of a call (``received``, ``help_coming``,
        ``case_closed``); ``ref_seq`` is the seq of the frame answered, e.g. the SOS.

        Raises DeviceError for a device this bus has not heard from or bad arguments,
        TransportError when the port is down, CommandExpired (nothing written) past
        ``deadline``.
        """
        serial = self._serials.get(device_id)
        if serial is None:
            raise DeviceError(f"{self.name}: no device {device_id!r} has been seen on this bus")
        try:
            data = build_command_frame(
                self._profile, serial, "button_feedback", {"code": code, "ref_seq": ref_seq}
            )
        except MappingError as err:  # the profile's error, translated at the driver
            raise DeviceError(str(err)) from err
        if deadline is not None and deadline.expired():
            self._counts["feedback_expired"] += 1
            raise CommandExpired(deadline.detail("before the serial write"))
        await self._link.write(data)
        self._counts["feedback_sent"] += 1

    def stats(self) -> dict[str, Any]:
        """Counters for edge status and metrics; plain JSON-able values."""
        return {
            "link_open": self._link.is_open,
            "reopen_count": self._link.reopen_count,
            "frames_ok": self._counts["frames_ok"],
            "duplicates": self._counts["duplicates"],
            "replays": self._counts["replays"],
            "seq_restarts": self._counts["seq_restarts"],
            "downlink_ignored": self._counts["downlink_ignored"],
            "feedback_sent": self._counts["feedback_sent"],
            "feedback_expired": self._counts["feedback_expired"],
            "queue_dropped": self._counts["queue_dropped"],
            "garbage_bytes": self._decoder.garbage_bytes,
            "bad_frames": self._decoder.bad_frame_counts(),
            "errors": dict(self._errors),
            "devices": {d: s.as_dict() for d, s in sorted(self._devices.items())},
        }

    def knows(self, device_id: str) -> bool:
        """Whether ``device_id`` has been heard on this bus (so commands can reach it)."""
        return device_id in self._serials

    @property
    def known_devices(self) -> dict[str, int]:
        """device_id → serial of every device heard on this bus."""
        return dict(self._serials)

    def _decode(self, data: bytes) -> Decoded:
        """In the reader thread: framing and CRC of one chunk."""
        self._rejected = []
        frames = self._decoder.feed(data)
        return frames, self._rejected

    def _on_data(self, data: bytes) -> None:
        """Decode on the loop (tests feed bytes straight in); never raises."""
        self._on_decoded(self._decode(data))

    def _on_decoded(self, decoded: Decoded) -> None:
        """Called on the loop by the link for every chunk; never raises."""
        frames, rejected = decoded
        for reason, serial in rejected:
            self._on_reject(reason, serial)
        for frame in frames:
            try:
                accepted = self._accept(frame)
                if accepted is None:
                    continue
                event, stats = accepted
                if event.lane == Lane.ALARM:
                    self._start_alarm(frame, event, stats)
                    continue
                self._frames.put_nowait((frame, event, stats))
            except asyncio.QueueFull:
                self._counts["queue_dropped"] += 1
                self._log_throttled(
                    "*", "queue", "frame queue full: dropped (the button resends it)"
                )
            except Exception:
                self._counts["internal_errors"] += 1
                log.exception("%s: frame %s not handled", self.name, frame.seq)

    def _start_alarm(self, frame: cb100.Frame, event: MappedEvent, stats: DeviceStats) -> None:
        """An alarm's record starts now: no queue, no in-flight bound ahead of it."""
        key = self._admit(frame, event, stats)
        if key is None:
            return
        task = asyncio.create_task(self._record_then_ack(frame, event, key, stats, slot=False))
        self._alarm_tasks.add(task)
        task.add_done_callback(self._alarm_tasks.discard)

    def _admit(self, frame: cb100.Frame, event: MappedEvent, stats: DeviceStats) -> str | None:
        """The frame's dedupe key if it is to be recorded; None for a copy of one in
        flight or a replay (counted)."""
        key = f"{event.device_id}:{frame.seq}"
        if key in self._in_flight:
            self._counts["duplicates"] += 1
            stats.duplicates += 1
            return None
        if self._windows is not None and not self._check_window(frame, event, stats):
            return None
        self._in_flight.add(key)
        return key

    def _on_reject(self, reason: str, serial: int | None) -> None:
        device_id = self._profile.device_id_for(serial) if serial is not None else None
        if device_id is not None and device_id in self._devices:
            self._devices[device_id].errors[reason] += 1
        else:
            device_id = UNKNOWN_DEVICE  # noise must not create per-device entries
        self._log_throttled(device_id, "bad_input", f"bad frame ({reason})")

    async def _consume(self) -> None:
        async with asyncio.TaskGroup() as group:
            while True:
                frame, event, stats = await self._frames.get()
                await self._slots.acquire()
                key = self._admit(frame, event, stats)
                if key is None:
                    self._slots.release()
                    continue
                # Tasks start in creation order, so records begin in frame order.
                group.create_task(self._record_then_ack(frame, event, key, stats))

    def _accept(self, frame: cb100.Frame) -> tuple[MappedEvent, DeviceStats] | None:
        """Map one frame, or count why not. Runs in frame order, on the loop, per chunk."""
        if cb100.is_downlink_type(frame.type):
            self._counts["downlink_ignored"] += 1  # our own acks echoed, or another master
            return None
        device_id = self._profile.device_id_for(frame.device_serial)
        stats = self._devices.setdefault(device_id, DeviceStats())
        stats.last_seen = utc_now()
        self._serials[device_id] = frame.device_serial
        try:
            return map_frame(self._profile, frame), stats
        except MappingError as err:
            # Not acked: the button keeps its LED at "calling", which is the honest state.
            self._count_error(stats, err.reason, device_id, str(err))
            return None

    def _check_window(self, frame: cb100.Frame, event: MappedEvent, stats: DeviceStats) -> bool:
        """False for a replay (acked, not recorded); flags a frame taken as a restart."""
        assert self._windows is not None
        key = f"{event.device_id}:{frame.seq}"
        verdict = self._windows.frame_verdict(event.device_id, frame.seq, key)
        if verdict is Verdict.RESTART:
            self._counts["seq_restarts"] += 1
            stats.seq_restarts += 1
            event.data["seq_restart"] = True
            self._log_throttled(
                event.device_id,
                "seq_restart",
                f"frame seq {frame.seq} went back: taken as a button restart (or a replay "
                "of an old frame) · 序号回退，按设备重启处理",
            )
            return True
        if verdict is not Verdict.REPLAY:
            return True
        self._counts["replays"] += 1
        stats.replays += 1
        self._count_error(
            stats,
            "replay",
            event.device_id,
            f"frame seq {frame.seq} ({event.kind}) was recorded before: a replay, acked "
            "but not recorded · 重放的旧帧，已应答但不记录",
        )
        ack = cb100.Frame(frame.device_serial, frame.seq, cb100.FrameType.LINK_ACK)
        self._queue_ack(cb100.encode(ack), event.device_id, stats)
        return False

    async def _record_then_ack(
        self,
        frame: cb100.Frame,
        event: MappedEvent,
        key: str,
        stats: DeviceStats,
        *,
        slot: bool = True,
    ) -> None:
        try:
            try:
                if self._windows is None:
                    stored = await self._sink.record(
                        event.device_id, event.kind, event.lane, event.data, dedupe_key=key
                    )
                else:
                    stored = await self._sink.record(
                        event.device_id,
                        event.kind,
                        event.lane,
                        event.data,
                        dedupe_key=key,
                        frame_seq=frame.seq,
                    )
            except OutboxError as err:
                msg = f"not stored, so not acked: {err}"
                self._count_error(stats, "outbox", event.device_id, msg)
                return
            finally:
                self._in_flight.discard(key)
            if stored:
                self._counts["frames_ok"] += 1
                stats.frames_ok += 1
            else:  # a retransmission whose first copy was stored: ack it again
                self._counts["duplicates"] += 1
                stats.duplicates += 1
            ack = cb100.Frame(frame.device_serial, frame.seq, cb100.FrameType.LINK_ACK)
            self._queue_ack(cb100.encode(ack), event.device_id, stats)
        except Exception:
            self._counts["internal_errors"] += 1
            log.exception("%s: frame %s of %s not handled", self.name, frame.seq, event.device_id)
        finally:
            if slot:
                self._slots.release()

    def _queue_ack(self, data: bytes, device_id: str, stats: DeviceStats) -> None:
        """Acks that become due in the same loop iteration (a group commit settles hundreds
        of records at once) go out in one write instead of one thread hop each."""
        self._acks.append((data, device_id, stats))
        if self._ack_writer is None or self._ack_writer.done():
            self._ack_writer = asyncio.create_task(self._write_acks(), name=f"{self.name} acks")

    async def _write_acks(self) -> None:
        while self._acks:
            await asyncio.sleep(0)  # let the other records settled by this commit join in
            batch, self._acks = self._acks, []
            try:
                await self._link.write(b"".join(data for data, _, _ in batch))
            except TransportError as err:
                for _, device_id, stats in batch:
                    self._count_error(stats, "ack_write", device_id, f"link ack not sent: {err}")

    def _count_error(self, stats: DeviceStats, reason: str, device_id: str, text: str) -> None:
        self._errors[reason] += 1
        stats.errors[reason] += 1
        category = "bad_input" if reason not in ("outbox", "ack_write") else reason
        self._log_throttled(device_id, category, text)

    def _log_throttled(self, device_id: str, category: str, text: str) -> None:
        """Log at most once per device, category and LOG_INTERVAL_S; the counters see all."""
        now = self._clock()
        key = (device_id, category)
        last = self._last_logged.get(key)
        if last is None or now - last >= LOG_INTERVAL_S:
            self._last_logged[key] = now
            where = self.name if device_id == "*" else f"{self.name}: {device_id}"
            log.warning("%s: %s", where, text)
