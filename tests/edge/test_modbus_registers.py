"""Register maps: coalescing, value decoding with byte and word order, overlaps."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.registers import (
    Point,
    RegisterMapError,
    decode,
    encode,
    find_overlaps,
    plan_reads,
    slice_block,
)


def test_adjacent_points_become_one_request() -> None:
    points = [Point("a", 0), Point("b", 1, "u32"), Point("c", 3, "f32")]
    [block] = plan_reads(points)
    assert (block.start, block.count) == (0, 5)
    assert [p.name for p in block.points] == ["a", "b", "c"]


def test_small_holes_are_read_through_large_ones_split() -> None:
    points = [Point("a", 0), Point("b", 5), Point("c", 100)]
    blocks = plan_reads(points, max_gap=8)
    assert [(b.start, b.count) for b in blocks] == [(0, 6), (100, 1)]
    assert len(plan_reads(points, max_gap=0)) == 3


def test_blocks_respect_the_protocol_limit() -> None:
    points = [Point(f"p{i}", i * 2, "u32") for i in range(100)]  # 200 registers
    blocks = plan_reads(points)
    assert all(b.count <= 125 for b in blocks)
    assert sum(len(b.points) for b in blocks) == 100


def test_overlaps_are_found() -> None:
    a, b, c = Point("a", 0, "u32"), Point("b", 1), Point("c", 2)
    assert find_overlaps([a, b, c]) == [(a, b)]
    assert find_overlaps([Point("x", 0), Point("y", 1)]) == []


@pytest.mark.parametrize(
    ("byte_order", "word_order", "registers"),
    [
        ("big", "big", [0x4148, 0x0000]),  # ABCD
        ("big", "little", [0x0000, 0x4148]),  # CDAB
        ("little", "big", [0x4841, 0x0000]),  # BADC
        ("little", "little", [0x0000, 0x4841]),  # DCBA
    ],
)
def test_float_in_every_byte_and_word_order(
    byte_order: str, word_order: str, registers: list[int]
) -> None:
    point = Point("f", 0, "f32", byte_order, word_order)  # type: ignore[arg-type]
    assert decode(point, registers) == 12.5
    assert encode(point, 12.5) == registers


def test_scale_and_offset() -> None:
    point = Point("t", 0, "i16", scale=0.1, offset=-40)
    assert decode(point, [650]) == pytest.approx(25.0)
    assert encode(point, 25.0) == [650]
    with pytest.raises(RegisterMapError, match="not a multiple"):
        encode(point, 25.03)


def test_values_that_do_not_fit_are_refused() -> None:
    with pytest.raises(RegisterMapError, match="does not fit"):
        encode(Point("u", 0, "u16"), 70000)
    with pytest.raises(RegisterMapError, match="needs 2"):
        decode(Point("u", 0, "u32"), [1])


def test_slice_block() -> None:
    points = [Point("a", 10), Point("b", 12, "u32")]
    [block] = plan_reads(points)
    assert slice_block(block, [7, 0, 0, 9]) == {"a": 7, "b": 9}


kinds = st.sampled_from(["u16", "i16", "u32", "i32", "u64", "i64"])


@settings(max_examples=300, deadline=None)
@given(
    kind=kinds,
    byte_order=st.sampled_from(["big", "little"]),
    word_order=st.sampled_from(["big", "little"]),
    data=st.data(),
)
def test_integer_round_trip(
    kind: str, byte_order: str, word_order: str, data: st.DataObject
) -> None:
    point = Point("v", 0, kind, byte_order, word_order)  # type: ignore[arg-type]
    bits = point.count * 16
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if kind[0] == "i" else (0, 2**bits - 1)
    value = data.draw(st.integers(min_value=low, max_value=high))
    assert decode(point, encode(point, value)) == value


@settings(max_examples=300, deadline=None)
@given(
    addresses=st.lists(st.tuples(st.integers(min_value=0, max_value=2000), kinds), max_size=60),
    max_gap=st.integers(min_value=0, max_value=20),
)
def test_plan_covers_every_point_exactly_once_within_limits(
    addresses: list[tuple[int, str]], max_gap: int
) -> None:
    points = [Point(f"p{i}", a, k) for i, (a, k) in enumerate(addresses)]  # type: ignore[arg-type]
    blocks = plan_reads(points, max_gap=max_gap)
    served = [p for b in blocks for p in b.points]
    assert sorted(p.name for p in served) == sorted(p.name for p in points)
    for block in blocks:
        assert 1 <= block.count <= 125
        assert all(
            block.start <= p.address and p.end <= block.start + block.count for p in block.points
        )


def test_f32_matches_struct() -> None:
    raw = struct.pack(">f", -1.5)
    registers = [int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big")]
    assert decode(Point("f", 0, "f32"), registers) == -1.5
