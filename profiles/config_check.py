"""Is a remote configuration document fit to run? One check, run by the hub and the edge.

The hub runs it before it stores and publishes a document, so an operator hears about a
mistake at once (HTTP 422); the edge runs it again before swapping a document in, because
anybody allowed to publish on its config topic could have sent it. Both import this one
function, so they can never disagree about what "valid" means.

Every profile text goes through the real profile loader (:func:`parse_profile`), so a
profile is held to exactly the rules a profile file is held to. Then every reference must
resolve and nothing may be duplicated. All problems are collected, not just the first,
each naming the field: ``config.devices[2].profile: unknown profile 'cb-999' (…)``.
Whether a bus's port exists is deliberately *not* checked: an adapter may be unplugged
right now, and the serial link reopens it when it appears.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from contract.remote_config import EdgeConfigDocument
from profiles.errors import ProfileError
from profiles.loader import parse_profile
from profiles.model import DeviceProfile

__all__ = [
    "CheckedConfig",
    "ConfigDocumentError",
    "address_from_device_id",
    "check_config_document",
]

_MAX_SERIAL = 0xFFFFFFFF
_PLACEHOLDER = re.compile(r"\{serial(?::[^}]*)?\}")  # {serial} or {serial:08d}
_ADDRESS = "{address}"  # the v2 template placeholder (every codec but cb100)


class ConfigDocumentError(Exception):
    """A document that must not be run. ``problems`` lists every reason, each naming a field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class CheckedConfig:
    """A document that passed :func:`check_config_document`, with its profiles parsed."""

    document: EdgeConfigDocument
    profiles: dict[str, DeviceProfile]

    @property
    def version(self) -> int:
        return self.document.version

    def bus_plan(self) -> list[tuple[str, DeviceProfile]]:
        """(port, profile) of every serial bus, in document order."""
        return [(b.port, self.profiles[b.profile]) for b in self.document.serial_buses]


def address_from_device_id(profile: DeviceProfile, device_id: str) -> str | None:
    """The address a device id stands for under ``profile``'s template, if it fits.

    ``cb100-{serial}`` and ``cb100-77626`` give ``"77626"``; ``wm-{address}`` and
    ``wm-7`` give ``"7"``. The hub uses it for devices whose registry row has no address
    of its own. The address must also be one the profile's transport can have.
    """
    if profile.codec != "cb100":
        head, found, tail = profile.device_id.partition(_ADDRESS)
        if not found or not device_id.startswith(head) or not device_id.endswith(tail):
            return None
        address = device_id[len(head) : len(device_id) - len(tail)]
        if len(head) + len(tail) > len(device_id) or profile.address_problem(address):
            return None
        return address
    parts = _PLACEHOLDER.split(profile.device_id, maxsplit=1)
    if len(parts) != 2:
        return None
    head, tail = parts
    match = re.fullmatch(re.escape(head) + r"(\d{1,10})" + re.escape(tail), device_id)
    if match is None:
        return None
    serial = int(match.group(1))
    return (
        str(serial)
        if serial <= _MAX_SERIAL and profile.device_id_for(serial) == device_id
        else None
    )


def _parse_profiles(document: EdgeConfigDocument, problems: list[str]) -> dict[str, DeviceProfile]:
    parsed: dict[str, DeviceProfile] = {}
    for name, text in document.profiles.items():
        where = f"config.profiles[{name!r}]"
        try:
            profile = parse_profile(text, where)
        except ProfileError as err:
            problems.extend(str(err).splitlines())
            continue
        if profile.identity.name != name:
            problems.append(
                f"{where}.identity.name: {profile.identity.name!r} differs from the name "
                f"{name!r} the document files it under"
            )
            continue
        parsed[name] = profile
    return parsed


def _unknown_profile(name: str, document: EdgeConfigDocument) -> str:
    known = ", ".join(sorted(document.profiles)) or "none"
    return f"unknown profile {name!r} (the document's profiles: {known})"


def _check_buses(document: EdgeConfigDocument, problems: list[str]) -> dict[str, str]:
    """Port → profile name of every bus; records duplicate ports and unknown profiles."""
    ports: dict[str, int] = {}
    bus_profiles: dict[str, str] = {}
    for index, bus in enumerate(document.serial_buses):
        where = f"config.serial_buses[{index}]"
        if bus.port in ports:
            problems.append(
                f"{where}.port: duplicate port {bus.port!r} (also serial_buses[{ports[bus.port]}])"
            )
            continue
        ports[bus.port] = index
        if bus.profile not in document.profiles:
            problems.append(f"{where}.profile: {_unknown_profile(bus.profile, document)}")
        bus_profiles[bus.port] = bus.profile
    return bus_profiles


def _check_devices(
    document: EdgeConfigDocument,
    bus_profiles: dict[str, str],
    profiles: dict[str, DeviceProfile],
    problems: list[str],
) -> None:
    ids: dict[str, int] = {}
    addresses: dict[tuple[str, str], int] = {}  # (bus or "profile:<name>", address) → index
    for index, device in enumerate(document.devices):
        where = f"config.devices[{index}]"
        if device.device_id in ids:
            problems.append(
                f"{where}.device_id: duplicate device {device.device_id!r} "
                f"(also devices[{ids[device.device_id]}])"
            )
            continue
        ids[device.device_id] = index
        if device.profile not in document.profiles:
            problems.append(
                f"{where}.profile: {device.device_id!r}: "
                f"{_unknown_profile(device.profile, document)}"
            )
            continue
        if device.bus is not None:
            bus_profile = bus_profiles.get(device.bus)
            if bus_profile is None:
                known = ", ".join(sorted(bus_profiles)) or "none"
                problems.append(
                    f"{where}.bus: {device.device_id!r}: unknown bus {device.bus!r} "
                    f"(the document's buses: {known})"
                )
                continue
            if bus_profile != device.profile:
                problems.append(
                    f"{where}.profile: {device.device_id!r} has profile {device.profile!r} "
                    f"but its bus {device.bus!r} runs {bus_profile!r}"
                )
                continue
        elif device.profile not in bus_profiles.values():
            problems.append(
                f"{where}.profile: no serial bus runs profile {device.profile!r}, so "
                f"{device.device_id!r} could not be heard"
            )
            continue
        place = (device.bus or f"profile:{device.profile}", device.address)
        if place in addresses:
            problems.append(
                f"{where}.address: duplicate address {device.address!r} on "
                f"{device.bus or 'the buses of profile ' + repr(device.profile)} "
                f"(also devices[{addresses[place]}])"
            )
            continue
        addresses[place] = index
        profile = profiles.get(device.profile)
        if profile is not None and address_from_device_id(profile, device.device_id) != (
            device.address
        ):
            problems.append(
                f"{where}.address: {device.address!r} does not match device id "
                f"{device.device_id!r} under the template {profile.device_id!r} of "
                f"profile {device.profile!r}"
            )


def check_config_document(document: EdgeConfigDocument) -> CheckedConfig:
    """The document with its profiles parsed, or ConfigDocumentError listing every problem."""
    problems: list[str] = []
    profiles = _parse_profiles(document, problems)
    bus_profiles = _check_buses(document, problems)
    _check_devices(document, bus_profiles, profiles, problems)
    if problems:
        raise ConfigDocumentError(problems)
    return CheckedConfig(document, profiles)
