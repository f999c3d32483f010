"""Wire messages between edge and hub, and their JSON encoding.

Delivery rule (see docs/contract.md): an event is identified by ``(edge_id, incarnation,
seq)``. The edge keeps it in its outbox until an :class:`Ack` naming that seq arrives; the
hub sends the ack only after its own database commit. The broker's PUBACK means nothing to
either side. ``incarnation`` changes only when an edge's outbox database is created anew,
so a wiped edge can never have its fresh seq 1 mistaken for an old duplicate.

Decoding is strict and hand-written: anything that does not match raises
:class:`ContractError` with a readable reason, which the receiver counts and quarantines.
Event batches (every event, at 20,000/s) first try a typed msgspec schema that accepts a
subset of the same rules in C; whatever it refuses is decided, and worded, by the
hand-written checks (``EventBatch.decode``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Annotated, Any, Literal

import msgspec

MAX_MESSAGE_BYTES = 1_048_576  # larger payloads are refused before parsing
MAX_COMMAND_TTL_S = 86_400.0  # a command's time to live is at most a day


class ContractError(ValueError):
    """A message that does not follow the contract. The text says which field and why."""


class Lane(IntEnum):
    """Priority class of an event. Lower value = more urgent; the outbox drains in this order."""

    ALARM = 0  # SOS, fall: committed with fsync at once, sent ahead of everything
    NORMAL = 1  # service requests, cancels, presence, low battery, device on/offline
    TELEMETRY = 2  # heartbeats, readings


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(t: datetime) -> str:
    if t.tzinfo is None:
        raise ContractError("timestamps must be timezone-aware")
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise ContractError(f"{where}: expected an ISO-8601 time string")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise ContractError(f"{where}: {value!r} is not an ISO-8601 time") from None
    if t.tzinfo is None:
        raise ContractError(f"{where}: time {value!r} has no time zone")
    return t.astimezone(UTC)


def _loads(raw: bytes | str, what: str) -> dict[str, Any]:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ContractError(f"{what}: message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        obj = json.loads(raw)
    except ValueError as err:  # bad UTF-8 or JSON, or an integer of over 4,300 digits
        raise ContractError(f"{what}: not valid UTF-8 JSON ({err})") from None
    except RecursionError:  # "[[[[…" nested beyond the parser's stack: hostile, not ours
        raise ContractError(f"{what}: JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise ContractError(f"{what}: expected a JSON object")
    if obj.get("v") != 1:
        raise ContractError(f"{what}: unsupported contract version {obj.get('v')!r} (want 1)")
    return obj


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _str(obj: dict[str, Any], key: str, where: str, *, max_len: int = 200) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ContractError(f"{where}.{key}: expected a non-empty string of at most {max_len}")
    if "\x00" in value:  # no id has one, and PostgreSQL's text types cannot store it
        raise ContractError(f"{where}.{key}: a NUL character (\\u0000) is not allowed")
    return value


def _int(obj: dict[str, Any], key: str, where: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise ContractError(f"{where}.{key}: expected a non-negative 64-bit integer")
    return value


def _bool(obj: dict[str, Any], key: str, where: str) -> bool:
    value = obj.get(key)
    if not isinstance(value, bool):
        raise ContractError(f"{where}.{key}: expected true or false")
    return value


def _dict(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = obj.get(key, {})
    if not isinstance(value, dict):
        raise ContractError(f"{where}.{key}: expected an object")
    return value


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a device said, as decoded by the edge through the device's profile."""

    seq: int  # edge outbox sequence: unique and increasing per (edge, incarnation)
    device_id: str  # e.g. "cb100-77626"
    kind: str  # e.g. "sos", "heartbeat", "service_request"
    lane: Lane
    occurred_at: datetime  # when the edge received it, UTC
    data: dict[str, Any] = field(default_factory=dict)  # decoded fields, e.g. battery_pct

    def to_obj(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "device_id": self.device_id,
            "kind": self.kind,
            "lane": self.lane.name.lower(),
            "at": format_time(self.occurred_at),
            "data": self.data,
        }

    @classmethod
    def from_obj(cls, obj: object, where: str) -> Event:
        if not isinstance(obj, dict):
            raise ContractError(f"{where}: expected an object")
        lane_name = obj.get("lane")
        try:
            lane = Lane[str(lane_name).upper()]
        except KeyError:
            raise ContractError(f"{where}.lane: unknown lane {lane_name!r}") from None
        return cls(
            seq=_int(obj, "seq", where),
            device_id=_str(obj, "device_id", where),
            kind=_str(obj, "kind", where, max_len=64),
            lane=lane,
            occurred_at=parse_time(obj.get("at"), f"{where}.at"),
            data=_dict(obj, "data", where),
        )


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Events of one lane from one edge, in outbox order.

    ``follows`` is the seq of the lane's event the edge sent just before this batch, or 0
    when the batch starts with the lane's oldest unacknowledged event (after a start, a
    reconnect or a rewind). The hub commits a batch only when it already has ``follows``:
    a batch whose predecessor was lost on the way (a broker killed with messages queued)
    is refused rather than committed ahead of it, so commit order is seq order per lane
    whatever the broker does. A batch with ``follows == 0`` is always safe: every earlier
    event of the lane has been acknowledged, hence committed.

    ``lane_acks`` (alarm lane only, issue #13): the edge sent this batch over its alarm
    link and hears acks there, so the hub acks it on ``topics.alarm_acks``. Absent (an older
    edge, or alarms sent over the bulk link while the alarm link is down) it is acked on
    ``topics.acks`` as before; an older hub ignores the field and acks there too, which the
    edge's bulk link still hears.
    """

    edge_id: str
    incarnation: str
    events: tuple[Event, ...]
    follows: int = 0
    lane_acks: bool = False

    def encode(self) -> bytes:
        obj: dict[str, Any] = {
            "v": 1,
            "edge_id": self.edge_id,
            "incarnation": self.incarnation,
            "follows": self.follows,
            "events": [e.to_obj() for e in self.events],
        }
        if self.lane_acks:
            obj["lane_acks"] = True
        return _dumps(obj)

    @classmethod
    def decode(cls, raw: bytes | str) -> EventBatch:
        """Decode and check a batch; raises ContractError naming the field and why.

        The common case goes through msgspec's typed decoder (parsing and field checks in
        C, about a fifth of the CPU of ``json`` plus the checks below, docs/benchmarks.md);
        whatever it refuses (or that it could read more leniently than the rules below)
        takes the hand-written path, which alone decides and words the error.
        """
        if len(raw) <= MAX_MESSAGE_BYTES:
            fast = _fast_batch(raw)
            if fast is not None:
                return fast
        return cls._decode_checked(raw)

    @classmethod
    def _decode_checked(cls, raw: bytes | str) -> EventBatch:
        obj = _loads(raw, "event batch")
        events = obj.get("events")
        if not isinstance(events, list) or not events:
            raise ContractError("event batch.events: expected a non-empty list")
        batch = cls(
            edge_id=_str(obj, "edge_id", "event batch"),
            incarnation=_str(obj, "incarnation", "event batch", max_len=64),
            events=tuple(Event.from_obj(e, f"events[{i}]") for i, e in enumerate(events)),
            follows=_int(obj, "follows", "event batch") if "follows" in obj else 0,
            lane_acks=_bool(obj, "lane_acks", "event batch") if "lane_acks" in obj else False,
        )
        if batch.follows and batch.follows >= batch.events[0].seq:
            raise ContractError("event batch.follows: must be below the first event's seq")
        return batch


@dataclass(frozen=True, slots=True)
class Ack:
    """End-to-end acknowledgement: the hub has committed these seqs (or already had them).

    ``gap`` names a lane in which the hub refused a batch because it lacks the event the
    batch follows (see :attr:`EventBatch.follows`): the edge should resend that lane from
    its oldest unacknowledged event now rather than wait for the ack timeout.
    """

    edge_id: str
    incarnation: str
    seqs: tuple[int, ...]
    gap: Lane | None = None

    def encode(self) -> bytes:
        obj: dict[str, Any] = {
            "v": 1,
            "edge_id": self.edge_id,
            "incarnation": self.incarnation,
            "seqs": list(self.seqs),
        }
        if self.gap is not None:
            obj["gap"] = self.gap.name.lower()
        return _dumps(obj)

    @classmethod
    def decode(cls, raw: bytes | str) -> Ack:
        obj = _loads(raw, "ack")
        seqs = obj.get("seqs")
        if not isinstance(seqs, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in seqs
        ):
            raise ContractError("ack.seqs: expected a list of non-negative 64-bit integers")
        gap: Lane | None = None
        if "gap" in obj:
            try:
                gap = Lane[str(obj["gap"]).upper()]
            except KeyError:
                raise ContractError(f"ack.gap: unknown lane {obj['gap']!r}") from None
        return cls(
            edge_id=_str(obj, "edge_id", "ack"),
            incarnation=_str(obj, "incarnation", "ack", max_len=64),
            seqs=tuple(seqs),
            gap=gap,
        )


@dataclass(frozen=True, slots=True)
class Command:
    """Hub → edge: do something to a device, e.g. tell a call button "help is coming".

    Every command on the wire carries its deadline twice (issue #11): ``deadline``, the
    absolute time (hub clock) after which it must not be executed, and ``ttl_s``, the
    seconds that were left when the hub published it. The edge measures ``ttl_s`` from
    receipt on its own monotonic clock (immune to clock skew) and also refuses a command
    whose ``deadline`` has passed by its own clock plus a tolerance (which catches one
    that waited in the broker while the edge was away); see docs/security.md. Inside the
    hub a command may lack them until the dispatcher publishes it; :meth:`encode` refuses
    such a command.
    """

    command_id: str
    device_id: str
    name: str  # e.g. "button_feedback"
    args: dict[str, Any] = field(default_factory=dict)
    deadline: datetime | None = None
    ttl_s: float | None = None

    def encode(self) -> bytes:
        if self.deadline is None or self.ttl_s is None:
            raise ContractError(f"command {self.command_id}: no deadline; not sent")
        return _dumps(
            {
                "v": 1,
                "command_id": self.command_id,
                "device_id": self.device_id,
                "name": self.name,
                "args": self.args,
                "deadline": format_time(self.deadline),
                "ttl_s": round(self.ttl_s, 3),
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Command:
        obj = _loads(raw, "command")
        ttl = obj.get("ttl_s")
        if (
            not isinstance(ttl, int | float)
            or isinstance(ttl, bool)
            or not math.isfinite(ttl)
            or not 0 <= ttl <= MAX_COMMAND_TTL_S
        ):
            raise ContractError(
                f"command.ttl_s: expected a number of seconds from 0 to {MAX_COMMAND_TTL_S:g}"
            )
        return cls(
            command_id=_str(obj, "command_id", "command", max_len=64),
            device_id=_str(obj, "device_id", "command"),
            name=_str(obj, "name", "command", max_len=64),
            args=_dict(obj, "args", "command"),
            deadline=parse_time(obj.get("deadline"), "command.deadline"),
            ttl_s=float(ttl),
        )


CommandStatus = Literal["ok", "device_error", "timeout", "rejected", "expired"]
_COMMAND_STATUSES = ("ok", "device_error", "timeout", "rejected", "expired")


@dataclass(frozen=True, slots=True)
class CommandResult:
    """Edge → hub: what became of a :class:`Command`."""

    command_id: str
    device_id: str
    status: CommandStatus
    detail: str = ""

    def encode(self) -> bytes:
        return _dumps(
            {
                "v": 1,
                "command_id": self.command_id,
                "device_id": self.device_id,
                "status": self.status,
                "detail": self.detail,
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> CommandResult:
        obj = _loads(raw, "command result")
        status = obj.get("status")
        if status not in _COMMAND_STATUSES:
            raise ContractError(f"command result.status: expected one of {_COMMAND_STATUSES}")
        detail = obj.get("detail", "")
        return cls(
            command_id=_str(obj, "command_id", "command result", max_len=64),
            device_id=_str(obj, "device_id", "command result"),
            status=status,
            # free text: a NUL (which PostgreSQL's text cannot store) becomes U+FFFD
            detail=(detail if isinstance(detail, str) else str(detail)).replace("\x00", "\ufffd"),
        )


@dataclass(frozen=True, slots=True)
class EdgeStatus:
    """Retained on the edge's status topic; the broker publishes ``online=False`` as last will."""

    edge_id: str
    online: bool
    at: datetime
    info: dict[str, Any] = field(default_factory=dict)  # outbox depth, bad frames, version

    def encode(self) -> bytes:
        return _dumps(
            {
                "v": 1,
                "edge_id": self.edge_id,
                "online": self.online,
                "at": format_time(self.at),
                "info": self.info,
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> EdgeStatus:
        obj = _loads(raw, "edge status")
        return cls(
            edge_id=_str(obj, "edge_id", "edge status"),
            online=_bool(obj, "online", "edge status"),
            at=parse_time(obj.get("at"), "edge status.at"),
            info=_dict(obj, "info", "edge status"),
        )


@dataclass(frozen=True, slots=True)
class HubStatus:
    """Retained on ``topics.HUB_STATUS``; the broker publishes ``online=False`` as last will.

    The hub publishes ``online=True`` right after (re)subscribing, so an edge that sees it
    knows that what it sends from now on is heard, and resends what is unacknowledged.
    """

    hub_id: str
    online: bool
    at: datetime

    def encode(self) -> bytes:
        return _dumps(
            {"v": 1, "hub_id": self.hub_id, "online": self.online, "at": format_time(self.at)}
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> HubStatus:
        obj = _loads(raw, "hub status")
        return cls(
            hub_id=_str(obj, "hub_id", "hub status"),
            online=_bool(obj, "online", "hub status"),
            at=parse_time(obj.get("at"), "hub status.at"),
        )


# -- the fast path of EventBatch.decode ------------------------------------------------------
#
# A typed schema that accepts a subset of what the hand-written checks accept (never more):
# a message it rejects is decoded again by those checks, for their wording. Times stay
# strings here and go through ``parse_time`` like the slow path's, so both read a time
# identically; lane names must be lower case (the slow path takes any case).

_Seq = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
_Short = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _WireEvent(msgspec.Struct, frozen=True):
    seq: _Seq
    device_id: _Name
    kind: _Short
    lane: Literal["alarm", "normal", "telemetry"]
    at: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class _WireBatch(msgspec.Struct, frozen=True):
    v: Literal[1]
    edge_id: _Name
    incarnation: _Short
    events: Annotated[list[_WireEvent], msgspec.Meta(min_length=1)]
    follows: _Seq = 0
    lane_acks: bool = False  # every field of EventBatch must be here: unknown ones are ignored


_BATCH_DECODER = msgspec.json.Decoder(_WireBatch)
_LANES = {lane.name.lower(): lane for lane in Lane}


def _fast_batch(raw: bytes | str) -> EventBatch | None:
    """The batch, or None when the hand-written path must decide (and word the error)."""
    nul = b"\\u0000" in raw if isinstance(raw, bytes) else "\\u0000" in raw
    if nul:
        return None  # a NUL in an id is refused there (one scan of the bytes, in C)
    try:
        wire = _BATCH_DECODER.decode(raw)
        if wire.follows and wire.follows >= wire.events[0].seq:
            return None
        return EventBatch(
            wire.edge_id,
            wire.incarnation,
            tuple(
                Event(e.seq, e.device_id, e.kind, _LANES[e.lane], _time(e.at), e.data)
                for e in wire.events
            ),
            wire.follows,
            wire.lane_acks,
        )
    except (msgspec.MsgspecError, ValueError, TypeError, RecursionError):
        return None


def _time(value: str) -> datetime:
    t = datetime.fromisoformat(value)
    if t.tzinfo is None:
        raise ValueError("no time zone")  # the slow path words it
    return t.astimezone(UTC)
