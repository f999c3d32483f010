"""Declarative device profiles: YAML files in ``device_profiles/`` that say how a device
model is reached, what it sends or holds, and how that becomes events (format v2:
``docs/device_profiles.md``; the driver API is listed in :mod:`profiles.model`).

Load them at start-up with :func:`load_profiles` (errors name file and field); JSON payloads
become events through :class:`JsonEventRule`, MQTT commands through :class:`MqttCommandSpec`,
Modbus points through :class:`ModbusPointSpec` (register maps: :mod:`profiles.registers`).
CB-100 frames are mapped on the edge (``edge.frame_mapping``).

Why a package of its own, imported by both the edge and the hub: the hub checks profiles
(remote configuration, the registry, command deadlines) with exactly the edge's rules, and
neither side may import the other (``tests/test_import_graph.py`` checks it).
"""

from profiles.errors import MappingError, ProfileError
from profiles.json_rules import CommandReply, parse_command_reply
from profiles.loader import load_profile, load_profiles, parse_profile
from profiles.model import (
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
    "MappingError",
    "ModbusCommandSpec",
    "ModbusPointSpec",
    "ModbusRtuTransport",
    "ModbusTcpTransport",
    "MqttCommandSpec",
    "MqttTransport",
    "PayloadField",
    "PollSpec",
    "ProfileError",
    "SerialTransport",
    "Supervision",
    "load_profile",
    "load_profiles",
    "parse_command_reply",
    "parse_profile",
]
