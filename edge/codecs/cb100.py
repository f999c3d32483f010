"""CB-100 one-key call button: the serial frame format, pure and without I/O.

Why a hand-written incremental decoder: the bus is a noisy RS-485/serial line shared by
many buttons, bytes arrive in arbitrary chunks, and an SOS must come out of the decoder
the moment its last byte arrives. The decoder therefore keeps a small buffer across
``feed`` calls, resynchronises on the next ``AA 55`` after garbage and never waits for
more than one maximal frame (45 bytes) behind a header that might be false.

Frame layout (all multi-byte fields big-endian except the CRC)::

    AA 55 | L | ver=01 | serial u32 | seq u16 | type u8 | payload (L-8) | CRC-16/MODBUS LE

``L`` counts the bytes from ``ver`` to the end of the payload; the CRC covers ``L`` to the
end of the payload. Every rejected candidate frame is counted by reason:

* ``length``    L outside 8..40 (payloads are at most 32 bytes)
* ``version``   version byte is not 01
* ``crc``       checksum mismatch
* ``truncated`` a header whose claimed frame is cut short by a later, complete valid frame
  (e.g. a button reset mid-frame); rejecting it at once keeps a following SOS from
  waiting for bytes that will never come.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, NamedTuple

HEADER = b"\xaa\x55"
VERSION = 0x01
MIN_LENGTH = 8  # version + serial + seq + type
MAX_PAYLOAD = 32
MAX_LENGTH = MIN_LENGTH + MAX_PAYLOAD
MAX_FRAME_BYTES = MAX_LENGTH + 5  # header, L byte, CRC
MAX_TRACKED_DEVICES = 1024  # cap on bad_frames_by_device keys: noise must not grow memory


class FrameType(IntEnum):
    """Known frame types. Button → edge below 0x80, edge → button from 0x80."""

    SOS = 0x01
    SERVICE_REQUEST = 0x02
    CANCEL = 0x03
    HEARTBEAT = 0x04
    LOW_BATTERY = 0x05
    FALL = 0x06
    PRESENCE = 0x07
    CHECK_IN = 0x08  # daily "I'm OK" (报平安, issue #15): the green key, once a day
    LINK_ACK = 0x80
    RECEIVED = 0x81
    HELP_COMING = 0x82
    CASE_CLOSED = 0x83
    ARE_YOU_OK = 0x84  # "are you OK? press the green key" (关爱询问, issue #15)


def is_downlink_type(frame_type: int) -> bool:
    """True for edge → button types (0x80 and above)."""
    return frame_type >= FrameType.LINK_ACK


@dataclass(frozen=True, slots=True)
class Frame:
    device_serial: int
    seq: int
    type: int
    payload: bytes = b""


def crc16_modbus(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS: init 0xFFFF, reflected polynomial 0xA001, no final xor."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def encode(frame: Frame) -> bytes:
    """The wire bytes of ``frame``. Raises ValueError for a field out of range."""
    if not 0 <= frame.device_serial <= 0xFFFFFFFF:
        raise ValueError(f"device serial {frame.device_serial} is not a uint32")
    if not 0 <= frame.seq <= 0xFFFF:
        raise ValueError(f"sequence {frame.seq} is not a uint16")
    if not 0 <= frame.type <= 0xFF:
        raise ValueError(f"frame type {frame.type} is not a uint8")
    if len(frame.payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(frame.payload)} bytes exceeds {MAX_PAYLOAD}")
    body = (
        bytes([MIN_LENGTH + len(frame.payload), VERSION])
        + frame.device_serial.to_bytes(4, "big")
        + frame.seq.to_bytes(2, "big")
        + bytes([frame.type])
        + bytes(frame.payload)
    )
    return HEADER + body + crc16_modbus(body).to_bytes(2, "little")


class _Verdict(NamedTuple):
    kind: Literal["frame", "reject", "incomplete"]
    reason: str = ""
    serial: int | None = None
    frame: Frame | None = None
    end: int = 0


_INCOMPLETE = _Verdict("incomplete")


def _inspect(buf: bytearray, start: int) -> _Verdict:
    """Judge the candidate frame whose ``AA 55`` header is at ``start``."""
    available = len(buf) - start
    if available < 3:
        return _INCOMPLETE
    length = buf[start + 2]
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        return _Verdict("reject", "length")
    if available < 8:
        return _INCOMPLETE
    serial = int.from_bytes(buf[start + 4 : start + 8], "big")
    if buf[start + 3] != VERSION:
        return _Verdict("reject", "version", serial)
    end = start + length + 5
    if len(buf) < end:
        return _INCOMPLETE
    crc = int.from_bytes(buf[end - 2 : end], "little")
    if crc16_modbus(memoryview(buf)[start + 2 : end - 2]) != crc:
        return _Verdict("reject", "crc", serial)
    frame = Frame(
        device_serial=serial,
        seq=int.from_bytes(buf[start + 8 : start + 10], "big"),
        type=buf[start + 10],
        payload=bytes(buf[start + 11 : end - 2]),
    )
    return _Verdict("frame", frame=frame, end=end)


class FrameDecoder:
    """Turns a byte stream into frames; keeps at most one partial frame between calls.

    ``on_reject(reason, serial_or_None)`` is called for every rejected candidate, so a
    driver can log without diffing counters.

    The call-button driver feeds it in the serial reader thread and reads the counters on
    the event loop: :meth:`bad_frame_counts` copies them under the same lock the reader
    takes to count a rejection (a plain ``dict(counter)`` can meet a reason counted for
    the first time mid-copy and fail with "dictionary changed size during iteration").
    """

    def __init__(self, on_reject: Callable[[str, int | None], None] | None = None) -> None:
        self._buf = bytearray()
        self._on_reject = on_reject
        self.bad_frames: Counter[str] = Counter()
        self.bad_frames_by_device: Counter[int] = Counter()
        self._counting = threading.Lock()  # rejections are rare: no cost on good frames
        self.garbage_bytes = 0
        self.frames_decoded = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes held back as a possible partial frame (always < MAX_FRAME_BYTES)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        while True:
            start = buf.find(HEADER, pos)
            if start < 0:
                # Keep a trailing AA: it may be the first half of the next header.
                keep_from = len(buf) - 1 if len(buf) > pos and buf[-1] == HEADER[0] else len(buf)
                self.garbage_bytes += keep_from - pos
                pos = keep_from
                break
            self.garbage_bytes += start - pos
            pos = start
            verdict = _inspect(buf, start)
            if verdict.frame is not None:
                frames.append(verdict.frame)
                pos = verdict.end
                continue
            if verdict.kind == "incomplete":
                if not self._complete_frame_after(buf, start + 1):
                    break
                verdict = _Verdict("reject", "truncated")
            self._reject(verdict.reason, verdict.serial)
            self.garbage_bytes += 1  # skip one byte past the false header and rescan
            pos = start + 1
        del buf[:pos]
        self.frames_decoded += len(frames)
        return frames

    @staticmethod
    def _complete_frame_after(buf: bytearray, pos: int) -> bool:
        start = buf.find(HEADER, pos)
        while start >= 0:
            if _inspect(buf, start).kind == "frame":
                return True
            start = buf.find(HEADER, start + 1)
        return False

    def bad_frame_counts(self) -> dict[str, int]:
        """A copy of the rejections by reason, safe to take from another thread."""
        with self._counting:
            return dict(self.bad_frames)

    def _reject(self, reason: str, serial: int | None) -> None:
        with self._counting:
            self.bad_frames[reason] += 1
            if serial is not None and (
                serial in self.bad_frames_by_device
                or len(self.bad_frames_by_device) < MAX_TRACKED_DEVICES
            ):
                self.bad_frames_by_device[serial] += 1
        if self._on_reject is not None:
            self._on_reject(reason, serial)
