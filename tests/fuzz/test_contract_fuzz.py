"""Every decoder of the edge ↔ hub contract, fed hostile input.

The property: a decoder returns a value or raises :class:`ContractError` (which both sides
quarantine or count); any other exception would escape ingest's per-message handling and,
on the hub, leave the message un-PUBACKed to be redelivered forever. Valid messages round
trip exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import (
    Ack,
    Command,
    CommandResult,
    ContractError,
    EdgeStatus,
    Event,
    EventBatch,
    HubStatus,
    Lane,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

AT = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
EVENT = Event(7, "cb100-77626", "sos", Lane.ALARM, AT, {"battery_pct": 80})
VALID: dict[str, tuple[Callable[[bytes], Any], bytes]] = {
    "event batch": (EventBatch.decode, EventBatch("edge-1", "inc-1", (EVENT,)).encode()),
    "ack": (Ack.decode, Ack("edge-1", "inc-1", (1, 2, 3)).encode()),
    "command": (
        Command.decode,
        Command("cmd-1", "cb100-77626", "button_feedback", {"code": "received"}, AT, 30.0).encode(),
    ),
    "command result": (
        CommandResult.decode,
        CommandResult("cmd-1", "cb100-77626", "ok", "").encode(),
    ),
    "edge status": (EdgeStatus.decode, EdgeStatus("edge-1", True, AT, {"depth": 3}).encode()),
    "hub status": (HubStatus.decode, HubStatus("hub", True, AT).encode()),
}
DECODERS = pytest.mark.parametrize("name", sorted(VALID))


def _decode_or_contract_error(name: str, raw: bytes) -> None:
    decode, _ = VALID[name]
    try:
        decode(raw)
    except ContractError as err:
        assert str(err), "a contract error must say what is wrong"


@DECODERS
@FUZZ
@given(raw=st.binary(max_size=300))
def test_random_bytes(name: str, raw: bytes) -> None:
    _decode_or_contract_error(name, raw)


@DECODERS
@FUZZ
@given(value=json_values)
def test_any_json_value(name: str, value: Any) -> None:
    _decode_or_contract_error(name, json.dumps(value).encode())


@DECODERS
@FUZZ
@given(data=st.data())
def test_valid_message_with_one_field_replaced_or_removed(name: str, data: st.DataObject) -> None:
    obj = json.loads(VALID[name][1])
    paths = list(_paths(obj))
    path = data.draw(st.sampled_from(paths))
    parent = obj
    for part in path[:-1]:
        parent = parent[part]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(json_values)
    _decode_or_contract_error(name, json.dumps(obj).encode())


@DECODERS
@FUZZ
@given(cut=st.integers(min_value=0, max_value=400), junk=st.binary(max_size=5))
def test_truncated_or_spliced(name: str, cut: int, junk: bytes) -> None:
    raw = VALID[name][1]
    _decode_or_contract_error(name, raw[: cut % (len(raw) + 1)] + junk)


@DECODERS
def test_hostile_shapes(name: str) -> None:
    for raw in (
        b'{"v":1,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # deeper than the parser
        b"{" * 50_000,
        b'{"v":1,"seq":' + b"9" * 5000 + b"}",  # a 5,000-digit number
        b" " * (1_048_576 + 1),  # over the size limit
        b'{"v":1,"edge_id":"\xff\xfe"}',  # not UTF-8
        b"\x00" * 64,
    ):
        _decode_or_contract_error(name, raw)


@DECODERS
def test_valid_messages_still_decode(name: str) -> None:
    decode, raw = VALID[name]
    decoded = decode(raw)
    assert decoded.encode() == raw


# Ids carry no NUL (U+0000): the contract refuses one, as PostgreSQL cannot store it; data may.
# No lone surrogates either (st.text's default): they have no UTF-8 form, so no wire message
# can hold one (st.characters, unlike st.text, generates them unless told not to).
_NO_NUL = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))


@FUZZ
@given(
    seqs=st.lists(st.integers(min_value=0, max_value=2**63 - 1), min_size=1, max_size=20),
    kind=st.text(_NO_NUL, min_size=1, max_size=64),
    device=st.text(_NO_NUL, min_size=1, max_size=200),
    data=st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10), max_size=5),
)
def test_event_batch_round_trip(
    seqs: list[int], kind: str, device: str, data: dict[str, Any]
) -> None:
    events = tuple(Event(s, device, kind, Lane.NORMAL, AT, data) for s in seqs)
    batch = EventBatch("edge-1", "inc", events)
    assert EventBatch.decode(batch.encode()) == batch


@FUZZ
@given(ttl=st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.booleans())
def test_command_ttl_is_a_bounded_finite_number(ttl: Any) -> None:
    raw = json.loads(VALID["command"][1])
    raw["ttl_s"] = ttl
    try:
        command = Command.decode(json.dumps(raw).encode())
    except ContractError:
        return
    assert command.ttl_s is not None
    assert 0 <= command.ttl_s <= 86_400


@FUZZ
@given(device=st.text(min_size=1, max_size=20).map(lambda t: t[:10] + "\x00" + t[10:]))
def test_an_id_with_a_nul_character_is_refused(device: str) -> None:
    batch = EventBatch("edge-1", "inc", (Event(1, device, "sos", Lane.ALARM, AT, {}),))
    with pytest.raises(ContractError, match="NUL"):
        EventBatch.decode(batch.encode())


def test_integers_beyond_64_bits_are_refused_not_passed_to_the_database() -> None:
    raw = json.loads(VALID["ack"][1])
    raw["seqs"] = [2**63]
    with pytest.raises(ContractError, match="64-bit"):
        Ack.decode(json.dumps(raw).encode())


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Any:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))
