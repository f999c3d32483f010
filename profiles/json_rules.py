"""JSON devices on MQTT: which payload is which event, and how a command becomes a payload.

Why declarative: a face-recognition door and a parcel locker each publish a JSON object
with a ``type`` and a few fields; what differs between models is the names, so the rules
live in the profile and one MQTT driver serves every such model. Everything a payload
brings is checked here (presence, type, limits) and a payload that fails raises
:class:`MappingError` with a short ``reason`` the driver counts and quarantines by; a
command's arguments are checked the same way before anything is published.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from pydantic import Field, JsonValue, StrictBool, StrictInt, StrictStr, model_validator

from contract import Lane
from profiles.common import (
    DEFAULT_COMMAND_DEADLINE_S,
    DeadlineSeconds,
    Identifier,
    JsonPath,
    LaneName,
    Strict,
    check_limits,
    first_duplicate,
    lane_of,
    rule_error,
)
from profiles.errors import MappingError

ValueType = Literal["str", "int", "float", "bool"]
#: ``type`` of the payload a device publishes to answer a command (never an event rule).
COMMAND_RESULT_TYPE = "command_result"
#: Placeholder the driver fills with the hub's command id.
COMMAND_ID_ARG = "command_id"

_MISSING = object()


def lookup(payload: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` of ``payload``, or ``_MISSING``."""
    node: Any = payload
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _typed(value: Any, kind: ValueType) -> str | int | float | bool | None:
    """``value`` as ``kind``, or None if it is not one (bools are never numbers)."""
    if kind == "bool":
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    if kind == "str":
        return value if isinstance(value, str) else None
    if kind == "int":
        return value if isinstance(value, int) else None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _check_value(
    what: str, value: Any, kind: ValueType, low: float | None, high: float | None, reason: str
) -> str | int | float | bool:
    typed = _typed(value, kind)
    if typed is None:
        raise MappingError(f"{what} must be {kind}, not {value!r}", reason)
    if not isinstance(typed, int | float) or isinstance(typed, bool):
        return typed
    if (low is not None and typed < low) or (high is not None and typed > high):
        raise MappingError(f"{what} = {typed} is outside {low}..{high}", "out_of_range")
    return typed


def _limits_only_for_numbers(kind: ValueType, low: float | None, high: float | None) -> None:
    if kind in ("str", "bool") and (low is not None or high is not None):
        raise rule_error(
            "min" if low is not None else "max", f"min/max need int or float, not {kind}"
        )
    problem = check_limits(low, high)
    if problem is not None:
        raise problem


class JsonMatch(Strict):
    """The rule applies when the value at ``field`` equals ``equals`` (same JSON type)."""

    field: JsonPath = "type"
    equals: StrictStr | StrictInt | StrictBool

    def matches(self, payload: Mapping[str, Any]) -> bool:
        value = lookup(payload, self.field)
        return type(value) is type(self.equals) and value == self.equals


class JsonField(Strict):
    """One value of an event's ``data``, taken from ``path`` of the payload (default: name)."""

    name: Identifier
    path: JsonPath | None = None
    type: ValueType
    required: StrictBool = True
    min: float | None = None
    max: float | None = None
    max_length: StrictInt = Field(default=200, ge=1, le=10_000)  # for str values
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> JsonField:
        _limits_only_for_numbers(self.type, self.min, self.max)
        return self

    @property
    def source(self) -> str:
        return self.path or self.name

    def extract(self, payload: Mapping[str, Any]) -> str | int | float | bool | None:
        """The checked value, or None if it is absent and not required."""
        value = lookup(payload, self.source)
        if value is _MISSING or value is None:
            if self.required:
                raise MappingError(f"field {self.source!r} is missing", "missing_field")
            return None
        typed = _check_value(
            f"field {self.source!r}", value, self.type, self.min, self.max, "bad_type"
        )
        if isinstance(typed, str) and len(typed) > self.max_length:
            raise MappingError(
                f"field {self.source!r} is longer than {self.max_length} characters",
                "out_of_range",
            )
        return typed


class JsonEventRule(Strict):
    """Payloads that match become events of ``kind`` with the declared ``fields`` as data."""

    match: JsonMatch
    kind: Identifier
    lane: LaneName
    hub_ack: StrictBool = False
    dedupe: JsonPath | None = None  # payload field whose value is the event's dedupe key
    description: str = ""
    fields: tuple[JsonField, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> JsonEventRule:
        if self.match.equals == COMMAND_RESULT_TYPE:
            raise rule_error(
                "match.equals", f"{COMMAND_RESULT_TYPE!r} is reserved for command answers"
            )
        duplicate = first_duplicate([f.name for f in self.fields])
        if duplicate is not None:
            index, first = duplicate
            raise rule_error(
                f"fields[{index}].name",
                f"duplicate field name {self.fields[index].name!r} (also fields[{first}])",
            )
        return self

    @property
    def contract_lane(self) -> Lane:
        return lane_of(self.lane)

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return self.match.matches(payload)

    def extract(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The event's data; MappingError (missing_field, bad_type, out_of_range) if unfit."""
        data: dict[str, Any] = {}
        for spec in self.fields:
            try:
                value = spec.extract(payload)
            except MappingError as err:
                raise MappingError(f"{self.kind}: {err}", err.reason) from None
            if value is not None:
                data[spec.name] = value
        return data

    def dedupe_key(self, payload: Mapping[str, Any]) -> str | None:
        """The payload's dedupe value (a string or integer), if the rule names one."""
        if self.dedupe is None:
            return None
        value = lookup(payload, self.dedupe)
        if isinstance(value, str) and 0 < len(value) <= 200:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return None


class ArgSpec(Strict):
    """One argument of an MQTT command."""

    type: ValueType
    min: float | None = None
    max: float | None = None
    choices: tuple[StrictStr | StrictInt, ...] | None = Field(default=None, min_length=1)
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> ArgSpec:
        _limits_only_for_numbers(self.type, self.min, self.max)
        if self.choices is not None:
            for index, choice in enumerate(self.choices):
                if _typed(choice, self.type) != choice or isinstance(choice, bool):
                    raise rule_error(f"choices[{index}]", f"{choice!r} is not a {self.type}")
        return self

    def check(self, name: str, value: object) -> str | int | float | bool:
        typed = _check_value(f"argument {name!r}", value, self.type, self.min, self.max, "bad_args")
        if self.choices is not None and typed not in self.choices:
            raise MappingError(
                f"argument {name!r} must be one of {list(self.choices)}, not {value!r}", "bad_args"
            )
        return typed


def _placeholders(node: JsonValue, path: str, found: dict[str, str]) -> None:
    """Collect ``"{name}"`` strings of a payload template (name → path); refuse other braces."""
    if isinstance(node, str):
        if node.startswith("{") and node.endswith("}") and node[1:-1].isidentifier():
            found.setdefault(node[1:-1], path)
        elif "{" in node or "}" in node:
            raise rule_error(path, f'{node!r}: a placeholder must be a whole string like "{{arg}}"')
    elif isinstance(node, dict):
        for key, value in node.items():
            _placeholders(value, f"{path}.{key}", found)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _placeholders(value, f"{path}[{index}]", found)


def _fill(node: JsonValue, values: Mapping[str, object]) -> Any:
    if isinstance(node, str) and node.startswith("{") and node[1:-1] in values:
        return values[node[1:-1]]
    if isinstance(node, dict):
        return {key: _fill(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(value, values) for value in node]
    return node


class MqttCommandSpec(Strict):
    """A hub command published as JSON to the device's command topic.

    ``payload`` is a template: every string that is exactly ``"{arg}"`` becomes the typed
    argument; ``"{command_id}"`` becomes the hub's command id (the device echoes it in its
    ``{"type": "command_result", "command_id", "status", "detail"}`` answer).
    """

    name: Identifier
    description: str = ""
    payload: dict[str, JsonValue] = Field(min_length=1)
    args: dict[Identifier, ArgSpec] = Field(default_factory=dict)
    result_timeout_s: float = Field(default=5, gt=0, le=300)
    deadline_s: DeadlineSeconds = DEFAULT_COMMAND_DEADLINE_S

    @model_validator(mode="after")
    def _check(self) -> MqttCommandSpec:
        if COMMAND_ID_ARG in self.args:
            raise rule_error(f"args.{COMMAND_ID_ARG}", "'command_id' is filled by the edge")
        found: dict[str, str] = {}
        for key, value in self.payload.items():
            _placeholders(value, f"payload.{key}", found)
        for name, path in found.items():
            if name != COMMAND_ID_ARG and name not in self.args:
                raise rule_error(path, f"placeholder {{{name}}} names no argument in args")
        for name in self.args:
            if name not in found:
                raise rule_error(f"args.{name}", f"argument {name!r} is not used in payload")
        return self

    def render(
        self, args: Mapping[str, object], *, command_id: str | None = None
    ) -> dict[str, Any]:
        """The payload for ``args``; MappingError ``bad_args`` if they do not fit.

        With ``command_id`` the id fills ``"{command_id}"``, or is added as a top-level
        ``command_id`` key when the template has no such placeholder.
        """
        unknown = sorted(set(args) - set(self.args))
        if unknown:
            raise MappingError(f"{self.name}: unexpected arguments {unknown}", "bad_args")
        values: dict[str, object] = {}
        for name, spec in self.args.items():
            if name not in args:
                raise MappingError(f"{self.name}: argument {name!r} is missing", "bad_args")
            try:
                values[name] = spec.check(name, args[name])
            except MappingError as err:
                raise MappingError(f"{self.name}: {err}", "bad_args") from None
        values[COMMAND_ID_ARG] = command_id
        rendered: dict[str, Any] = _fill(self.payload, values)
        if command_id is not None and not _uses_command_id(self.payload):
            rendered[COMMAND_ID_ARG] = command_id
        return rendered


def _uses_command_id(payload: dict[str, JsonValue]) -> bool:
    found: dict[str, str] = {}
    for key, value in payload.items():
        _placeholders(value, key, found)
    return COMMAND_ID_ARG in found


class CommandReply(NamedTuple):
    """A device's answer to a command: ``status`` is ``ok`` or ``error``."""

    command_id: str
    status: Literal["ok", "error"]
    detail: str


def parse_command_reply(payload: Mapping[str, Any]) -> CommandReply | None:
    """The command answer ``payload`` is, None if it is not one; MappingError if malformed."""
    if payload.get("type") != COMMAND_RESULT_TYPE:
        return None
    command_id, status = payload.get("command_id"), payload.get("status")
    detail = payload.get("detail", "")
    if not isinstance(command_id, str) or not 0 < len(command_id) <= 200:
        raise MappingError("command_result without a command_id string", "bad_type")
    if status not in ("ok", "error"):
        raise MappingError(f"command_result status must be ok or error, not {status!r}", "bad_type")
    return CommandReply(command_id, status, detail if isinstance(detail, str) else str(detail))
