"""Property tests for the DL/T 645 decoder: random and mutated streams, round trips."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.codecs import dlt645
from edge.codecs.dlt645 import MAX_FRAME_BYTES, Frame, FrameDecoder

PROPS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

addresses = st.text(alphabet="0123456789", min_size=12, max_size=12)
frames = st.builds(
    Frame,
    address=addresses,
    control=st.integers(min_value=0, max_value=255),
    data=st.binary(max_size=dlt645.MAX_DATA),
)


@PROPS
@given(frame=frames, wake_up=st.integers(min_value=0, max_value=4))
def test_round_trip(frame: Frame, wake_up: int) -> None:
    assert FrameDecoder().feed(dlt645.encode(frame, wake_up=wake_up)) == [frame]


@PROPS
@given(stream=st.binary(max_size=2000), chunk=st.integers(min_value=1, max_value=64))
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(stream: bytes, chunk: int) -> None:
    decoder = FrameDecoder()
    for i in range(0, len(stream), chunk):
        decoder.feed(stream[i : i + chunk])
        assert decoder.pending_bytes < MAX_FRAME_BYTES + 8


@PROPS
@given(
    before=st.binary(max_size=40),
    frame=frames,
    after=st.binary(max_size=40),
    cut=st.integers(min_value=0, max_value=300),
)
def test_valid_frame_glued_to_garbage_decodes_once_at_any_split(
    before: bytes, frame: Frame, after: bytes, cut: int
) -> None:
    # 68H is taken out of the leading garbage: DL/T 645 has only an 8-bit checksum, so
    # garbage can, rarely, form a frame of its own that swallows the real one.
    raw = dlt645.encode(frame)
    stream = before.replace(b"\x68", b"\x00") + raw + after
    cut %= len(stream) + 1
    decoder = FrameDecoder()
    decoded = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
    assert decoded.count(frame) == 1


@PROPS
@given(
    frame=frames, position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255)
)
def test_a_mutated_frame_is_rejected_or_decodes_to_something_else_never_raises(
    frame: Frame, position: int, flip: int
) -> None:
    raw = bytearray(dlt645.encode(frame, wake_up=0))
    position %= len(raw)
    raw[position] ^= flip
    decoded = FrameDecoder().feed(bytes(raw))
    # A flipped byte is caught by the checksum, the framing or the end byte; it can never
    # come out as the original frame.
    assert frame not in decoded


@PROPS
@given(
    digits=st.sampled_from([2, 4, 6, 8]),
    decimals=st.integers(min_value=0, max_value=3),
    data=st.data(),
)
def test_bcd_round_trip(digits: int, decimals: int, data: st.DataObject) -> None:
    raw = data.draw(st.integers(min_value=0, max_value=10**digits - 1))
    value = Decimal(raw).scaleb(-decimals)
    encoded = dlt645.bcd_encode(value, digits=digits, decimals=decimals)
    assert len(encoded) == digits // 2
    assert dlt645.bcd_decode(encoded, decimals=decimals) == value
