"""Declarative device profiles: YAML files in ``device_profiles/`` that say what a device
model sends and how each frame becomes an event (see ``device_profiles/cb-100.yaml``).

Load them at start-up with :func:`load_profiles` (errors name file and field), then turn
frames into events with :func:`map_frame` and commands into frames with
:func:`build_command_frame`.
"""

from edge.profiles.loader import load_profile, load_profiles, parse_profile
from edge.profiles.mapping import MappedEvent, MappingError, build_command_frame, map_frame
from edge.profiles.model import (
    CommandSpec,
    DeviceProfile,
    EventRule,
    Identity,
    PayloadField,
    SerialTransport,
)

__all__ = [
    "CommandSpec",
    "DeviceProfile",
    "EventRule",
    "Identity",
    "MappedEvent",
    "MappingError",
    "PayloadField",
    "SerialTransport",
    "build_command_frame",
    "load_profile",
    "load_profiles",
    "map_frame",
    "parse_profile",
]
