"""Modbus register maps: coalescing reads, decoding values, finding overlaps. Pure, no I/O.

Why here and not in pymodbus: pymodbus moves bytes; what a profile *means* by "a 32-bit
float at 40003, word-swapped, × 0.1" is ours. Keeping it pure lets the profile loader
reject a bad map at load time (overlapping points, a type that does not fit its count)
and lets the poller ask for the fewest requests.

Coalescing: points of one device and one register table are sorted by address and merged
into a block while the block stays within ``max_count`` registers (125 is the protocol's
limit for reading holding/input registers) and the hole between two points is at most
``max_gap`` registers: reading a few unused registers is far cheaper on a 9600-baud bus
than a second request (each costs a turnaround and the 3.5-character gaps).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

RegisterType = Literal["u16", "i16", "u32", "i32", "f32", "u64", "i64", "f64"]
Order = Literal["big", "little"]

MAX_READ_REGISTERS = 125  # function codes 3 and 4

_WIDTH: dict[str, int] = {
    "u16": 1,
    "i16": 1,
    "u32": 2,
    "i32": 2,
    "f32": 2,
    "u64": 4,
    "i64": 4,
    "f64": 4,
}
_STRUCT: dict[str, str] = {
    "u16": "H",
    "i16": "h",
    "u32": "I",
    "i32": "i",
    "f32": "f",
    "u64": "Q",
    "i64": "q",
    "f64": "d",
}


class RegisterMapError(ValueError):
    """A register map that cannot work: overlaps, or a point that does not fit."""


def width(kind: RegisterType) -> int:
    """Registers a value of ``kind`` occupies."""
    return _WIDTH[kind]


@dataclass(frozen=True, slots=True)
class Point:
    """One value in a device's registers."""

    name: str
    address: int  # 0-based register address in its table
    kind: RegisterType = "u16"
    byte_order: Order = "big"  # within each register
    word_order: Order = "big"  # between registers of a multi-register value
    scale: float = 1.0
    offset: float = 0.0

    @property
    def count(self) -> int:
        return width(self.kind)

    @property
    def end(self) -> int:
        """One past the last register."""
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` registers from ``start``, serving ``points``."""

    start: int
    count: int
    points: tuple[Point, ...] = field(default_factory=tuple)


def find_overlaps(points: Iterable[Point]) -> list[tuple[Point, Point]]:
    """Pairs of points that share a register (a profile with any is refused)."""
    ordered = sorted(points, key=lambda p: p.address)
    overlaps: list[tuple[Point, Point]] = []
    furthest: Point | None = None
    for point in ordered:
        if furthest is not None and point.address < furthest.end:
            overlaps.append((furthest, point))
        if furthest is None or point.end > furthest.end:
            furthest = point
    return overlaps


def plan_reads(
    points: Sequence[Point], *, max_count: int = MAX_READ_REGISTERS, max_gap: int = 8
) -> list[Block]:
    """The fewest read requests covering ``points`` (of one device and one table)."""
    if not 1 <= max_count <= MAX_READ_REGISTERS:
        raise RegisterMapError(f"max_count must be 1..{MAX_READ_REGISTERS}")
    blocks: list[Block] = []
    start = end = 0
    members: list[Point] = []
    for point in sorted(points, key=lambda p: p.address):
        if point.address < 0 or point.end > 0x10000:
            raise RegisterMapError(f"{point.name}: address {point.address} outside 0..65535")
        if members and point.address - end <= max_gap and max(end, point.end) - start <= max_count:
            members.append(point)
            end = max(end, point.end)
            continue
        if members:
            blocks.append(Block(start, end - start, tuple(members)))
        start, end, members = point.address, point.end, [point]
    if members:
        blocks.append(Block(start, end - start, tuple(members)))
    return blocks


def decode(point: Point, registers: Sequence[int]) -> float | int:
    """The engineering value of ``point`` from its registers (``scale`` then ``offset``)."""
    if len(registers) != point.count:
        raise RegisterMapError(f"{point.name}: {len(registers)} registers, needs {point.count}")
    words = list(registers) if point.word_order == "big" else list(reversed(registers))
    raw = b"".join(
        w.to_bytes(2, "big") if point.byte_order == "big" else w.to_bytes(2, "little")
        for w in words
    )
    (value,) = struct.unpack(">" + _STRUCT[point.kind], raw)
    if point.scale == 1.0 and point.offset == 0.0:
        return value  # type: ignore[no-any-return]
    return float(value) * point.scale + point.offset


def encode(point: Point, value: float | int) -> list[int]:
    """Registers that make the device hold ``value`` (the inverse of :func:`decode`)."""
    raw_value: float | int
    if isinstance(value, int) and point.scale == 1.0 and point.offset == 0.0:
        raw_value = value  # no float on the way: 64-bit integers keep every digit
    else:
        raw_value = (value - point.offset) / point.scale
    if point.kind[0] in "ui" and isinstance(raw_value, float):
        if abs(raw_value - round(raw_value)) > 1e-9:
            raise RegisterMapError(f"{point.name}: {value} is not a multiple of {point.scale}")
        raw_value = round(raw_value)
    try:
        raw = struct.pack(">" + _STRUCT[point.kind], raw_value)
    except struct.error as err:
        raise RegisterMapError(f"{point.name}: {value} does not fit {point.kind}") from err
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    registers = [
        int.from_bytes(w, "big") if point.byte_order == "big" else int.from_bytes(w, "little")
        for w in words
    ]
    return registers if point.word_order == "big" else list(reversed(registers))


def slice_block(block: Block, registers: Sequence[int]) -> dict[str, float | int]:
    """Decode every point of ``block`` from the registers one read returned."""
    if len(registers) != block.count:
        raise RegisterMapError(f"block at {block.start}: got {len(registers)} registers")
    return {
        p.name: decode(p, registers[p.address - block.start : p.end - block.start])
        for p in block.points
    }
