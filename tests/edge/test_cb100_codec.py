"""CB-100 framing: the published test vectors, round trips and every rejection reason."""

from __future__ import annotations

import pytest

from edge.codecs.cb100 import (
    MAX_FRAME_BYTES,
    MAX_PAYLOAD,
    Frame,
    FrameDecoder,
    FrameType,
    crc16_modbus,
    encode,
    is_downlink_type,
)

SOS_77626_SEQ7 = bytes.fromhex("AA 55 08 01 00 01 2F 3A 00 07 01 B7 C3")
HEARTBEAT_77626_SEQ8_87 = bytes.fromhex("AA 55 09 01 00 01 2F 3A 00 08 04 57 A0 1E")
SOS = Frame(77626, 7, FrameType.SOS)
HEARTBEAT = Frame(77626, 8, FrameType.HEARTBEAT, bytes([87]))


def test_crc16_modbus_check_value() -> None:
    assert crc16_modbus(b"123456789") == 0x4B37  # the catalogue check value
    assert crc16_modbus(b"") == 0xFFFF


def test_encode_matches_the_test_vectors() -> None:
    assert encode(SOS) == SOS_77626_SEQ7
    assert encode(HEARTBEAT) == HEARTBEAT_77626_SEQ8_87


def test_decode_the_test_vectors_in_one_chunk() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(SOS_77626_SEQ7 + HEARTBEAT_77626_SEQ8_87) == [SOS, HEARTBEAT]
    assert decoder.garbage_bytes == 0
    assert decoder.pending_bytes == 0
    assert not decoder.bad_frames


def test_decode_byte_by_byte_emits_each_frame_on_its_last_byte() -> None:
    decoder = FrameDecoder()
    stream = SOS_77626_SEQ7 + HEARTBEAT_77626_SEQ8_87
    out = [decoder.feed(stream[i : i + 1]) for i in range(len(stream))]
    assert out[len(SOS_77626_SEQ7) - 1] == [SOS]
    assert out[-1] == [HEARTBEAT]
    assert sum(len(frames) for frames in out) == 2


@pytest.mark.parametrize(
    "frame",
    [
        Frame(0, 0, 0),
        Frame(0xFFFFFFFF, 0xFFFF, 0xFF, bytes(range(MAX_PAYLOAD))),
        Frame(77627, 0xFFFF, FrameType.SERVICE_REQUEST, bytes([3])),
        Frame(1, 2, FrameType.CASE_CLOSED),
        Frame(0xAA55AA55, 0xAA55, 0xAA, b"\xaa\x55\xaa\x55"),  # headers inside a frame
    ],
)
def test_round_trip(frame: Frame) -> None:
    assert FrameDecoder().feed(encode(frame)) == [frame]


@pytest.mark.parametrize(
    "frame",
    [
        Frame(-1, 0, 1),
        Frame(1 << 32, 0, 1),
        Frame(1, 0x10000, 1),
        Frame(1, -1, 1),
        Frame(1, 0, 256),
        Frame(1, 0, 1, bytes(MAX_PAYLOAD + 1)),
    ],
)
def test_encode_rejects_out_of_range_fields(frame: Frame) -> None:
    with pytest.raises(ValueError, match=r"serial|sequence|type|payload"):
        encode(frame)


def test_unknown_types_are_still_frames() -> None:
    frame = Frame(5, 6, 0x42, b"\x01\x02")
    assert FrameDecoder().feed(encode(frame)) == [frame]
    assert is_downlink_type(FrameType.LINK_ACK)
    assert not is_downlink_type(FrameType.PRESENCE)


def corrupt(data: bytes, index: int, value: int) -> bytes:
    out = bytearray(data)
    out[index] = value
    return bytes(out)


def with_crc(body_without_crc: bytes) -> bytes:
    return body_without_crc + crc16_modbus(body_without_crc[2:]).to_bytes(2, "little")


@pytest.mark.parametrize(
    ("bad", "reason", "serial"),
    [
        (corrupt(SOS_77626_SEQ7, 12, 0x00), "crc", 77626),
        (corrupt(SOS_77626_SEQ7, 10, 0x02), "crc", 77626),  # payload bit flip
        (with_crc(corrupt(SOS_77626_SEQ7, 3, 0x02)[:-2]), "version", 77626),
        (bytes.fromhex("AA 55 07 01 00 01 2F 3A 00 07"), "length", None),
        (bytes.fromhex("AA 55 29") + bytes(45), "length", None),  # 8 + 33 payload bytes
        (bytes.fromhex("AA 55 FF"), "length", None),
    ],
)
def test_each_rejection_is_counted_and_the_next_frame_still_decodes(
    bad: bytes, reason: str, serial: int | None
) -> None:
    rejected: list[tuple[str, int | None]] = []
    decoder = FrameDecoder(on_reject=lambda why, sn: rejected.append((why, sn)))
    assert decoder.feed(bad + HEARTBEAT_77626_SEQ8_87) == [HEARTBEAT]
    assert decoder.bad_frames[reason] == 1
    assert sum(decoder.bad_frames.values()) == 1
    assert rejected == [(reason, serial)]
    if serial is not None:
        assert decoder.bad_frames_by_device == {serial: 1}
    else:
        assert not decoder.bad_frames_by_device
    assert decoder.garbage_bytes == len(bad)


def test_stray_header_with_huge_length_does_not_hold_back_an_sos() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\xaa\x55\xff" + SOS_77626_SEQ7) == [SOS]
    assert decoder.bad_frames == {"length": 1}


def test_truncated_frame_followed_by_a_complete_one_is_dropped_at_once() -> None:
    decoder = FrameDecoder()
    cut = encode(Frame(77626, 6, 0x02, bytes(30)))[:12]  # claims 43 bytes, only 12 came
    assert decoder.feed(cut + SOS_77626_SEQ7) == [SOS]
    assert decoder.bad_frames == {"truncated": 1}
    assert decoder.pending_bytes == 0


def test_valid_frame_hidden_after_a_false_header_is_found() -> None:
    # "AA 55 08 01" looks like a plausible header; its CRC spans the real SOS and fails.
    decoder = FrameDecoder()
    assert decoder.feed(b"\xaa\x55\x08\x01" + SOS_77626_SEQ7) == [SOS]
    assert decoder.bad_frames == {"crc": 1}
    assert decoder.bad_frames_by_device == {0xAA550801: 1}
    assert decoder.garbage_bytes == 4


def test_partial_frame_waits_for_its_rest() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x01" + SOS_77626_SEQ7[:9]) == []
    assert decoder.pending_bytes == 9
    assert decoder.feed(SOS_77626_SEQ7[9:]) == [SOS]
    assert decoder.garbage_bytes == 2


def test_trailing_header_byte_is_kept_across_calls() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x10\x20" + SOS_77626_SEQ7[:1]) == []
    assert decoder.pending_bytes == 1
    assert decoder.feed(SOS_77626_SEQ7[1:]) == [SOS]


def test_buffer_stays_bounded_on_endless_garbage() -> None:
    decoder = FrameDecoder()
    noise = bytes([0xAA, 0x55, 0x28, 0x01, 0x17]) * 2000 + b"\xaa" * 5000 + bytes(range(256)) * 40
    for start in range(0, len(noise), 97):
        decoder.feed(noise[start : start + 97])
        assert decoder.pending_bytes < MAX_FRAME_BYTES
    assert decoder.feed(SOS_77626_SEQ7 * 2) == [SOS, SOS]


def test_bad_frames_by_device_is_capped() -> None:
    decoder = FrameDecoder()
    frames = (encode(Frame(serial, 1, 4, b"\x01")) for serial in range(1100))
    stream = b"".join(frame[:-1] + bytes([frame[-1] ^ 0xFF]) for frame in frames)
    decoder.feed(stream)
    assert decoder.bad_frames["crc"] == 1100
    assert len(decoder.bad_frames_by_device) == 1024
