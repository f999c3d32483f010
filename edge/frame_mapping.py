"""Frame ↔ event through a device profile: the only place that interprets payload bytes.

Why separate from the codec and the driver: the codec knows framing, the driver knows the
bus (acks, ordering, the serial port); what a frame *means* comes from the profile file.
Everything here is pure, so every rule of a profile can be tested without a port.
Failures raise :class:`~profiles.errors.MappingError` carrying a short ``reason`` the
driver counts by (a refused command is answered ``device_error``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contract import Lane
from edge.codecs import cb100
from profiles.errors import MappingError
from profiles.model import DeviceProfile, FieldType, PayloadField

__all__ = ["MappedEvent", "MappingError", "build_command_frame", "decode_field", "map_frame"]

_STRUCT_FORMATS: dict[FieldType, str] = {
    "uint8": ">B",
    "int8": ">b",
    "uint16be": ">H",
    "uint16le": "<H",
    "int16be": ">h",
    "int16le": "<h",
    "uint32be": ">I",
    "uint32le": "<I",
    "int32be": ">i",
    "int32le": "<i",
}


@dataclass(frozen=True, slots=True)
class MappedEvent:
    device_id: str
    kind: str
    lane: Lane
    data: dict[str, Any] = field(default_factory=dict)
    hub_ack: bool = False  # the hub is expected to answer with button feedback


def decode_field(spec: PayloadField, payload: bytes) -> int | float:
    """The value of one payload field, scaled; raises MappingError if short or out of range."""
    fmt = _STRUCT_FORMATS[spec.type]
    size = struct.calcsize(fmt)
    if spec.offset + size > len(payload):
        raise MappingError(
            f"field {spec.name!r} needs bytes {spec.offset}..{spec.offset + size - 1} "
            f"but the payload has {len(payload)}",
            "payload_short",
        )
    (raw,) = struct.unpack_from(fmt, payload, spec.offset)
    value: int | float = raw if spec.scale == 1 else raw * spec.scale
    if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
        raise MappingError(
            f"field {spec.name!r} = {value} is outside {spec.min}..{spec.max}{spec.unit}",
            "out_of_range",
        )
    return value


def map_frame(profile: DeviceProfile, frame: cb100.Frame) -> MappedEvent:
    """The event a frame stands for. Bytes past the last declared field are ignored."""
    device_id = profile.device_id_for(frame.device_serial)
    rule = profile.event_for(frame.type)
    if rule is None:
        raise MappingError(
            f"{device_id}: frame type 0x{frame.type:02X} is not in profile "
            f"{profile.identity.name!r}",
            "unknown_type",
        )
    data: dict[str, Any] = {"frame_seq": frame.seq}
    try:
        for spec in rule.fields:
            data[spec.name] = decode_field(spec, frame.payload)
    except MappingError as err:
        raise MappingError(f"{device_id}: {rule.kind}: {err}", err.reason) from None
    return MappedEvent(device_id, rule.kind, rule.contract_lane, data, rule.hub_ack)


def _int_arg(args: Mapping[str, object], name: str, low: int, high: int) -> int:
    value = args.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise MappingError(f"argument {name!r} must be an integer {low}..{high}", "bad_args")
    return value


def build_command_frame(
    profile: DeviceProfile, serial: int, command_name: str, args: Mapping[str, object]
) -> bytes:
    """Wire bytes of a command, e.g. ``button_feedback`` with ``{"code", "ref_seq"}``.

    The frame carries the code's frame type and echoes ``ref_seq`` (the seq of the
    frame being answered, e.g. the SOS) as its own seq.
    """
    spec = profile.command(command_name)
    if spec is None:
        raise MappingError(
            f"command {command_name!r} is not in profile {profile.identity.name!r}",
            "unknown_command",
        )
    unknown = set(args) - {"code", "ref_seq"}
    if unknown:
        raise MappingError(f"{command_name}: unexpected arguments {sorted(unknown)}", "bad_args")
    code = args.get("code")
    if not isinstance(code, str) or code not in spec.codes:
        raise MappingError(
            f"{command_name}: code must be one of {sorted(spec.codes)}, not {code!r}", "bad_args"
        )
    ref_seq = _int_arg(args, "ref_seq", 0, 0xFFFF)
    if not 0 <= serial <= 0xFFFFFFFF:
        raise MappingError(f"{command_name}: device serial {serial} is not a uint32", "bad_args")
    return cb100.encode(cb100.Frame(serial, ref_seq, spec.codes[code]))
