"""Properties of the CB-100 decoder on generated input: it never raises, never grows without
bound, accounts for every byte, and finds every valid frame exactly once however the
stream is chunked."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.codecs.cb100 import (
    MAX_FRAME_BYTES,
    MAX_PAYLOAD,
    Frame,
    FrameDecoder,
    encode,
)

DETERMINISTIC = settings(derandomize=True, deadline=None, max_examples=300)

frames = st.builds(
    Frame,
    device_serial=st.integers(0, 0xFFFFFFFF),
    seq=st.integers(0, 0xFFFF),
    type=st.integers(0, 0xFF),
    payload=st.binary(max_size=MAX_PAYLOAD),
)


def without_headers(data: bytes) -> bytes:
    """``data`` with every 0x55 that follows 0xAA changed, so it holds no ``AA 55``."""
    out = bytearray(data)
    for i in range(1, len(out)):
        if out[i - 1] == 0xAA and out[i] == 0x55:
            out[i] = 0x56
    return bytes(out)


garbage = st.binary(max_size=40).map(without_headers)
#: Noise rich in false headers: plausible lengths, right and wrong versions, lone halves.
noisy = st.lists(
    st.one_of(
        st.binary(max_size=8),
        st.sampled_from(
            [
                b"\xaa",
                b"\x55",
                b"\xaa\x55",
                b"\xaa\x55\x08\x01",
                b"\xaa\x55\x28\x01",
                b"\xaa\x55\xff",
            ]
        ),
    ),
    max_size=6,
).map(b"".join)


def feed_in_chunks(decoder: FrameDecoder, data: bytes, cuts: list[int]) -> list[Frame]:
    out: list[Frame] = []
    start = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        out += decoder.feed(data[start:cut])
        assert decoder.pending_bytes < MAX_FRAME_BYTES
        start = max(start, cut)
    return out


def accounted(decoder: FrameDecoder, decoded: list[Frame], fed: int) -> bool:
    frame_bytes = sum(len(encode(f)) for f in decoded)
    return frame_bytes + decoder.garbage_bytes + decoder.pending_bytes == fed


@DETERMINISTIC
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=20))
def test_random_streams_never_raise_and_every_byte_is_accounted(
    data: bytes, cuts: list[int]
) -> None:
    decoder = FrameDecoder()
    decoded = feed_in_chunks(decoder, data, cuts)
    assert accounted(decoder, decoded, len(data))


@DETERMINISTIC
@given(
    st.lists(frames, min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    st.lists(st.integers(0, 400), max_size=4),
    st.lists(st.integers(0, 400), max_size=8),
)
def test_mutated_frames_never_raise(
    good: list[Frame],
    flips: list[tuple[int, int]],
    deletions: list[int],
    cuts: list[int],
) -> None:
    data = bytearray(b"".join(encode(f) for f in good))
    for index, value in flips:
        data[index % len(data)] = value
    for index in deletions:
        if data:
            del data[index % len(data)]
    decoder = FrameDecoder()
    decoded = feed_in_chunks(decoder, bytes(data), cuts)
    assert accounted(decoder, decoded, len(data))
    assert all(0 <= len(f.payload) <= MAX_PAYLOAD for f in decoded)


@DETERMINISTIC
@given(st.lists(st.tuples(garbage, frames), min_size=1, max_size=4), garbage)
def test_frames_in_headerless_garbage_decode_exactly_once_at_every_split(
    pieces: list[tuple[bytes, Frame]], tail: bytes
) -> None:
    stream = b"".join(noise + encode(frame) for noise, frame in pieces) + tail
    expected = [frame for _, frame in pieces]
    noise_bytes = sum(len(noise) for noise, _ in pieces) + len(tail)
    for split in range(len(stream) + 1):
        decoder = FrameDecoder()
        decoded = decoder.feed(stream[:split]) + decoder.feed(stream[split:])
        assert decoded == expected, f"split at {split}"
        assert not decoder.bad_frames
        assert decoder.garbage_bytes + decoder.pending_bytes == noise_bytes


@DETERMINISTIC
@given(
    st.lists(st.tuples(noisy, frames), min_size=1, max_size=4),
    st.lists(st.integers(0, 400), max_size=12),
)
def test_chunking_never_changes_which_frames_come_out(
    pieces: list[tuple[bytes, Frame]], cuts: list[int]
) -> None:
    # Arbitrary noise here, false headers included: every frame is found (a false header
    # would need a matching CRC to swallow one), in one piece or in chunks.
    stream = b"".join(noise + encode(frame) for noise, frame in pieces)
    expected = [frame for _, frame in pieces]
    assert FrameDecoder().feed(stream) == expected
    assert feed_in_chunks(FrameDecoder(), stream, cuts) == expected


@DETERMINISTIC
@given(frames, st.binary(min_size=1, max_size=40).map(without_headers))
def test_every_frame_survives_any_garbage_before_it(frame: Frame, noise: bytes) -> None:
    decoder = FrameDecoder()
    decoded = [f for i in range(len(noise)) for f in decoder.feed(noise[i : i + 1])]
    decoded += decoder.feed(encode(frame))
    assert decoded == [frame]
