import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from contract import (
    Ack,
    Command,
    CommandResult,
    ContractError,
    EdgeStatus,
    Event,
    EventBatch,
    Lane,
    topics,
)


def _event(seq: int = 1) -> Event:
    return Event(
        seq,
        "cb100-77626",
        "sos",
        Lane.ALARM,
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        {"frame_seq": 7},
    )


def test_batch_round_trip() -> None:
    batch = EventBatch("edge-1", "abc", (_event(1), _event(2)))
    assert EventBatch.decode(batch.encode()) == batch


def test_other_messages_round_trip() -> None:
    ack = Ack("edge-1", "abc", (1, 2, 3))
    assert Ack.decode(ack.encode()) == ack
    deadline = datetime(2026, 1, 1, 8, 0, 5, tzinfo=UTC)
    cmd = Command(
        "c1", "cb100-1", "button_feedback", {"code": "received", "ref_seq": 7}, deadline, 5.0
    )
    assert Command.decode(cmd.encode()) == cmd
    res = CommandResult("c1", "cb100-1", "ok", "")
    assert CommandResult.decode(res.encode()) == res
    st = EdgeStatus("edge-1", True, datetime(2026, 1, 1, tzinfo=UTC), {"depth": 3})
    assert EdgeStatus.decode(st.encode()) == st


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"\xff\xfe", "UTF-8 JSON"),
        (b"[]", "JSON object"),
        (b'{"v": 2}', "version"),
        (b'{"v":1,"edge_id":"e","incarnation":"i","events":[]}', "non-empty list"),
        (b'{"v":1,"edge_id":"e","incarnation":"i","events":[{"seq":-1}]}', "lane"),
        (
            b'{"v":1,"edge_id":"e","incarnation":"i","events":[{"seq":1,"lane":"alarm",'
            b'"device_id":"d","kind":"sos","at":"yesterday"}]}',
            "ISO-8601",
        ),
        (
            b'{"v":1,"edge_id":"e","incarnation":"i","events":[{"seq":1,"lane":"alarm",'
            b'"device_id":"d","kind":"sos","at":"2026-01-01T00:00:00"}]}',
            "time zone",
        ),
        (b"x" * 2_000_000, "exceeds"),
    ],
)
def test_bad_batches_say_why(raw: bytes, needle: str) -> None:
    with pytest.raises(ContractError, match=needle):
        EventBatch.decode(raw)


def test_topics() -> None:
    assert topics.events("e1", Lane.TELEMETRY) == "community/v1/edge/e1/events/telemetry"
    assert topics.parse_edge_topic("community/v1/edge/e1/events/alarm") == ("e1", "events/alarm")
    assert topics.lane_of_events_topic("events/alarm") == Lane.ALARM
    for bad in ("", "a/b", "a+", "#"):
        with pytest.raises(ContractError):
            topics.acks(bad)
    with pytest.raises(ContractError):
        topics.parse_edge_topic("other/v1/edge/e1/acks")
    with pytest.raises(ContractError):
        topics.lane_of_events_topic("events/bogus")


def test_batch_follows_and_ack_gap_round_trip_and_are_checked() -> None:
    batch = EventBatch("edge-1", "abc", (_event(5), _event(6)), follows=4)
    assert EventBatch.decode(batch.encode()) == batch
    old = json.loads(EventBatch("edge-1", "abc", (_event(5),)).encode())
    del old["follows"]  # an edge from before the field: read as "no predecessor named"
    assert EventBatch.decode(json.dumps(old)).follows == 0
    with pytest.raises(ContractError, match="follows"):
        EventBatch.decode(EventBatch("edge-1", "abc", (_event(5),), follows=5).encode())
    gap = Ack("edge-1", "abc", (), gap=Lane.ALARM)
    assert Ack.decode(gap.encode()) == gap
    with pytest.raises(ContractError, match=r"ack\.gap"):
        Ack.decode(b'{"v":1,"edge_id":"e","incarnation":"i","seqs":[],"gap":"urgent"}')


def test_a_command_without_a_deadline_is_neither_sent_nor_taken() -> None:
    with pytest.raises(ContractError, match="deadline"):
        Command("c1", "door-1", "open_door", {"duration_s": 3}).encode()
    deadline = datetime(2026, 1, 1, tzinfo=UTC)
    wire = json.loads(Command("c1", "door-1", "open_door", {}, deadline, 5.0).encode())
    for field, value in (("deadline", None), ("ttl_s", None), ("ttl_s", -1), ("ttl_s", 1e9)):
        bad = dict(wire)
        if value is None:
            del bad[field]
        else:
            bad[field] = value
        with pytest.raises(ContractError, match=field):
            Command.decode(json.dumps(bad).encode())


def test_expired_is_a_command_result_status() -> None:
    res = CommandResult("c1", "door-1", "expired", "arrived 3.0 s after its deadline")
    assert CommandResult.decode(res.encode()) == res


_BATCH = (
    '{"v":1,"edge_id":"e","incarnation":"i","events":[{"seq":%s,"device_id":"d","kind":"k",'
    '"lane":"%s","at":"%s","data":%s}]%s}'
)


@pytest.mark.parametrize(
    ("seq", "lane", "at", "data", "tail"),
    [
        ("1", "alarm", "2026-01-01T00:00:00.000Z", f'{{"x":{2**70}}}', ""),
        ("1", "telemetry", "2026-01-01T08:00:00+08:00", '{"v":1.5,"名":"值"}', ',"follows":0'),
        ("2", "normal", "2026-01-01T00:00:00Z", "{}", ',"follows":1'),
        ("1.0", "alarm", "2026-01-01T00:00:00Z", "{}", ""),
        ("true", "alarm", "2026-01-01T00:00:00Z", "{}", ""),
        (str(2**63), "alarm", "2026-01-01T00:00:00Z", "{}", ""),
        ("1", "ALARM", "2026-01-01T00:00:00Z", "{}", ""),  # any case, on the checked path
        ("1", "alarm", "2026-01-01T00:00:00", "{}", ""),
        ("1", "alarm", "yesterday", "{}", ""),
        ("1", "alarm", "2026-01-01T00:00:00Z", '{"a":1e400}', ""),
        ("1", "alarm", "2026-01-01T00:00:00Z", '{"a":NaN}', ""),
        ("1", "alarm", "2026-01-01T00:00:00Z", "null", ""),
        ("5", "alarm", "2026-01-01T00:00:00Z", "{}", ',"follows":5'),
        ("1", "alarm", "2026-01-01T00:00:00Z", "{}", ',"follows":null'),
        ("1", "alarm", "2026-01-01T00:00:00Z", "{}", ',"v":1.0'),
        ("1", "alarm", "2026-01-01T00:00:00Z", "{}", ',"lane_acks":true'),
        ("1", "alarm", "2026-01-01T00:00:00Z", "{}", ',"lane_acks":false'),
        ("1", "alarm", "2026-01-01T00:00:00Z", "{}", ',"lane_acks":1'),
    ],
)
def test_the_fast_batch_decoder_agrees_with_the_checked_one(
    seq: str, lane: str, at: str, data: str, tail: str
) -> None:
    """msgspec's typed path (``EventBatch.decode``) takes nothing the hand-written checks
    refuse, and reads what it takes exactly as they do."""
    raw = (_BATCH % (seq, lane, at, data, tail)).encode()
    try:
        checked: EventBatch | str = EventBatch._decode_checked(raw)
    except ContractError as err:
        checked = str(err)
    try:
        decoded: EventBatch | str = EventBatch.decode(raw)
    except ContractError as err:
        decoded = str(err)
    assert repr(decoded) == repr(checked)  # repr: NaN in data is not equal to itself


def test_every_field_of_a_batch_survives_the_fast_decoder() -> None:
    """msgspec ignores a field its schema lacks: a field added to ``EventBatch`` but not to
    the wire schema would silently read as its default (``lane_acks`` once did)."""
    batch = EventBatch.decode((_BATCH % ("3", "alarm", "2026-01-01T00:00:00Z", "{}", "")).encode())
    full = replace(batch, follows=2, lane_acks=True)
    assert EventBatch.decode(full.encode()) == full
