"""Device profile format v2: the shipped profiles, mistakes named by file and field, and
the typed API drivers use (JSON events, MQTT commands, Modbus points, poll triggers)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from contract import Lane
from edge.errors import ProfileError
from profiles import (
    DeviceProfile,
    MappingError,
    ModbusRtuTransport,
    MqttTransport,
    load_profile,
    load_profiles,
    parse_command_reply,
    parse_profile,
)
from profiles.config_check import address_from_device_id
from profiles.registers import Point

PROFILES = Path(__file__).resolve().parents[2] / "device_profiles"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def text_of(name: str) -> str:
    return (PROFILES / f"{name}.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def profiles() -> dict[str, DeviceProfile]:
    return load_profiles(PROFILES)


def test_every_shipped_profile_loads(profiles: dict[str, DeviceProfile]) -> None:
    kinds = {name: (p.transport.kind, p.codec) for name, p in profiles.items()}
    assert kinds == {
        "cb-100": ("serial", "cb100"),
        "dlt645-meter": ("serial", "dlt645"),
        "water-meter": ("modbus-rtu", "modbus"),
        "bin-sensor": ("modbus-tcp", "modbus"),
        "fr-door": ("mqtt", "json"),
        "parcel-locker": ("mqtt", "json"),
    }
    ids = {name: p.device_id_for_address(a) for name, p, a in [
        ("cb-100", profiles["cb-100"], "77626"),
        ("dlt645-meter", profiles["dlt645-meter"], "000012345678"),
        ("water-meter", profiles["water-meter"], "7"),
        ("bin-sensor", profiles["bin-sensor"], "1"),
        ("fr-door", profiles["fr-door"], "gate-3"),
        ("parcel-locker", profiles["parcel-locker"], "b2"),
    ]}  # fmt: skip
    assert ids == {
        "cb-100": "cb100-77626",
        "dlt645-meter": "meter-000012345678",
        "water-meter": "wm-7",
        "bin-sensor": "bin-1",
        "fr-door": "door-gate-3",
        "parcel-locker": "locker-b2",
    }


def test_event_kinds_follow_the_vocabulary(profiles: dict[str, DeviceProfile]) -> None:
    door, locker = profiles["fr-door"], profiles["parcel-locker"]
    assert [e.kind for e in door.events] == [
        "face_pass", "face_unknown", "card_pass", "door_forced", "door_held_open", "heartbeat",
    ]  # fmt: skip
    assert [e.kind for e in locker.events] == [
        "parcel_deposited", "parcel_picked_up", "door_left_open", "heartbeat",
    ]  # fmt: skip
    assert [(p.kind, p.points) for p in profiles["water-meter"].polls] == [
        ("water_reading", ("total_m3", "flow_m3h"))
    ]
    assert [(p.kind, p.points) for p in profiles["bin-sensor"].polls] == [
        ("bin_reading", ("fill_pct", "temperature_c", "tilt_deg"))
    ]
    assert [(p.kind, p.contract_lane) for p in profiles["dlt645-meter"].polls] == [
        ("meter_reading", Lane.TELEMETRY)
    ]


# --- mistakes: (profile, old text, new text) → exact "field: problem" after the file name ---

BROKEN: dict[str, tuple[str, str, str, str]] = {
    "unknown transport": (
        "water-meter", "kind: modbus-rtu", "kind: modbus-udp",
        "transport.kind: unknown transport kind 'modbus-udp'; "
        "known kinds: serial, modbus-rtu, modbus-tcp, mqtt",
    ),
    "missing transport kind": (
        "fr-door", "  kind: mqtt\n", "",
        "transport.kind: missing; known kinds: serial, modbus-rtu, modbus-tcp, mqtt",
    ),
    "overlapping registers": (
        "water-meter", "address: 2", "address: 1",
        "points[1].address: 'flow_m3h' (registers 1..1) overlaps 'total_m3' (points[0], "
        "registers 0..1) in the input table",
    ),
    "bad scale": (
        "water-meter", "scale: 0.01", "scale: 0",
        "points[1].scale: bad scale 0.0: must be finite and not 0",
    ),
    "non-finite scale": (
        "water-meter", "scale: 0.001", "scale: .nan",
        "points[0].scale: bad scale nan: must be finite and not 0",
    ),
    "cron typo": (
        "dlt645-meter", '"0 * * * *"', '"0 * * *"',
        "polls[0].cron: cron needs 5 fields (minute hour day month weekday), got 4",
    ),
    "cron out of range": (
        "dlt645-meter", '"0 * * * *"', '"61 * * * *"',
        "polls[0].cron: bad cron expression '61 * * * *': Error validating expression '61': "
        "the last value (61) is higher than the maximum value (59)",
    ),
    "cron numeric weekday": (
        "dlt645-meter", '"0 * * * *"', '"0 9 * * 1"',
        "polls[0].cron: write the weekday field with names (mon-fri): "
        "APScheduler counts 0 = Monday",
    ),
    "cron never fires": (
        "dlt645-meter", '"0 * * * *"', '"0 0 31 2 *"',
        "polls[0].cron: cron expression '0 0 31 2 *' never fires",
    ),
    "cron and every_s": (
        "dlt645-meter", 'cron: "0 * * * *"', 'cron: "0 * * * *"\n    every_s: 60',
        "polls[0].every_s: give exactly one of every_s and cron",
    ),
    "poll names a missing point": (
        "water-meter", "points: [total_m3, flow_m3h]", "points: [total_m3, flow_m3]",
        "polls[0].points[1]: unknown point 'flow_m3' (points: total_m3, flow_m3h)",
    ),
    "codec does not fit transport": (
        "water-meter", "codec: modbus", "codec: json",
        "codec: Input should be 'modbus' for transport kind 'modbus-rtu'; "
        "codec 'json' needs transport kind mqtt",
    ),
    "dlt645 on modbus transport": (
        "dlt645-meter", "kind: serial", "kind: modbus-rtu",
        "codec: Input should be 'modbus' for transport kind 'modbus-rtu'; "
        "codec 'dlt645' needs transport kind serial",
    ),
    "min above max": (
        "bin-sensor", "min: 0, max: 100", "min: 101, max: 100",
        "points[0].min: min 101.0 is greater than max 100.0",
    ),
    "duplicate point": (
        "bin-sensor", "name: tilt_deg", "name: fill_pct",
        "points[2].name: duplicate name fill_pct (also points[0])",
    ),
    "duplicate event kind": (
        "fr-door", "kind: card_pass", "kind: face_pass",
        "events[2].kind: duplicate kind face_pass (also events[0])",
    ),
    "duplicate command": (
        "fr-door", "name: set_mode", "name: open_door",
        "commands[1].name: duplicate name open_door (also commands[0])",
    ),
    "modbus profile without polls": (
        "water-meter", "polls:", "unused_polls:",
        "unused_polls: Extra inputs are not permitted",
    ),
    "rw input register": (
        "water-meter", "    scale: 0.01\n", "    scale: 0.01\n    access: rw\n",
        "points[1].access: input registers are read-only; use table: holding",
    ),
    "write_point without rw points": (
        "bin-sensor", "access: rw, ", "",
        "commands[0]: write_point needs at least one point with access: rw",
    ),
    "template without address": (
        "water-meter", '"wm-{address}"', '"wm-{unit}"',
        "device_id: template must contain {address} once and no other placeholder",
    ),
    "cb100 event in a json profile": (
        "parcel-locker", "  - match: {field: type, equals: heartbeat}",
        "  - frame_type: 4",
        "events[3]: a cb100 event rule (frame_type) does not fit codec 'json'; "
        "expected a json event rule (match)",
    ),
    "cb100 command in an mqtt profile": (
        "parcel-locker", "commands:\n", "commands:\n  - {name: ring, codes: {bell: 1}}\n",
        "commands[0]: a cb100 command (codes) does not fit codec 'json'; "
        "expected an mqtt command (payload/args)",
    ),
    "json field of unknown type": (
        "fr-door", "type: float, min: 0, max: 1}\n  - match: {field: type, equals: face_unknown}",
        "type: decimal, min: 0, max: 1}\n  - match: {field: type, equals: face_unknown}",
        "events[0].fields[1].type: Input should be 'str', 'int', 'float' or 'bool'",
    ),
    "placeholder without argument": (
        "fr-door", 'duration_s: "{duration_s}"', 'duration_s: "{seconds}"',
        "commands[0].payload.duration_s: placeholder {seconds} names no argument in args",
    ),
    "topic without address": (
        "fr-door", '"devices/{address}/events"', '"devices/events"',
        "transport.event_topic: topic template must have exactly one level that is {address}",
    ),
    "dlt645 odd digits": (
        "dlt645-meter", "digits: 4", "digits: 5",
        "points[1].digits: BCD digits come in pairs; 5 is odd",
    ),
    "modbus key in a dlt645 point": (
        "dlt645-meter", "    decimals: 1\n", "    decimals: 1\n    table: input\n",
        "points[1].table: Extra inputs are not permitted",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BROKEN))
def test_mistake_names_file_and_field(tmp_path: Path, case: str) -> None:
    name, old, new, expected = BROKEN[case]
    original = text_of(name)
    assert old in original, "the test edit must apply to the shipped profile"
    path = tmp_path / f"{name}.yaml"
    path.write_text(original.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert f"{path}: {expected}" in str(caught.value).splitlines()


def test_heartbeat_given_twice_is_an_error() -> None:
    text = text_of("cb-100").replace(
        "heartbeat_interval_s: 60",
        "heartbeat_interval_s: 60\nsupervision: {heartbeat_interval_s: 30}",
    )
    with pytest.raises(ProfileError, match=r"^p: heartbeat_interval_s: give the heartbeat once"):
        parse_profile(text, "p")


def test_supervision(profiles: dict[str, DeviceProfile]) -> None:
    assert profiles["cb-100"].supervision.heartbeat_interval_s == 60  # v1 top-level key
    assert profiles["cb-100"].heartbeat_interval_s == 60
    door = profiles["fr-door"].supervision
    assert (door.heartbeat_interval_s, door.offline_after) == (30, 3)
    meter = profiles["water-meter"].supervision
    assert (meter.heartbeat_interval_s, meter.offline_after) == (None, 3)


# --- JSON events ------------------------------------------------------------------------


def test_json_event_extraction(profiles: dict[str, DeviceProfile]) -> None:
    door = profiles["fr-door"]
    payload: dict[str, Any] = {
        "type": "face_pass", "event_id": "e-1", "person_id": "P0042", "similarity": 0.93,
        "extra": [1, 2],
    }  # fmt: skip
    rule = door.json_event_for(payload)
    assert rule is not None
    assert (rule.kind, rule.contract_lane, rule.hub_ack) == ("face_pass", Lane.NORMAL, False)
    assert rule.extract(payload) == {"person_id": "P0042", "similarity": 0.93}
    assert rule.dedupe_key(payload) == "e-1"
    held = door.json_event_for({"type": "door_held_open", "seconds": 45, "event_id": 7})
    assert held is not None
    assert held.extract({"type": "door_held_open", "seconds": 45}) == {"seconds": 45}
    assert held.dedupe_key({"event_id": 7}) == "7"
    beat = door.json_event_for({"type": "heartbeat"})
    assert beat is not None
    assert (beat.extract({"type": "heartbeat"}), beat.contract_lane) == ({}, Lane.TELEMETRY)
    assert door.json_event_for({"type": "nonsense"}) is None
    assert door.json_event_for({"type": ["face_pass"]}) is None
    assert door.json_event_for({"kind": "face_pass"}) is None
    # an integer similarity is a float; a locker's nested-free payload works the same way
    assert rule.extract({"person_id": "P1", "similarity": 1}) == {
        "person_id": "P1",
        "similarity": 1.0,
    }
    locker = profiles["parcel-locker"].json_event_for({"type": "parcel_deposited"})
    assert locker is not None
    assert locker.extract(
        {"compartment": 12, "household_id": 301, "parcel_id": "SF1", "type": "x"}
    ) == {"compartment": 12, "household_id": 301, "parcel_id": "SF1"}


@pytest.mark.parametrize(
    ("payload", "reason", "message"),
    [
        ({"similarity": 0.9}, "missing_field", "face_pass: field 'person_id' is missing"),
        ({"person_id": "P", "similarity": None}, "missing_field", "'similarity' is missing"),
        ({"person_id": "P", "similarity": "high"}, "bad_type", "must be float, not 'high'"),
        ({"person_id": "P", "similarity": True}, "bad_type", "must be float, not True"),
        ({"person_id": 42, "similarity": 0.9}, "bad_type", "'person_id' must be str, not 42"),
        ({"person_id": "P", "similarity": 1.5}, "out_of_range", "= 1.5 is outside 0.0..1.0"),
        ({"person_id": "P" * 201, "similarity": 0.5}, "out_of_range", "longer than 200"),
    ],
)
def test_json_event_errors(
    profiles: dict[str, DeviceProfile], payload: dict[str, Any], reason: str, message: str
) -> None:
    rule = profiles["fr-door"].json_events()[0]
    with pytest.raises(MappingError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        rule.extract(payload)
    assert err.value.reason == reason


def test_json_int_field_refuses_floats_and_bools(profiles: dict[str, DeviceProfile]) -> None:
    rule = profiles["parcel-locker"].json_events()[2]  # door_left_open
    assert rule.extract({"compartment": 3}) == {"compartment": 3}
    for bad, reason in ((3.0, "bad_type"), (True, "bad_type"), (49, "out_of_range")):
        with pytest.raises(MappingError) as err:
            rule.extract({"compartment": bad})
        assert err.value.reason == reason


def test_optional_fields_and_nested_paths() -> None:
    text = text_of("fr-door").replace(
        "      - {name: card_id, path: card_id, type: str, max_length: 32}",
        "      - {name: card_id, path: card.id, type: str, max_length: 32}\n"
        "      - {name: reader, path: card.reader, type: int, required: false}",
    )
    rule = parse_profile(text, "p").json_events()[2]
    assert rule.extract({"card": {"id": "C9"}}) == {"card_id": "C9"}
    assert rule.extract({"card": {"id": "C9", "reader": 2}}) == {"card_id": "C9", "reader": 2}
    with pytest.raises(MappingError) as err:
        rule.extract({"card": "C9"})
    assert err.value.reason == "missing_field"


def test_command_reply() -> None:
    assert parse_command_reply({"type": "face_pass"}) is None
    reply = parse_command_reply({"type": "command_result", "command_id": "c1", "status": "ok"})
    assert reply is not None
    assert (reply.command_id, reply.status, reply.detail) == ("c1", "ok", "")
    with pytest.raises(MappingError):
        parse_command_reply({"type": "command_result", "command_id": "c1", "status": "maybe"})
    with pytest.raises(MappingError):
        parse_command_reply({"type": "command_result", "status": "ok"})


# --- MQTT commands -------------------------------------------------------------------------


def test_mqtt_command_render(profiles: dict[str, DeviceProfile]) -> None:
    door = profiles["fr-door"]
    open_door = door.mqtt_command("open_door")
    assert open_door is not None
    assert open_door.result_timeout_s == 5
    assert open_door.render({"duration_s": 10}, command_id="c-1") == {
        "cmd": "open_door",
        "command_id": "c-1",
        "duration_s": 10,
    }
    set_mode = door.mqtt_command("set_mode")
    assert set_mode is not None
    assert set_mode.render({"mode": "locked"}, command_id="c-2")["mode"] == "locked"
    locker = profiles["parcel-locker"].mqtt_command("open_compartment")
    assert locker is not None
    assert locker.render({"compartment": 48}, command_id="c-3")["compartment"] == 48
    assert door.mqtt_command("nope") is None
    assert door.command("open_door") is None  # the CB-100 accessor sees no MQTT commands


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("open_door", {"duration_s": 0}, "outside 1.0..60.0"),
        ("open_door", {"duration_s": 61}, "outside 1.0..60.0"),
        ("open_door", {"duration_s": "10"}, "must be int"),
        ("open_door", {"duration_s": True}, "must be int"),
        ("open_door", {"duration_s": 1.5}, "must be int"),
        ("open_door", {}, "argument 'duration_s' is missing"),
        ("open_door", {"duration_s": 5, "force": True}, r"unexpected arguments \['force'\]"),
        ("set_mode", {"mode": "party"}, r"must be one of \['normal', 'locked', 'open'\]"),
        ("set_mode", {"mode": 1}, "must be str"),
    ],
)
def test_mqtt_command_bad_args(
    profiles: dict[str, DeviceProfile], name: str, args: dict[str, Any], message: str
) -> None:
    spec = profiles["fr-door"].mqtt_command(name)
    assert spec is not None
    with pytest.raises(MappingError, match=f"^{name}: .*{message}") as err:
        spec.render(args, command_id="c")
    assert err.value.reason == "bad_args"


def test_command_id_added_when_the_template_has_no_placeholder() -> None:
    text = text_of("parcel-locker").replace('command_id: "{command_id}", ', "")
    spec = parse_profile(text, "p").mqtt_command("open_compartment")
    assert spec is not None
    assert spec.render({"compartment": 1}, command_id="c-9") == {
        "cmd": "open",
        "compartment": 1,
        "command_id": "c-9",
    }
    assert spec.render({"compartment": 1}) == {"cmd": "open", "compartment": 1}


# --- transports ------------------------------------------------------------------------------


def test_transport_settings(profiles: dict[str, DeviceProfile]) -> None:
    rtu = profiles["water-meter"].transport
    assert isinstance(rtu, ModbusRtuTransport)
    assert rtu.frame_gap_s == pytest.approx(3.5 * 10 / 9600)
    assert rtu.timeout_s == pytest.approx(0.3)
    meter = profiles["dlt645-meter"].serial_line()
    assert (meter.baudrate, meter.bytesize, meter.parity, meter.stopbits) == (2400, 8, "even", 1)
    assert profiles["cb-100"].serial_line().frame_gap_s == pytest.approx(0.005)  # default 5 ms
    tcp = profiles["bin-sensor"].transport
    assert (tcp.kind, getattr(tcp, "port", None), getattr(tcp, "max_in_flight", None)) == (
        "modbus-tcp", 502, 32,
    )  # fmt: skip
    with pytest.raises(TypeError):
        profiles["bin-sensor"].serial_line()
    mqtt = profiles["fr-door"].transport
    assert isinstance(mqtt, MqttTransport)
    assert mqtt.qos == 1
    assert mqtt.event_subscription == "devices/+/events"
    assert mqtt.command_topic_for("gate-3") == "devices/gate-3/commands"
    assert mqtt.address_from_topic("devices/gate-3/events") == "gate-3"
    assert mqtt.address_from_topic("devices/gate-3/commands") is None
    assert mqtt.address_from_topic("devices/a/b/events") is None


# --- polled devices -------------------------------------------------------------------------


def test_modbus_points(profiles: dict[str, DeviceProfile]) -> None:
    water = profiles["water-meter"]
    assert water.modbus_points("input") == [
        Point("total_m3", 0, "u32", scale=0.001),
        Point("flow_m3h", 2, "u16", scale=0.01),
    ]
    assert water.modbus_points("holding") == []
    bin_sensor = profiles["bin-sensor"]
    assert [p.name for p in bin_sensor.modbus_points("holding")] == [
        "fill_pct", "temperature_c", "tilt_deg", "report_interval_s",
    ]  # fmt: skip
    poll = bin_sensor.polls[0]
    assert [p.name for p in bin_sensor.poll_points(poll)] == list(poll.points)
    spec = bin_sensor.modbus_point("temperature_c")
    assert spec is not None
    assert spec.to_point() == Point("temperature_c", 1, "i16", scale=0.1)
    assert not spec.writable


def test_write_request(profiles: dict[str, DeviceProfile]) -> None:
    bin_sensor = profiles["bin-sensor"]
    spec, registers = bin_sensor.write_request({"point": "report_interval_s", "value": 60})
    assert (spec.name, registers) == ("report_interval_s", [60])
    cases: list[tuple[dict[str, object], str]] = [
        ({"point": "fill_pct", "value": 5}, "not_writable"),
        ({"point": "report_interval_s", "value": 0}, "out_of_range"),
        ({"point": "report_interval_s", "value": "60"}, "bad_args"),
        ({"point": "report_interval_s", "value": True}, "bad_args"),
        ({"point": "report_interval_s", "value": 1.5}, "out_of_range"),  # not a u16
        ({"point": "nope", "value": 1}, "bad_args"),
        ({"point": "report_interval_s", "value": 1, "x": 1}, "bad_args"),
    ]
    for args, reason in cases:
        with pytest.raises(MappingError) as err:
            bin_sensor.write_request(args)
        assert err.value.reason == reason, args
    with pytest.raises(MappingError) as err:
        profiles["water-meter"].write_request({"point": "total_m3", "value": 1})
    assert err.value.reason == "unknown_command"


def test_dlt_points(profiles: dict[str, DeviceProfile]) -> None:
    meter = profiles["dlt645-meter"]
    energy, voltage = meter.dlt_points()
    assert (energy.name, energy.di, energy.digits, energy.decimals, energy.unit) == (
        "energy_kwh", 0x00010000, 8, 2, "kWh",
    )  # fmt: skip
    assert (voltage.name, voltage.di, voltage.digits, voltage.decimals, voltage.unit) == (
        "voltage_v", 0x02010100, 4, 1, "V",
    )  # fmt: skip
    assert (energy.byte_count, voltage.byte_count, energy.signed) == (4, 2, False)
    assert voltage.in_limits(230.1) and not voltage.in_limits(600)
    assert meter.modbus_points("holding") == []


def test_cron_poll_trigger_fires_every_full_hour(profiles: dict[str, DeviceProfile]) -> None:
    poll = profiles["dlt645-meter"].polls[0]
    trigger = poll.trigger()
    assert isinstance(trigger, CronTrigger)
    assert str(trigger.timezone) == "Asia/Shanghai"
    after = datetime(2024, 5, 1, 10, 30, tzinfo=SHANGHAI)
    assert poll.next_fire_times(after, 3) == [
        datetime(2024, 5, 1, 11, 0, tzinfo=SHANGHAI),
        datetime(2024, 5, 1, 12, 0, tzinfo=SHANGHAI),
        datetime(2024, 5, 1, 13, 0, tzinfo=SHANGHAI),
    ]
    on_the_hour = datetime(2024, 5, 1, 11, 0, tzinfo=SHANGHAI)
    assert poll.next_fire_times(on_the_hour, 1) == [datetime(2024, 5, 1, 12, 0, tzinfo=SHANGHAI)]
    assert poll.interval_hint_s == 3600
    utc = poll.trigger("UTC").get_next_fire_time(None, after)
    assert utc == datetime(2024, 5, 1, 3, 0, tzinfo=ZoneInfo("UTC"))


def test_cron_respects_timezone_for_daily_polls() -> None:
    text = text_of("dlt645-meter").replace('"0 * * * *"', '"30 2 * * mon-fri"')
    poll = parse_profile(text, "p").polls[0]
    after = datetime(2024, 5, 3, 3, 0, tzinfo=SHANGHAI)  # a Friday, after 02:30
    assert poll.next_fire_times(after, 1) == [datetime(2024, 5, 6, 2, 30, tzinfo=SHANGHAI)]
    assert poll.interval_hint_s == 86_400


def test_interval_poll_trigger(profiles: dict[str, DeviceProfile]) -> None:
    poll = profiles["water-meter"].polls[0]
    trigger = poll.trigger()
    assert isinstance(trigger, IntervalTrigger)
    assert trigger.interval.total_seconds() == 10
    assert poll.interval_hint_s == 10
    assert profiles["bin-sensor"].polls[0].interval_hint_s == 5


# --- addresses --------------------------------------------------------------------------------


def test_addresses_and_device_ids(profiles: dict[str, DeviceProfile]) -> None:
    bad = [
        ("water-meter", "0"), ("water-meter", "248"), ("water-meter", "x"),
        ("bin-sensor", "256"), ("dlt645-meter", "12345678"), ("dlt645-meter", "00001234567A"),
        ("fr-door", "gate/3"), ("fr-door", "+"), ("fr-door", ""), ("cb-100", "4294967296"),
    ]  # fmt: skip
    for name, address in bad:
        assert profiles[name].address_problem(address) is not None, (name, address)
        with pytest.raises(ValueError, match=f"{name}: address"):
            profiles[name].device_id_for_address(address)
    assert profiles["bin-sensor"].device_id_for_address("0") == "bin-0"
    found = {
        (name, device_id): address_from_device_id(profiles[name], device_id)
        for name, device_id in [
            ("water-meter", "wm-7"), ("water-meter", "wm-300"), ("water-meter", "bin-7"),
            ("dlt645-meter", "meter-000012345678"), ("fr-door", "door-gate-3"),
            ("fr-door", "door-"), ("cb-100", "cb100-77626"),
        ]
    }  # fmt: skip
    assert found == {
        ("water-meter", "wm-7"): "7",
        ("water-meter", "wm-300"): None,
        ("water-meter", "bin-7"): None,
        ("dlt645-meter", "meter-000012345678"): "000012345678",
        ("fr-door", "door-gate-3"): "gate-3",
        ("fr-door", "door-"): None,
        ("cb-100", "cb100-77626"): "77626",
    }
