"""The declarative device profile: what a device model says and how it maps to events.

A profile is data, not code, so that supporting a new device model on an existing
transport and codec is a reviewed YAML file rather than a new driver (the EdgeX "device
profile" idea). Format v2 (``docs/device_profiles.md``): identity, ``transport`` (a union
on ``kind``: ``serial``, ``modbus-rtu``, ``modbus-tcp``, ``mqtt``), ``codec`` (``cb100``,
``dlt645``, ``modbus``, ``json``), a device-id template, ``supervision``, and by codec
``points`` + ``polls`` (polled devices), ``events`` (devices that speak on their own) and
``commands``.

Every model forbids unknown keys, so a typo in a profile is an error at load time, never
a silently ignored setting. Cross-field rules raise :func:`rule_error` errors that carry
the path of the offending field, so the loader can say
``events[3].frame_type: duplicate frame type 0x02 (also events[1])``.

API for drivers (all pure, nothing here does I/O):

* ``profile.transport`` – :class:`SerialTransport`, :class:`ModbusRtuTransport`,
  :class:`ModbusTcpTransport` or :class:`MqttTransport` (``frame_gap_s``, ``timeout_s``,
  ``event_topic_for(address)``, ``event_subscription``, ``address_from_topic(topic)``…);
  :meth:`DeviceProfile.serial_line` gives the line settings of a serial-like transport.
* ``profile.device_id_for_address(address) -> str`` (ValueError for an address the
  transport cannot have; :meth:`DeviceProfile.address_problem` says why);
  ``device_id_for(serial: int)`` for CB-100.
* ``profile.supervision.heartbeat_interval_s`` (None: no heartbeats expected) and
  ``profile.supervision.offline_after`` (missed heartbeats or failed polls in a row).
* Modbus: ``profile.modbus_point_specs()`` (:class:`ModbusPointSpec`, ``.to_point()`` →
  ``profiles.registers.Point``), ``profile.modbus_points("holding") ->
  list[Point]``, ``profile.modbus_point(name)``, ``profile.write_request(args)`` (checks a
  ``write_point`` command's ``{"point", "value"}``: MappingError ``bad_args`` /
  ``not_writable`` / ``out_of_range``).
* DL/T 645: ``profile.dlt_points()`` (:class:`DltPointSpec`: name, di, digits, decimals,
  signed, unit, min, max, ``byte_count``).
* Polls: ``profile.polls`` (:class:`PollSpec`: points, kind, ``contract_lane``,
  ``trigger(timezone="Asia/Shanghai")`` → APScheduler ``IntervalTrigger``/``CronTrigger``,
  ``interval_hint_s``, ``next_fire_times(after, n)``); ``profile.poll_points(poll)``.
* JSON: ``profile.json_events()`` and ``profile.json_event_for(payload)``
  (:class:`JsonEventRule`: ``matches(payload)``, ``extract(payload) -> dict``,
  ``dedupe_key(payload)``, ``contract_lane``); ``profile.mqtt_command(name)``
  (:class:`MqttCommandSpec`: ``render(args, command_id=…) -> dict``,
  ``result_timeout_s``); :func:`profiles.json_rules.parse_command_reply`.
* Commands: ``profile.command_deadline_s(name)`` (each command's ``deadline_s``).
* CB-100: ``profile.event_for(frame_type)``, ``profile.command(name)``.

Payload and argument problems raise :class:`profiles.errors.MappingError` with a
``reason`` (``missing_field``, ``bad_type``, ``out_of_range``, ``bad_args``, …).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    Tag,
    model_validator,
)

from contract import Lane
from profiles.common import (
    DEFAULT_COMMAND_DEADLINE_S,
    RULE_ERROR,
    UNION_TAGS,
    DeadlineSeconds,
    Identifier,
    LaneName,
    Strict,
    check_limits,
    first_duplicate,
    lane_of,
    rule_error,
)
from profiles.errors import MappingError
from profiles.json_rules import JsonEventRule, MqttCommandSpec
from profiles.points import DltPointSpec, ModbusCommandSpec, ModbusPointSpec, PollSpec
from profiles.registers import Point, RegisterMapError, encode, find_overlaps
from profiles.transports import (
    ADDRESS_PLACEHOLDER,
    TRANSPORT_KINDS,
    ModbusRtuTransport,
    ModbusTcpTransport,
    MqttTransport,
    SerialTransport,
    Transport,
)

__all__ = [
    "RULE_ERROR",
    "UNION_TAGS",
    "CommandSpec",
    "DeviceProfile",
    "DltPointSpec",
    "EventRule",
    "FieldType",
    "Identity",
    "JsonEventRule",
    "LaneName",
    "ModbusCommandSpec",
    "ModbusPointSpec",
    "ModbusRtuTransport",
    "ModbusTcpTransport",
    "MqttCommandSpec",
    "MqttTransport",
    "PayloadField",
    "PollSpec",
    "SerialTransport",
    "Supervision",
    "rule_error",
]

Codec = Literal["cb100", "dlt645", "modbus", "json"]
FieldType = Literal[
    "uint8", "int8",
    "uint16be", "uint16le", "int16be", "int16le",
    "uint32be", "uint32le", "int32be", "int32le",
]  # fmt: skip
Byte = Annotated[StrictInt, Field(ge=0, le=0xFF)]

#: Which transport kinds each codec can run on.
CODEC_TRANSPORTS: dict[str, tuple[str, ...]] = {
    "cb100": ("serial",),
    "dlt645": ("serial",),
    "modbus": ("modbus-rtu", "modbus-tcp"),
    "json": ("mqtt",),
}
_POLLED = ("modbus", "dlt645")
_MAX_SERIAL = 0xFFFFFFFF
_MQTT_ADDRESS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Identity(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)
    maker: str = Field(min_length=1)
    model: str = Field(min_length=1)
    description: str = ""


class Supervision(Strict):
    """When a device counts as offline: ``offline_after`` missed heartbeats (if it sends
    them every ``heartbeat_interval_s``) or failed polls in a row."""

    heartbeat_interval_s: float | None = Field(default=None, gt=0, le=86_400)
    offline_after: StrictInt = Field(default=3, ge=1, le=100)


# --- CB-100 (binary frames on a serial bus) -----------------------------------------------


class PayloadField(Strict):
    """One value inside a frame's payload; ``min``/``max`` apply after ``scale``."""

    name: Identifier
    offset: StrictInt = Field(ge=0, le=255)
    type: FieldType
    scale: float = 1.0
    min: float | None = None
    max: float | None = None
    unit: str = ""
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> PayloadField:
        if self.name == "frame_seq":
            raise rule_error("name", "'frame_seq' is reserved for the frame sequence number")
        if self.scale == 0 or not math.isfinite(self.scale):
            raise rule_error("scale", f"bad scale {self.scale}: must be finite and not 0")
        problem = check_limits(self.min, self.max)
        if problem is not None:
            raise problem
        return self


class EventRule(Strict):
    """CB-100: frame type → event kind, lane and decoded payload fields."""

    frame_type: Byte
    kind: Identifier
    lane: LaneName
    hub_ack: StrictBool = False  # the hub answers with button feedback (received, …)
    description: str = ""
    fields: tuple[PayloadField, ...] = ()

    @property
    def contract_lane(self) -> Lane:
        return lane_of(self.lane)

    @model_validator(mode="after")
    def _check(self) -> EventRule:
        duplicate = first_duplicate([f.name for f in self.fields])
        if duplicate is not None:
            index, first = duplicate
            raise rule_error(
                f"fields[{index}].name",
                f"duplicate field name {self.fields[index].name!r} (also fields[{first}])",
            )
        return self


class CommandSpec(Strict):
    """CB-100: a command the hub may send; ``codes`` name the frame types it can produce."""

    name: Identifier
    description: str = ""
    codes: dict[Identifier, Byte] = Field(min_length=1)
    deadline_s: DeadlineSeconds = DEFAULT_COMMAND_DEADLINE_S


# --- unions of the codec-specific parts ---------------------------------------------------


def _keys(value: object) -> set[str]:
    return {k for k in value if isinstance(k, str)} if isinstance(value, dict) else set()


def _event_tag(value: object) -> str:
    if isinstance(value, JsonEventRule) or "match" in _keys(value):
        return "json"
    return "cb100"


def _command_tag(value: object) -> str:
    if isinstance(value, CommandSpec):
        return "cb100"
    if isinstance(value, MqttCommandSpec):
        return "mqtt"
    if isinstance(value, ModbusCommandSpec):
        return "modbus"
    keys = _keys(value)
    if "codes" in keys:
        return "cb100"
    if keys & {"payload", "args", "result_timeout_s"}:
        return "mqtt"
    if "verify" in keys or (isinstance(value, dict) and value.get("name") == "write_point"):
        return "modbus"
    return "cb100"


def _point_tag(value: object) -> str:
    if isinstance(value, DltPointSpec) or _keys(value) & {"di", "digits", "decimals", "signed"}:
        return "dlt645"
    return "modbus"


AnyEvent = Annotated[
    Annotated[EventRule, Tag("cb100")] | Annotated[JsonEventRule, Tag("json")],
    Discriminator(_event_tag),
]
AnyCommand = Annotated[
    Annotated[CommandSpec, Tag("cb100")]
    | Annotated[MqttCommandSpec, Tag("mqtt")]
    | Annotated[ModbusCommandSpec, Tag("modbus")],
    Discriminator(_command_tag),
]
AnyPoint = Annotated[
    Annotated[ModbusPointSpec, Tag("modbus")] | Annotated[DltPointSpec, Tag("dlt645")],
    Discriminator(_point_tag),
]

_EVENT_STYLE: dict[str, type[Strict]] = {"cb100": EventRule, "json": JsonEventRule}
_COMMAND_STYLE: dict[str, type[Strict]] = {
    "cb100": CommandSpec,
    "json": MqttCommandSpec,
    "modbus": ModbusCommandSpec,
}
_POINT_STYLE: dict[str, type[Strict]] = {"modbus": ModbusPointSpec, "dlt645": DltPointSpec}
_STYLE_HINT = {
    EventRule: "a cb100 event rule (frame_type)",
    JsonEventRule: "a json event rule (match)",
    CommandSpec: "a cb100 command (codes)",
    MqttCommandSpec: "an mqtt command (payload/args)",
    ModbusCommandSpec: "a modbus write_point command",
    ModbusPointSpec: "a modbus point (table/address/type)",
    DltPointSpec: "a dlt645 point (di/digits/decimals)",
}


def _quoted(names: tuple[str, ...] | list[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


class DeviceProfile(Strict):
    identity: Identity
    transport: Transport
    codec: Codec
    device_id: str = Field(min_length=1, max_length=100)  # "cb100-{serial}", "wm-{address}"
    supervision: Supervision = Supervision()
    points: tuple[AnyPoint, ...] = ()
    polls: tuple[PollSpec, ...] = ()
    events: tuple[AnyEvent, ...] = ()
    commands: tuple[AnyCommand, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any) -> Any:
        """A clear message for an unknown transport kind; move the v1 top-level
        ``heartbeat_interval_s`` under ``supervision``."""
        if not isinstance(data, dict):
            return data
        transport = data.get("transport")
        if isinstance(transport, dict):
            kind = transport.get("kind")
            if not isinstance(kind, str) or kind not in TRANSPORT_KINDS:
                what = "missing" if kind is None else f"unknown transport kind {kind!r}"
                raise rule_error(
                    "transport.kind", f"{what}; known kinds: {', '.join(TRANSPORT_KINDS)}"
                )
        if "heartbeat_interval_s" in data:  # v1 (cb-100.yaml) spelling
            data = dict(data)
            heartbeat = data.pop("heartbeat_interval_s")
            supervision = data.get("supervision", {})
            if isinstance(supervision, dict):
                if "heartbeat_interval_s" in supervision:
                    raise rule_error(
                        "heartbeat_interval_s", "give the heartbeat once, under supervision"
                    )
                data["supervision"] = {**supervision, "heartbeat_interval_s": heartbeat}
        return data

    @model_validator(mode="after")
    def _check(self) -> DeviceProfile:
        kinds = CODEC_TRANSPORTS[self.codec]
        if self.transport.kind not in kinds:
            fitting = [c for c, ts in CODEC_TRANSPORTS.items() if self.transport.kind in ts]
            raise rule_error(
                "codec",
                f"Input should be {_quoted(fitting)} for transport kind "
                f"{self.transport.kind!r}; codec {self.codec!r} needs transport kind "
                f"{' or '.join(kinds)}",
            )
        self._check_template()
        self._check_sections()
        self._check_styles()
        self._check_names()
        self._check_polls()
        self._check_registers()
        return self

    # --- rules ------------------------------------------------------------------------------

    def _check_template(self) -> None:
        if self.codec == "cb100":
            try:
                rendered = self.device_id.format(serial=0)
            except (KeyError, IndexError, ValueError) as err:
                raise rule_error(
                    "device_id", f"template may only use the placeholder {{serial}} ({err})"
                ) from None
            if rendered == self.device_id.format(serial=1) or any(c in rendered for c in "/+# "):
                raise rule_error("device_id", "template must contain {serial} and no '/+# '")
            return
        rest = self.device_id.replace(ADDRESS_PLACEHOLDER, "", 1)
        if self.device_id.count(ADDRESS_PLACEHOLDER) != 1 or "{" in rest or "}" in rest:
            raise rule_error(
                "device_id", "template must contain {address} once and no other placeholder"
            )
        if any(c in self.device_id for c in "/+# "):
            raise rule_error("device_id", "template may not contain '/', '+', '#' or spaces")

    def _check_sections(self) -> None:
        codec = self.codec
        if codec in _POLLED:
            if not self.points:
                raise rule_error("points", f"a {codec} profile needs at least one point")
            if not self.polls:
                raise rule_error("polls", f"a {codec} profile needs at least one poll")
            if self.events:
                raise rule_error("events", "a polled profile gets its events from polls")
            if codec == "dlt645" and self.commands:
                raise rule_error("commands", "dlt645 profiles have no commands (read only)")
            return
        if not self.events:
            raise rule_error("events", f"a {codec} profile needs at least one event rule")
        for section, items in (("points", self.points), ("polls", self.polls)):
            if items:
                raise rule_error(section, f"only modbus and dlt645 profiles have {section}")

    def _check_styles(self) -> None:
        style_key = "json" if self.codec == "json" else self.codec
        wanted: list[tuple[str, tuple[Strict, ...], type[Strict] | None]] = [
            ("events", self.events, _EVENT_STYLE.get(style_key)),
            ("commands", self.commands, _COMMAND_STYLE.get(style_key)),
            ("points", self.points, _POINT_STYLE.get(style_key)),
        ]
        for section, items, style in wanted:
            for index, item in enumerate(items):
                if style is not None and not isinstance(item, style):
                    raise rule_error(
                        f"{section}[{index}]",
                        f"{_STYLE_HINT[type(item)]} does not fit codec {self.codec!r}; "
                        f"expected {_STYLE_HINT[style]}",
                    )

    def _check_names(self) -> None:
        checks: list[tuple[str, str, list[str]]] = [
            ("points", "name", [p.name for p in self.points]),
            ("events", "kind", [e.kind for e in self.events]),
            ("commands", "name", [c.name for c in self.commands]),
        ]
        cb100 = [e for e in self.events if isinstance(e, EventRule)]
        if cb100:
            checks.insert(0, ("events", "frame_type", [f"0x{e.frame_type:02X}" for e in cb100]))
        matches = [e.match for e in self.events if isinstance(e, JsonEventRule)]
        if matches:
            checks.append(("events", "match", [f"{m.field} = {m.equals!r}" for m in matches]))
        for section, key, values in checks:
            duplicate = first_duplicate(values)
            if duplicate is not None:
                index, first = duplicate
                raise rule_error(
                    f"{section}[{index}].{key}",
                    f"duplicate {key.replace('_', ' ')} {values[index]} (also {section}[{first}])",
                )

    def _check_polls(self) -> None:
        names = [p.name for p in self.points]
        for index, poll in enumerate(self.polls):
            for position, name in enumerate(poll.points):
                if name not in names:
                    raise rule_error(
                        f"polls[{index}].points[{position}]",
                        f"unknown point {name!r} (points: {', '.join(names)})",
                    )

    def _check_registers(self) -> None:
        specs = self.modbus_point_specs()
        index = {spec.name: i for i, spec in enumerate(self.points)}
        for table in ("holding", "input"):
            overlaps = find_overlaps(s.to_point() for s in specs if s.table == table)
            if overlaps:
                earlier, later = overlaps[0]
                raise rule_error(
                    f"points[{index[later.name]}].address",
                    f"{later.name!r} (registers {later.address}..{later.end - 1}) overlaps "
                    f"{earlier.name!r} (points[{index[earlier.name]}], registers "
                    f"{earlier.address}..{earlier.end - 1}) in the {table} table",
                )
        if any(isinstance(c, ModbusCommandSpec) for c in self.commands) and not any(
            s.writable for s in specs
        ):
            at = next(i for i, c in enumerate(self.commands) if isinstance(c, ModbusCommandSpec))
            raise rule_error(
                f"commands[{at}]", "write_point needs at least one point with access: rw"
            )

    # --- device ids and addresses --------------------------------------------------------

    def address_problem(self, address: str) -> str | None:
        """Why ``address`` cannot be a device of this profile, or None if it can."""
        kind = self.transport.kind
        if self.codec == "cb100":
            ok = address.isascii() and address.isdigit() and int(address) <= _MAX_SERIAL
            return None if ok else "a CB-100 address is a serial number 0..4294967295"
        if self.codec == "dlt645":
            ok = len(address) == 12 and address.isascii() and address.isdigit()
            return None if ok else "a DL/T 645 meter address is 12 digits"
        if kind in ("modbus-rtu", "modbus-tcp"):
            low, high = (1, 247) if kind == "modbus-rtu" else (0, 255)
            ok = address.isascii() and address.isdigit() and low <= int(address) <= high
            return None if ok else f"a {kind} address is a unit id {low}..{high}"
        if _MQTT_ADDRESS.fullmatch(address) is None:
            return "an MQTT device address is 1-64 letters, digits, '_', '.' or '-'"
        return None

    def device_id_for_address(self, address: str) -> str:
        """The device id of the unit at ``address``; ValueError if it cannot be one."""
        problem = self.address_problem(address)
        if problem is not None:
            raise ValueError(f"{self.identity.name}: address {address!r}: {problem}")
        if self.codec == "cb100":
            return self.device_id_for(int(address))
        return self.device_id.replace(ADDRESS_PLACEHOLDER, address)

    def device_id_for(self, serial: int) -> str:
        """CB-100: the device id of the button with ``serial``."""
        return self.device_id.format(serial=serial)

    def serial_line(self) -> SerialTransport | ModbusRtuTransport:
        """The line settings of a serial bus profile; TypeError for network transports."""
        if isinstance(self.transport, SerialTransport | ModbusRtuTransport):
            return self.transport
        raise TypeError(f"{self.identity.name}: transport {self.transport.kind!r} is not serial")

    # --- typed views for drivers -----------------------------------------------------------

    @property
    def heartbeat_interval_s(self) -> float | None:
        """The v1 name of ``supervision.heartbeat_interval_s``."""
        return self.supervision.heartbeat_interval_s

    def event_for(self, frame_type: int) -> EventRule | None:
        return next(
            (e for e in self.events if isinstance(e, EventRule) and e.frame_type == frame_type),
            None,
        )

    def command(self, name: str) -> CommandSpec | None:
        """CB-100: the command called ``name`` (see :meth:`mqtt_command` for MQTT)."""
        return next(
            (c for c in self.commands if isinstance(c, CommandSpec) and c.name == name), None
        )

    def command_names(self) -> list[str]:
        return [c.name for c in self.commands]

    def command_deadline_s(self, name: str) -> float:
        """Seconds command ``name`` has from the hub's acceptance to its device; after
        that it ends ``expired`` (the default for a name the profile does not have)."""
        spec = next((c for c in self.commands if c.name == name), None)
        return spec.deadline_s if spec is not None else DEFAULT_COMMAND_DEADLINE_S

    def json_events(self) -> tuple[JsonEventRule, ...]:
        return tuple(e for e in self.events if isinstance(e, JsonEventRule))

    def json_event_for(self, payload: Mapping[str, Any]) -> JsonEventRule | None:
        """The first JSON rule whose ``match`` fits ``payload``."""
        return next((e for e in self.json_events() if e.matches(payload)), None)

    def mqtt_command(self, name: str) -> MqttCommandSpec | None:
        return next(
            (c for c in self.commands if isinstance(c, MqttCommandSpec) and c.name == name),
            None,
        )

    def modbus_command(self) -> ModbusCommandSpec | None:
        return next((c for c in self.commands if isinstance(c, ModbusCommandSpec)), None)

    def modbus_point_specs(self) -> tuple[ModbusPointSpec, ...]:
        return tuple(p for p in self.points if isinstance(p, ModbusPointSpec))

    def modbus_point(self, name: str) -> ModbusPointSpec | None:
        return next((p for p in self.modbus_point_specs() if p.name == name), None)

    def modbus_points(self, table: Literal["holding", "input"]) -> list[Point]:
        """The register-map points of one table (for ``plan_reads``)."""
        return [p.to_point() for p in self.modbus_point_specs() if p.table == table]

    def dlt_points(self) -> tuple[DltPointSpec, ...]:
        return tuple(p for p in self.points if isinstance(p, DltPointSpec))

    def dlt_point(self, name: str) -> DltPointSpec | None:
        return next((p for p in self.dlt_points() if p.name == name), None)

    def poll_points(self, poll: PollSpec) -> list[ModbusPointSpec | DltPointSpec]:
        """The point specs a poll reads, in the poll's order."""
        by_name = {p.name: p for p in self.points}
        return [by_name[name] for name in poll.points]

    def write_request(self, args: Mapping[str, object]) -> tuple[ModbusPointSpec, list[int]]:
        """Check a ``write_point`` command's ``{"point", "value"}``: the point and registers.

        MappingError reasons: ``unknown_command`` (the profile has no write_point),
        ``bad_args``, ``not_writable`` (an ``access: r`` point), ``out_of_range``.
        """
        if self.modbus_command() is None:
            raise MappingError(
                f"{self.identity.name}: no write_point command in this profile", "unknown_command"
            )
        unknown = sorted(set(args) - {"point", "value"})
        if unknown:
            raise MappingError(f"write_point: unexpected arguments {unknown}", "bad_args")
        name, value = args.get("point"), args.get("value")
        spec = self.modbus_point(name) if isinstance(name, str) else None
        if spec is None:
            known = [p.name for p in self.modbus_point_specs() if p.writable]
            raise MappingError(
                f"write_point: point must be one of {known}, not {name!r}", "bad_args"
            )
        if not spec.writable:
            raise MappingError(f"write_point: {spec.name!r} is read-only", "not_writable")
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise MappingError(f"write_point: value must be a number, not {value!r}", "bad_args")
        if not spec.in_limits(value):
            raise MappingError(
                f"write_point: {spec.name} = {value} is outside {spec.min}..{spec.max}",
                "out_of_range",
            )
        try:
            return spec, encode(spec.to_point(), value)
        except RegisterMapError as err:
            raise MappingError(f"write_point: {err}", "out_of_range") from None
