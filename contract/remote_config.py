"""Remote configuration: the document the hub publishes (retained) on ``topics.config``.

An :class:`EdgeConfigDocument` says everything an edge needs to run its devices: the
serial buses with the device profile each runs, the devices the hub has registered for
the edge, and the text of every profile it names, so an edge never depends on profile
files it may not have. ``version`` increases with every document the hub issues for an
edge; an edge runs a document only if its version is higher than the one it runs.

Decoding here checks shape and types only, strictly (unknown keys are errors, so a typo
is never a silently ignored setting) and names the field in every error. Whether the
document makes sense — profiles parse, every reference resolves, nothing is duplicated —
is checked by ``profiles.config_check``, which the hub runs before publishing and the
edge runs again before swapping the document in (the hub's check is not trusted: anybody
allowed to publish on the topic could have sent it).

The edge reports what became of a document in two ways: in its retained status
(``info.config_version``, ``info.config_refused``) and as normal-lane events of the edge
itself (``device_id`` = the edge id) with the kinds below, so the hub's history has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contract.envelope import (
    ContractError,
    _dumps,
    _loads,
    format_time,
    parse_time,
)

#: Event kind: the edge runs a new document (data: version, buses, devices).
CONFIG_APPLIED = "config.applied"
#: Event kind: the edge refused a document (data: version, reason) and runs the previous one.
CONFIG_REFUSED = "config.refused"
#: Kinds of events about the edge itself rather than about one of its devices.
EDGE_EVENT_KINDS = frozenset({CONFIG_APPLIED, CONFIG_REFUSED})

MAX_PROFILE_BYTES = 65_536  # one profile's YAML text
_MAX_NAME = 200


def _keys(obj: dict[str, Any], where: str, required: set[str], optional: set[str]) -> None:
    missing = sorted(required - obj.keys())
    if missing:
        raise ContractError(f"{where}.{missing[0]}: required field is missing")
    unknown = sorted(obj.keys() - required - optional)
    if unknown:
        raise ContractError(f"{where}.{unknown[0]}: unknown field")


def _text(obj: dict[str, Any], key: str, where: str, *, max_len: int = _MAX_NAME) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise ContractError(f"{where}.{key}: expected a non-empty string of at most {max_len}")
    return value


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ContractError(f"{where}: expected an object")
    return value


def _list(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list):
        raise ContractError(f"{where}.{key}: expected a list")
    return value


@dataclass(frozen=True, slots=True)
class SerialBusSpec:
    """One serial bus the edge drives, and the profile of the devices on it."""

    port: str  # /dev/ttyUSB0, a pty link, …
    profile: str  # a key of ``EdgeConfigDocument.profiles``

    def to_obj(self) -> dict[str, Any]:
        return {"port": self.port, "profile": self.profile}

    @classmethod
    def from_obj(cls, value: object, where: str) -> SerialBusSpec:
        obj = _object(value, where)
        _keys(obj, where, {"port", "profile"}, set())
        return cls(port=_text(obj, "port", where), profile=_text(obj, "profile", where))


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A device the hub has registered for this edge.

    ``bus`` is the port it hangs on, or None when the registry does not place it yet (the
    edge then hears it on any bus of its profile). ``address`` is its address on the bus
    as text: the serial number of a CB-100, a Modbus unit id, a meter address.
    """

    device_id: str
    profile: str
    bus: str | None
    address: str
    household_id: int | None = None

    def to_obj(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "profile": self.profile,
            "bus": self.bus,
            "address": self.address,
            "household_id": self.household_id,
        }

    @classmethod
    def from_obj(cls, value: object, where: str) -> DeviceSpec:
        obj = _object(value, where)
        _keys(obj, where, {"device_id", "profile", "address"}, {"bus", "household_id"})
        bus = obj.get("bus")
        household = obj.get("household_id")
        if household is not None and (
            not isinstance(household, int) or isinstance(household, bool) or household < 1
        ):
            raise ContractError(f"{where}.household_id: expected a positive integer or null")
        return cls(
            device_id=_text(obj, "device_id", where, max_len=64),
            profile=_text(obj, "profile", where),
            bus=None if bus is None else _text(obj, "bus", where),
            address=_text(obj, "address", where, max_len=64),
            household_id=household,
        )


@dataclass(frozen=True, slots=True)
class EdgeConfigDocument:
    """Hub → edge: what the edge should run. See the module docstring."""

    edge_id: str
    version: int  # >= 1; higher than every earlier document for this edge
    issued_at: datetime
    serial_buses: tuple[SerialBusSpec, ...]
    devices: tuple[DeviceSpec, ...]
    profiles: dict[str, str]  # profile name (its identity.name) → YAML text

    def to_obj(self) -> dict[str, Any]:
        return {
            "v": 1,
            "edge_id": self.edge_id,
            "version": self.version,
            "issued_at": format_time(self.issued_at),
            "serial_buses": [b.to_obj() for b in self.serial_buses],
            "devices": [d.to_obj() for d in self.devices],
            "profiles": dict(self.profiles),
        }

    def encode(self) -> bytes:
        return _dumps(self.to_obj())

    @classmethod
    def decode(cls, raw: bytes | str) -> EdgeConfigDocument:
        return cls.from_obj(_loads(raw, "config"))

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> EdgeConfigDocument:
        where = "config"
        _keys(
            obj,
            where,
            {"v", "edge_id", "version", "issued_at", "serial_buses", "devices", "profiles"},
            set(),
        )
        version = obj.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ContractError(f"{where}.version: expected an integer of at least 1")
        profiles = _object(obj.get("profiles"), f"{where}.profiles")
        for name, text in profiles.items():
            if not name.strip() or len(name) > 64:
                raise ContractError(f"{where}.profiles: name {name!r} must be 1..64 characters")
            if not isinstance(text, str) or len(text.encode()) > MAX_PROFILE_BYTES:
                raise ContractError(
                    f"{where}.profiles[{name!r}]: expected YAML text of at most "
                    f"{MAX_PROFILE_BYTES} bytes"
                )
        buses = _list(obj, "serial_buses", where)
        devices = _list(obj, "devices", where)
        return cls(
            edge_id=_text(obj, "edge_id", where, max_len=64),
            version=version,
            issued_at=parse_time(obj.get("issued_at"), f"{where}.issued_at"),
            serial_buses=tuple(
                SerialBusSpec.from_obj(b, f"{where}.serial_buses[{i}]") for i, b in enumerate(buses)
            ),
            devices=tuple(
                DeviceSpec.from_obj(d, f"{where}.devices[{i}]") for i, d in enumerate(devices)
            ),
            profiles=dict(profiles),
        )
