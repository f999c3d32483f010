"""The declarative device profile: what a device model says and how it maps to events.

A profile is data, not code, so that supporting a new device model is a reviewed YAML
file rather than a new driver (the EdgeX "device profile" idea). The schema is deliberately
generic: identity, transport, codec, device-id template, event rules (frame type → event
kind, lane and typed payload fields with limits) and commands. Modbus, MQTT and DL/T 645
profiles will add transport kinds and codecs next to ``serial``/``cb100``.

Every model forbids unknown keys, so a typo in a profile is an error at load time, never
a silently ignored setting. Cross-field rules (unique frame types, min <= max, …) raise
errors of type ``RULE_ERROR`` that carry the path of the offending field, so the loader
can say ``events[3].frame_type: duplicate frame type 0x02 (also events[1])``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from contract import Lane

LaneName = Literal["alarm", "normal", "telemetry"]
FieldType = Literal[
    "uint8", "int8",
    "uint16be", "uint16le", "int16be", "int16le",
    "uint32be", "uint32le", "int32be", "int32le",
]  # fmt: skip
Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Byte = Annotated[StrictInt, Field(ge=0, le=0xFF)]

#: Error type of cross-field rule violations; ``ctx["path"]`` is relative to the error loc.
RULE_ERROR = "profile_rule"


def rule_error(path: str, problem: str) -> PydanticCustomError:
    return PydanticCustomError(RULE_ERROR, "{problem}", {"path": path, "problem": problem})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Identity(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)
    maker: str = Field(min_length=1)
    model: str = Field(min_length=1)
    description: str = ""


class SerialTransport(_Strict):
    """A serial line. (Later: ``tcp`` and ``mqtt`` kinds in a union on ``kind``.)"""

    kind: Literal["serial"]
    baudrate: StrictInt = Field(default=9600, gt=0, le=4_000_000)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["none", "even", "odd", "mark", "space"] = "none"
    stopbits: float = 1

    @field_validator("stopbits")
    @classmethod
    def _check_stopbits(cls, value: float) -> float:
        if value not in (1, 1.5, 2):
            raise ValueError("stopbits must be 1, 1.5 or 2")
        return value


class PayloadField(_Strict):
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
        if self.min is not None and self.max is not None and self.min > self.max:
            raise rule_error("min", f"min {self.min} is greater than max {self.max}")
        return self


class EventRule(_Strict):
    """Frame type → event kind, lane and decoded payload fields."""

    frame_type: Byte
    kind: Identifier
    lane: LaneName
    hub_ack: StrictBool = False  # the hub answers with button feedback (received, …)
    description: str = ""
    fields: tuple[PayloadField, ...] = ()

    @property
    def contract_lane(self) -> Lane:
        return Lane[self.lane.upper()]

    @model_validator(mode="after")
    def _check(self) -> EventRule:
        first: dict[str, int] = {}
        for index, spec in enumerate(self.fields):
            if spec.name in first:
                raise rule_error(
                    f"fields[{index}].name",
                    f"duplicate field name {spec.name!r} (also fields[{first[spec.name]}])",
                )
            first[spec.name] = index
        return self


class CommandSpec(_Strict):
    """A command the hub may send; ``codes`` name the frame types it can produce."""

    name: Identifier
    description: str = ""
    codes: dict[Identifier, Byte] = Field(min_length=1)


class DeviceProfile(_Strict):
    identity: Identity
    transport: SerialTransport
    codec: Literal["cb100"]
    device_id: str = Field(min_length=1, max_length=100)  # template, e.g. "cb100-{serial}"
    heartbeat_interval_s: float | None = Field(default=None, gt=0)
    events: tuple[EventRule, ...] = Field(min_length=1)
    commands: tuple[CommandSpec, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> DeviceProfile:
        try:
            rendered = self.device_id.format(serial=0)
        except (KeyError, IndexError, ValueError) as err:
            raise rule_error(
                "device_id", f"template may only use the placeholder {{serial}} ({err})"
            ) from None
        if rendered == self.device_id.format(serial=1) or any(c in rendered for c in "/+# "):
            raise rule_error("device_id", "template must contain {serial} and no '/+# '")
        self._check_unique("events", "frame_type", [f"0x{e.frame_type:02X}" for e in self.events])
        self._check_unique("events", "kind", [e.kind for e in self.events])
        self._check_unique("commands", "name", [c.name for c in self.commands])
        return self

    @staticmethod
    def _check_unique(section: str, key: str, values: list[str]) -> None:
        first: dict[str, int] = {}
        for index, value in enumerate(values):
            if value in first:
                raise rule_error(
                    f"{section}[{index}].{key}",
                    f"duplicate {key.replace('_', ' ')} {value} (also {section}[{first[value]}])",
                )
            first[value] = index

    def event_for(self, frame_type: int) -> EventRule | None:
        return next((e for e in self.events if e.frame_type == frame_type), None)

    def command(self, name: str) -> CommandSpec | None:
        return next((c for c in self.commands if c.name == name), None)

    def device_id_for(self, serial: int) -> str:
        return self.device_id.format(serial=serial)
