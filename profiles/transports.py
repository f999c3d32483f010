"""How a device model is reached: the ``transport`` section of a profile.

Why a discriminated union on ``kind``: each way of reaching a device has its own settings
(a serial line has a baud rate, a Modbus TCP device a port, an MQTT device topics), and a
key that belongs to another kind must be an error rather than silently ignored. The
per-device parts (which serial port, which host, which address) come from the edge's
device list, not from here: a profile describes a *model*, shared by every unit.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from profiles.common import Strict, rule_error

Parity = Literal["none", "even", "odd", "mark", "space"]
ADDRESS_PLACEHOLDER = "{address}"
TRANSPORT_KINDS = ("serial", "modbus-rtu", "modbus-tcp", "mqtt")


def _check_stopbits(value: float) -> float:
    if value not in (1, 1.5, 2):
        raise ValueError("stopbits must be 1, 1.5 or 2")
    return value


class _Line(Strict):
    """Serial line settings (they satisfy ``edge.transports.serial_port.SerialLine``)."""

    baudrate: StrictInt = Field(default=9600, gt=0, le=4_000_000)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Parity = "none"
    stopbits: float = 1
    timeout_ms: float = Field(default=500, gt=0, le=60_000)

    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, value: float) -> float:
        return _check_stopbits(value)

    @property
    def char_bits(self) -> float:
        """Bits one character takes on the line: start, data, parity, stop."""
        return 1 + self.bytesize + (0 if self.parity == "none" else 1) + self.stopbits

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000


class SerialTransport(_Line):
    """A serial line with a codec of our own (``cb100`` listens, ``dlt645`` polls)."""

    kind: Literal["serial"]
    inter_frame_gap_ms: float = Field(default=5, ge=0, le=10_000)

    @property
    def frame_gap_s(self) -> float:
        return self.inter_frame_gap_ms / 1000


class ModbusRtuTransport(_Line):
    """Modbus RTU on RS-485. The gap defaults to the protocol's 3.5 characters."""

    kind: Literal["modbus-rtu"]
    inter_frame_gap_ms: float | None = Field(default=None, ge=0, le=10_000)

    @property
    def frame_gap_s(self) -> float:
        """The silent interval between frames: set, or 3.5 characters (1.75 ms above
        19200 baud, as the Modbus serial line specification fixes it)."""
        if self.inter_frame_gap_ms is not None:
            return self.inter_frame_gap_ms / 1000
        if self.baudrate > 19_200:
            return 0.00175
        return 3.5 * self.char_bits / self.baudrate


class ModbusTcpTransport(Strict):
    """Modbus TCP; the host comes from each device's entry in the edge's device list."""

    kind: Literal["modbus-tcp"]
    port: StrictInt = Field(default=502, ge=1, le=65_535)
    timeout_ms: float = Field(default=1000, gt=0, le=60_000)
    max_in_flight: StrictInt = Field(default=32, ge=1, le=1024)

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000


def _check_topic_template(path: str, template: str) -> None:
    levels = template.split("/")
    if levels.count(ADDRESS_PLACEHOLDER) != 1 or template.count("{") != 1:
        raise rule_error(path, "topic template must have exactly one level that is {address}")
    if "}" in template.replace(ADDRESS_PLACEHOLDER, "") or any(c in template for c in "+# "):
        raise rule_error(path, "topic template may not contain '+', '#', ' ' or other braces")
    if "" in levels or template.startswith("$"):
        raise rule_error(path, "topic template may not have empty levels or start with '$'")


class MqttTransport(Strict):
    """A device that speaks JSON over MQTT on the edge's local broker."""

    kind: Literal["mqtt"]
    event_topic: str = Field(min_length=1, max_length=200)  # "devices/{address}/events"
    command_topic: str = Field(min_length=1, max_length=200)  # "devices/{address}/commands"
    qos: Literal[0, 1] = 1

    @model_validator(mode="after")
    def _check(self) -> MqttTransport:
        _check_topic_template("event_topic", self.event_topic)
        _check_topic_template("command_topic", self.command_topic)
        if self.event_topic == self.command_topic:
            raise rule_error("command_topic", "must differ from event_topic")
        return self

    def event_topic_for(self, address: str) -> str:
        return self.event_topic.replace(ADDRESS_PLACEHOLDER, address)

    def command_topic_for(self, address: str) -> str:
        return self.command_topic.replace(ADDRESS_PLACEHOLDER, address)

    @property
    def event_subscription(self) -> str:
        """The event topic with ``+`` for the address: one subscription for every unit."""
        return self.event_topic.replace(ADDRESS_PLACEHOLDER, "+")

    def address_from_topic(self, topic: str) -> str | None:
        """The address an event topic names, or None if ``topic`` does not fit."""
        pattern = self.event_topic.split("/")
        levels = topic.split("/")
        if len(levels) != len(pattern):
            return None
        address: str | None = None
        for want, got in zip(pattern, levels, strict=True):
            if want == ADDRESS_PLACEHOLDER:
                address = got
            elif want != got:
                return None
        return address or None


Transport = Annotated[
    SerialTransport | ModbusRtuTransport | ModbusTcpTransport | MqttTransport,
    Field(discriminator="kind"),
]
