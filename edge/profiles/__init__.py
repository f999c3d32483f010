"""Declarative device profiles: YAML files in ``device_profiles/`` that say how a device
model is reached, what it sends or holds, and how that becomes events (format v2:
``docs/device_profiles.md``; the driver API is listed in :mod:`edge.profiles.model`).

Load them at start-up with :func:`load_profiles` (errors name file and field), then turn
CB-100 frames into events with :func:`map_frame` and commands into frames with
:func:`build_command_frame`; JSON payloads through :class:`JsonEventRule`, MQTT commands
through :class:`MqttCommandSpec`, Modbus points through :class:`ModbusPointSpec`.
"""

from edge.profiles.errors import MappingError
from edge.profiles.json_rules import CommandReply, parse_command_reply
from edge.profiles.loader import load_profile, load_profiles, parse_profile
from edge.profiles.mapping import MappedEvent, build_command_frame, map_frame
from edge.profiles.model import (
    CommandSpec,
    DeviceProfile,
    DltPointSpec,
    EventRule,
    Identity,
    JsonEventRule,
    ModbusCommandSpec,
    ModbusPointSpec,
    ModbusRtuTransport,
    ModbusTcpTransport,
    MqttCommandSpec,
    MqttTransport,
    PayloadField,
    PollSpec,
    SerialTransport,
    Supervision,
)

__all__ = [
    "CommandReply",
    "CommandSpec",
    "DeviceProfile",
    "DltPointSpec",
    "EventRule",
    "Identity",
    "JsonEventRule",
    "MappedEvent",
    "MappingError",
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
    "build_command_frame",
    "load_profile",
    "load_profiles",
    "map_frame",
    "parse_command_reply",
    "parse_profile",
]
