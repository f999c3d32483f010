"""Device profiles: the shipped CB-100 profile, errors that name file and field, and the
frame ↔ event mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract import Lane
from edge.codecs.cb100 import Frame, FrameDecoder, FrameType
from edge.errors import ProfileError
from edge.frame_mapping import build_command_frame, decode_field, map_frame
from profiles import (
    DeviceProfile,
    MappingError,
    PayloadField,
    load_profile,
    load_profiles,
)
from tests.edge.conftest import CB100_PROFILE

CB100_TEXT = CB100_PROFILE.read_text(encoding="utf-8")


def test_cb100_profile_loads(cb100_profile: DeviceProfile) -> None:
    p = cb100_profile
    assert (p.identity.name, p.identity.model, p.codec) == ("cb-100", "CB-100", "cb100")
    line = p.transport
    assert (line.kind, line.baudrate, line.bytesize, line.parity, line.stopbits) == (
        "serial", 9600, 8, "none", 1,
    )  # fmt: skip
    assert p.device_id_for(77626) == "cb100-77626"
    assert {e.frame_type: (e.kind, e.contract_lane) for e in p.events} == {
        0x01: ("sos", Lane.ALARM),
        0x02: ("service_request", Lane.NORMAL),
        0x03: ("cancel", Lane.NORMAL),
        0x04: ("heartbeat", Lane.TELEMETRY),
        0x05: ("low_battery", Lane.NORMAL),
        0x06: ("fall", Lane.ALARM),
        0x07: ("presence", Lane.NORMAL),
        0x08: ("check_in", Lane.NORMAL),  # daily check-in (issue #15)
    }
    feedback = p.command("button_feedback")
    assert feedback is not None
    assert feedback.codes == {
        "received": 0x81,
        "help_coming": 0x82,
        "case_closed": 0x83,
        "are_you_ok": 0x84,  # the wellbeing watch's prompt (issue #15)
    }


def test_load_profiles_keys_by_name() -> None:
    profiles = load_profiles(CB100_PROFILE.parent)
    assert "cb-100" in profiles


def write(tmp_path: Path, text: str, name: str = "cb-100.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


BROKEN = {
    "unknown lane": (
        ("kind: service_request\n    lane: normal", "kind: service_request\n    lane: urgent"),
        "events[1].lane: Input should be 'alarm', 'normal' or 'telemetry'",
    ),
    "duplicate frame type": (
        ("frame_type: 0x03", "frame_type: 0x02"),
        "events[2].frame_type: duplicate frame type 0x02 (also events[1])",
    ),
    "missing field": (("    kind: fall\n", ""), "events[5].kind: Field required"),
    "yaml syntax": (("codec: cb100", "codec: [cb100"), "line 17, column 10: not valid YAML"),
    "extra key": (
        ("kind: presence", "kind: presence\n    colour: red"),
        "events[6].colour: Extra inputs are not permitted",
    ),
    "duplicate yaml key": (("kind: presence", "kind: presence\n    kind: x"), "duplicate key"),
    "min above max": (
        ("min: 1, max: 11", "min: 12, max: 11"),
        "events[1].fields[0].min: min 12.0 is greater than max 11.0",
    ),
    "bad template": (('"cb100-{serial}"', '"cb100-{sn}"'), "device_id: template"),
    "template without serial": (('"cb100-{serial}"', '"cb100"'), "device_id: template"),
    "string frame type": (("frame_type: 0x07", "frame_type: seven"), "events[6].frame_type"),
    "unknown field type": (("type: uint8, min: 1", "type: uint9, min: 1"), "fields[0].type"),
    "bad stopbits": (("stopbits: 1", "stopbits: 3"), "transport.stopbits"),
    "unknown codec": (("codec: cb100", "codec: modbus"), "codec: Input should be 'cb100'"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_profile_names_file_and_field(tmp_path: Path, case: str) -> None:
    (old, new), expected = BROKEN[case]
    assert old in CB100_TEXT, "the test edit must apply to the shipped profile"
    path = write(tmp_path, CB100_TEXT.replace(old, new, 1))
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message


@pytest.mark.parametrize("text", ["- just\n- a list\n", "", "42\n"])
def test_profile_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ProfileError, match=r"\(top level\): expected a mapping"):
        load_profile(write(tmp_path, text))


def test_missing_profile_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not found"):
        load_profile(tmp_path / "nope.yaml")
    with pytest.raises(ProfileError, match="directory not found"):
        load_profiles(tmp_path / "nope")


def test_two_profiles_with_one_name(tmp_path: Path) -> None:
    write(tmp_path, CB100_TEXT, "a.yaml")
    write(tmp_path, CB100_TEXT, "b.yml")
    with pytest.raises(ProfileError, match=r"b\.yml: identity\.name: duplicate profile name"):
        load_profiles(tmp_path)


# -- mapping --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "kind", "lane", "data"),
    [
        (Frame(77626, 7, FrameType.SOS), "sos", Lane.ALARM, {"frame_seq": 7}),
        (
            Frame(77626, 8, FrameType.HEARTBEAT, bytes([87])),
            "heartbeat",
            Lane.TELEMETRY,
            {"frame_seq": 8, "battery_pct": 87},
        ),
        (
            Frame(1, 9, FrameType.SERVICE_REQUEST, bytes([11, 0xEE])),  # extra bytes ignored
            "service_request",
            Lane.NORMAL,
            {"frame_seq": 9, "category": 11},
        ),
        (Frame(1, 0, FrameType.FALL), "fall", Lane.ALARM, {"frame_seq": 0}),
        (Frame(1, 3, FrameType.PRESENCE), "presence", Lane.NORMAL, {"frame_seq": 3}),
    ],
)
def test_map_frame(
    cb100_profile: DeviceProfile, frame: Frame, kind: str, lane: Lane, data: dict[str, int]
) -> None:
    event = map_frame(cb100_profile, frame)
    assert (event.device_id, event.kind, event.lane, event.data) == (
        f"cb100-{frame.device_serial}", kind, lane, data,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (Frame(1, 1, 0x42), "unknown_type"),
        (Frame(1, 1, FrameType.SERVICE_REQUEST, bytes([0])), "out_of_range"),
        (Frame(1, 1, FrameType.SERVICE_REQUEST, bytes([12])), "out_of_range"),
        (Frame(1, 1, FrameType.HEARTBEAT, bytes([101])), "out_of_range"),
        (Frame(1, 1, FrameType.LOW_BATTERY), "payload_short"),
    ],
)
def test_unmappable_frames_raise_mapping_error(
    cb100_profile: DeviceProfile, frame: Frame, reason: str
) -> None:
    with pytest.raises(MappingError, match="cb100-1") as caught:
        map_frame(cb100_profile, frame)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("kind", "raw", "value"),
    [
        ("uint8", b"\xff", 255),
        ("int8", b"\xff", -1),
        ("uint16be", b"\x01\x02", 0x0102),
        ("uint16le", b"\x01\x02", 0x0201),
        ("int16be", b"\xff\xfe", -2),
        ("int16le", b"\xfe\xff", -2),
        ("uint32be", b"\x00\x01\x2f\x3a", 77626),
        ("uint32le", b"\x3a\x2f\x01\x00", 77626),
        ("int32be", b"\xff\xff\xff\xff", -1),
        ("int32le", b"\xfe\xff\xff\xff", -2),
    ],
)
def test_decode_field_types(kind: str, raw: bytes, value: int) -> None:
    spec = PayloadField.model_validate({"name": "x", "offset": 1, "type": kind})
    assert decode_field(spec, b"\x00" + raw) == value


def test_decode_field_scale() -> None:
    spec = PayloadField(name="volts", offset=0, type="uint16be", scale=0.01, max=5.0)
    assert decode_field(spec, b"\x01\x2c") == pytest.approx(3.0)
    with pytest.raises(MappingError, match="outside"):
        decode_field(spec, b"\x02\x00")


@pytest.mark.parametrize(
    ("code", "frame_type"),
    [("received", 0x81), ("help_coming", 0x82), ("case_closed", 0x83), ("are_you_ok", 0x84)],
)
def test_build_button_feedback(cb100_profile: DeviceProfile, code: str, frame_type: int) -> None:
    data = build_command_frame(
        cb100_profile, 77626, "button_feedback", {"code": code, "ref_seq": 7}
    )
    assert FrameDecoder().feed(data) == [Frame(77626, 7, frame_type)]


@pytest.mark.parametrize(
    ("serial", "name", "args", "reason"),
    [
        (1, "reboot", {}, "unknown_command"),
        (1, "button_feedback", {"code": "thanks", "ref_seq": 1}, "bad_args"),
        (1, "button_feedback", {"code": 0x81, "ref_seq": 1}, "bad_args"),
        (1, "button_feedback", {"code": "received"}, "bad_args"),
        (1, "button_feedback", {"code": "received", "ref_seq": 70000}, "bad_args"),
        (1, "button_feedback", {"code": "received", "ref_seq": True}, "bad_args"),
        (1, "button_feedback", {"code": "received", "ref_seq": 1, "x": 2}, "bad_args"),
        (1 << 32, "button_feedback", {"code": "received", "ref_seq": 1}, "bad_args"),
    ],
)
def test_bad_commands_raise_device_error(
    cb100_profile: DeviceProfile, serial: int, name: str, args: dict[str, object], reason: str
) -> None:
    with pytest.raises(MappingError) as caught:
        build_command_frame(cb100_profile, serial, name, args)
    assert caught.value.reason == reason
