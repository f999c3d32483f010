"""DL/T 645-2007 (多功能电能表通信协议): electricity meters on RS-485, pure and without I/O.

Why hand-written: the protocol is small, the frames are a few dozen bytes, and no
maintained Python library implements the 2007 edition's framing with the resynchronising,
counting decoder a shared, noisy bus needs (the same reasons as :mod:`edge.codecs.cb100`).

Frame layout::

    [FE × 0..4] 68 | A0 … A5 | 68 | C | L | DATA (L bytes, each + 33H) | CS | 16

* ``FE`` wake-up bytes precede a frame; masters send up to four, meters may echo them.
* ``A0 … A5``: the 12-digit meter address in BCD, low byte first (``000012345678`` is
  ``78 56 34 12 00 00``); ``AA`` bytes are wildcards, ``99…99`` is broadcast.
* ``C``: bit 7 direction (1 = the meter answers), bit 6 abnormal reply, bit 5 a follow-up
  frame exists, bits 4-0 the function (``11H`` read data).
* ``DATA`` travels with 33H added to every byte; the data identifier (DI) comes first,
  low byte first, then the value in BCD, low byte first.
* ``CS``: the sum modulo 256 of every byte from the first ``68H`` to the end of DATA.

Every rejected candidate is counted by reason: ``header`` (no second 68H where it must
be), ``length`` (L beyond 200), ``checksum``, ``end`` (no 16H), ``truncated`` (a frame
cut short by a later complete one).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, NamedTuple

START = 0x68
END = 0x16
WAKE_UP = 0xFE
OFFSET = 0x33
MAX_DATA = 200  # the 2007 edition's limit on L
HEAD_BYTES = 10  # 68, six address bytes, 68, C, L
MAX_FRAME_BYTES = HEAD_BYTES + MAX_DATA + 2

READ_DATA = 0x11
REPLY = 0x80  # direction bit
ABNORMAL = 0x40
FOLLOW_UP = 0x20

# Data identifiers the shipped profile reads (DI3 DI2 DI1 DI0 as written in the standard).
DI_FORWARD_ACTIVE_ENERGY_TOTAL = 0x00010000  # 正向有功总电能, XXXXXX.XX kWh
DI_PHASE_A_VOLTAGE = 0x02010100  # A相电压, XXX.X V

# Bits of the error byte in an abnormal reply (DL/T 645-2007 table "错误信息字 ERR").
ERROR_BITS = {
    0: "other error / 其他错误",
    1: "no such data / 无请求数据",
    2: "password wrong or not authorised / 密码错或未授权",
    3: "baud rate cannot change / 通信速率不能更改",
    4: "too many yearly time zones / 年时区数超",
    5: "too many daily time slots / 日时段数超",
    6: "too many tariffs / 费率数超",
}


class CodecError(ValueError):
    """A value or address that cannot be put into, or read out of, a frame."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame; ``data`` is the real bytes, without the 33H offset."""

    address: str  # 12 characters: digits, or A for a wildcard nibble pair
    control: int
    data: bytes = b""

    @property
    def is_reply(self) -> bool:
        return bool(self.control & REPLY)

    @property
    def is_abnormal(self) -> bool:
        return bool(self.control & ABNORMAL)

    @property
    def function(self) -> int:
        return self.control & 0x1F


def address_bytes(address: str) -> bytes:
    """``"000012345678"`` → ``78 56 34 12 00 00``."""
    if len(address) != 12 or not all(c in "0123456789Aa" for c in address):
        raise CodecError(f"meter address {address!r}: expected 12 digits (A for wildcards)")
    pairs = [address[i : i + 2] for i in range(0, 12, 2)]
    return bytes(0xAA if p.upper() == "AA" else int(p, 16) for p in reversed(pairs))


def address_text(raw: bytes | bytearray | memoryview) -> str:
    text = "".join(f"{b:02X}" for b in reversed(bytes(raw)))
    return text


def checksum(data: bytes | bytearray | memoryview) -> int:
    return sum(data) & 0xFF


def encode(frame: Frame, *, wake_up: int = 4) -> bytes:
    if not 0 <= wake_up <= 4:
        raise CodecError("wake_up: 0 to 4 FE bytes")
    if len(frame.data) > MAX_DATA:
        raise CodecError(f"data of {len(frame.data)} bytes exceeds {MAX_DATA}")
    body = (
        bytes([START])
        + address_bytes(frame.address)
        + bytes([START, frame.control & 0xFF, len(frame.data)])
        + bytes((b + OFFSET) & 0xFF for b in frame.data)
    )
    return bytes([WAKE_UP]) * wake_up + body + bytes([checksum(body), END])


def di_bytes(di: int) -> bytes:
    if not 0 <= di <= 0xFFFFFFFF:
        raise CodecError(f"data identifier {di:#x} is not 4 bytes")
    return di.to_bytes(4, "little")


def read_request(address: str, di: int) -> Frame:
    """The master's "read data" request (C = 11H) for one data identifier."""
    return Frame(address, READ_DATA, di_bytes(di))


def read_reply(address: str, di: int, value: bytes) -> Frame:
    """A meter's normal answer (C = 91H); used by the simulator and the tests."""
    return Frame(address, REPLY | READ_DATA, di_bytes(di) + value)


def error_reply(address: str, error_bits: int) -> Frame:
    """A meter's abnormal answer (C = D1H) with its error byte."""
    return Frame(address, REPLY | ABNORMAL | READ_DATA, bytes([error_bits & 0xFF]))


def describe_error(error_byte: int) -> str:
    named = [text for bit, text in ERROR_BITS.items() if error_byte & (1 << bit)]
    return "; ".join(named) or f"error byte {error_byte:#04x}"


def bcd_encode(value: Decimal | int | str, *, digits: int, decimals: int) -> bytes:
    """A non-negative value as ``digits`` BCD digits (``digits`` even), low byte first."""
    scaled = Decimal(value).scaleb(decimals)
    if scaled != scaled.to_integral_value() or scaled < 0:
        raise CodecError(f"{value} does not fit {digits} digits with {decimals} decimals")
    text = f"{int(scaled):0{digits}d}"
    if len(text) > digits or digits % 2:
        raise CodecError(f"{value} does not fit {digits} BCD digits")
    return bytes(int(text[i : i + 2], 16) for i in range(digits - 2, -1, -2))


def bcd_decode(raw: bytes, *, decimals: int, signed: bool = False) -> Decimal:
    """BCD, low byte first; with ``signed`` the top bit of the last byte is the sign."""
    if not raw:
        raise CodecError("no value bytes")
    data = bytearray(raw)
    negative = False
    if signed:
        negative = bool(data[-1] & 0x80)
        data[-1] &= 0x7F
    digits = "".join(f"{b:02X}" for b in reversed(data))
    if not digits.isdigit():
        raise CodecError(f"value bytes {raw.hex(' ')} are not BCD")
    value = Decimal(int(digits)).scaleb(-decimals)
    return -value if negative else value


class ReadResult(NamedTuple):
    """What a read-data reply says: a value, or the meter's error."""

    di: int | None
    value_bytes: bytes
    error: str | None


def parse_read_reply(frame: Frame, *, expected_di: int) -> ReadResult:
    """Interpret a reply to :func:`read_request`; raises :class:`CodecError` if it is not one."""
    if not frame.is_reply or frame.function != READ_DATA:
        raise CodecError(f"control code {frame.control:#04x} is not a read-data reply")
    if frame.is_abnormal:
        error = frame.data[0] if frame.data else 0
        return ReadResult(None, b"", describe_error(error))
    if len(frame.data) < 4:
        raise CodecError(f"reply of {len(frame.data)} bytes has no data identifier")
    di = int.from_bytes(frame.data[:4], "little")
    if di != expected_di:
        raise CodecError(f"reply is for DI {di:08X}, not {expected_di:08X}")
    return ReadResult(di, frame.data[4:], None)


class _Verdict(NamedTuple):
    kind: Literal["frame", "reject", "incomplete"]
    reason: str = ""
    frame: Frame | None = None
    end: int = 0


_INCOMPLETE = _Verdict("incomplete")


def _inspect(buf: bytearray, start: int) -> _Verdict:
    """Judge the candidate frame whose first 68H is at ``start``."""
    available = len(buf) - start
    if available < 8:
        return _INCOMPLETE
    if buf[start + 7] != START:
        return _Verdict("reject", "header")
    if available < HEAD_BYTES:
        return _INCOMPLETE
    length = buf[start + 9]
    if length > MAX_DATA:
        return _Verdict("reject", "length")
    end = start + HEAD_BYTES + length + 2
    if len(buf) < end:
        return _INCOMPLETE
    if checksum(memoryview(buf)[start : end - 2]) != buf[end - 2]:
        return _Verdict("reject", "checksum")
    if buf[end - 1] != END:
        return _Verdict("reject", "end")
    data = bytes((b - OFFSET) & 0xFF for b in buf[start + HEAD_BYTES : end - 2])
    frame = Frame(address_text(buf[start + 1 : start + 7]), buf[start + 8], data)
    return _Verdict("frame", frame=frame, end=end)


class FrameDecoder:
    """Turns a byte stream into frames, skipping wake-up bytes and garbage.

    Keeps at most one partial frame between calls. ``on_reject(reason)`` is called for
    every rejected candidate.
    """

    def __init__(self, on_reject: Callable[[str], None] | None = None) -> None:
        self._buf = bytearray()
        self._on_reject = on_reject
        self.bad_frames: Counter[str] = Counter()
        self.garbage_bytes = 0
        self.frames_decoded = 0

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial frame, e.g. after a request timed out."""
        self.garbage_bytes += len(self._buf)
        self._buf.clear()

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        while True:
            start = buf.find(START, pos)
            if start < 0:
                self.garbage_bytes += sum(1 for b in buf[pos:] if b != WAKE_UP)
                pos = len(buf)
                break
            self.garbage_bytes += sum(1 for b in buf[pos:start] if b != WAKE_UP)
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
            self._reject(verdict.reason)
            self.garbage_bytes += 1
            pos = start + 1
        del buf[:pos]
        self.frames_decoded += len(frames)
        return frames

    @staticmethod
    def _complete_frame_after(buf: bytearray, pos: int) -> bool:
        start = buf.find(START, pos)
        while start >= 0:
            if _inspect(buf, start).kind == "frame":
                return True
            start = buf.find(START, start + 1)
        return False

    def _reject(self, reason: str) -> None:
        self.bad_frames[reason] += 1
        if self._on_reject is not None:
            self._on_reject(reason)
