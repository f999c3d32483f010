"""DL/T 645-2007 codec: the issue's test vectors, error replies and the decoder's counting."""

from __future__ import annotations

from decimal import Decimal

import pytest

from edge.codecs import dlt645
from edge.codecs.dlt645 import (
    DI_FORWARD_ACTIVE_ENERGY_TOTAL,
    DI_PHASE_A_VOLTAGE,
    CodecError,
    Frame,
    FrameDecoder,
)

METER = "000012345678"
REQUEST = bytes.fromhex("68 78 56 34 12 00 00 68 11 04 33 34 34 35 C9 16")
RESPONSE = bytes.fromhex("68 78 56 34 12 00 00 68 91 06 33 34 34 35 34 55 D4 16")


def test_read_request_matches_the_issue_vector() -> None:
    frame = dlt645.read_request(METER, DI_PHASE_A_VOLTAGE)
    assert dlt645.encode(frame, wake_up=0) == REQUEST
    assert dlt645.encode(frame) == b"\xfe" * 4 + REQUEST


def test_response_vector_reads_220_1_volts() -> None:
    [frame] = FrameDecoder().feed(b"\xfe\xfe" + RESPONSE)
    assert frame.address == METER and frame.is_reply and not frame.is_abnormal
    result = dlt645.parse_read_reply(frame, expected_di=DI_PHASE_A_VOLTAGE)
    assert result.error is None
    assert dlt645.bcd_decode(result.value_bytes, decimals=1) == Decimal("220.1")


def test_energy_round_trip() -> None:
    value = dlt645.bcd_encode(Decimal("123456.78"), digits=8, decimals=2)
    assert value == bytes.fromhex("78 56 34 12")
    reply = dlt645.read_reply(METER, DI_FORWARD_ACTIVE_ENERGY_TOTAL, value)
    [decoded] = FrameDecoder().feed(dlt645.encode(reply))
    result = dlt645.parse_read_reply(decoded, expected_di=DI_FORWARD_ACTIVE_ENERGY_TOTAL)
    assert dlt645.bcd_decode(result.value_bytes, decimals=2) == Decimal("123456.78")


def test_abnormal_reply_is_a_device_error_with_its_meaning() -> None:
    [frame] = FrameDecoder().feed(dlt645.encode(dlt645.error_reply(METER, 0b10)))
    assert frame.control == 0xD1 and frame.is_abnormal
    result = dlt645.parse_read_reply(frame, expected_di=DI_PHASE_A_VOLTAGE)
    assert result.value_bytes == b"" and result.error is not None
    assert "no such data" in result.error and "无请求数据" in result.error


def test_reply_for_another_data_identifier_is_refused() -> None:
    [frame] = FrameDecoder().feed(RESPONSE)
    with pytest.raises(CodecError, match="02010100, not 00010000"):
        dlt645.parse_read_reply(frame, expected_di=DI_FORWARD_ACTIVE_ENERGY_TOTAL)


def test_a_request_is_not_a_reply() -> None:
    [frame] = FrameDecoder().feed(REQUEST)
    with pytest.raises(CodecError, match="not a read-data reply"):
        dlt645.parse_read_reply(frame, expected_di=DI_PHASE_A_VOLTAGE)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b[:-2] + bytes([(b[-2] + 1) & 0xFF]) + b[-1:], "checksum"),
        (lambda b: b[:-1] + b"\x17", "end"),
    ],
)
def test_damaged_frames_are_counted_by_reason(damage: object, reason: str) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(damage(RESPONSE)) == []  # type: ignore[operator]
    assert decoder.bad_frames[reason] == 1
    assert decoder.feed(RESPONSE) != []  # and the next good frame still decodes


def test_garbage_between_frames_is_skipped_and_counted() -> None:
    decoder = FrameDecoder()
    frames = decoder.feed(b"\x00\x01\x68\x02" + RESPONSE + b"\xfe\xfe\x55" + RESPONSE)
    assert len(frames) == 2
    assert decoder.garbage_bytes >= 4 and decoder.bad_frames["header"] == 1


def test_split_at_every_offset() -> None:
    for cut in range(len(RESPONSE) + 1):
        decoder = FrameDecoder()
        frames = decoder.feed(RESPONSE[:cut]) + decoder.feed(RESPONSE[cut:])
        assert len(frames) == 1, cut


@pytest.mark.parametrize(
    "address", ["12345678901", "1234567890123", "12345678901G", "-00012345678"]
)
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(CodecError, match="12 digits"):
        dlt645.address_bytes(address)


def test_wildcard_address() -> None:
    assert dlt645.address_bytes("AAAAAAAAAAAA") == b"\xaa" * 6


def test_bcd_refuses_what_does_not_fit() -> None:
    with pytest.raises(CodecError):
        dlt645.bcd_encode(Decimal("1234.5"), digits=4, decimals=1)
    with pytest.raises(CodecError, match="not BCD"):
        dlt645.bcd_decode(b"\x1a", decimals=0)


def test_signed_values() -> None:
    assert dlt645.bcd_decode(bytes.fromhex("34 92"), decimals=1, signed=True) == Decimal("-123.4")


def test_frame_properties() -> None:
    frame = Frame(METER, 0xB1, b"")
    assert frame.is_reply and not frame.is_abnormal and frame.function == 0x11
