"""From the configured device list to the drivers that run it.

The edge config lists devices (profile + address + where: serial port, TCP host/port or the
local MQTT broker); the profile says which transport and codec. This module checks the list
against the profiles before anything connects (every error names the file and the field,
``edge.yaml: devices[3].port: …``) and groups the devices the way drivers own them: one
driver per RS-485 port (one transaction at a time on the wire), one for all Modbus TCP
devices (bounded concurrency across them), one for all MQTT devices (one local broker
connection).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from contract.mosquitto_auth import check_account_name
from edge.config import ConfigError, DeviceConfig, EdgeConfig
from edge.drivers.base import DeviceEntry
from profiles.model import DeviceProfile

#: Transport kinds whose devices share a serial line, one driver per port.
SERIAL_KINDS = ("serial", "modbus-rtu")


@dataclass
class DevicePlan:
    """The configured devices, checked and grouped by the driver that will own them."""

    serial: dict[tuple[str, str], list[DeviceEntry]] = field(default_factory=dict)  # (codec, port)
    modbus_tcp: list[DeviceEntry] = field(default_factory=list)
    mqtt: list[DeviceEntry] = field(default_factory=list)

    def __len__(self) -> int:
        groups = [*self.serial.values(), self.modbus_tcp, self.mqtt]
        return sum(len(group) for group in groups)


def _where(source: str, index: int, key: str) -> str:
    return f"{source}: devices[{index}].{key}"


def _entry(device: DeviceConfig, profile: DeviceProfile, where: str) -> DeviceEntry:
    kind = profile.transport.kind
    if kind in SERIAL_KINDS:
        if not isinstance(device.port, str) or device.host is not None:
            raise ConfigError(
                f"{where}port: a {kind} device needs the serial port it is wired to "
                "(e.g. port: /dev/ttyUSB1) and no host"
            )
        port: str | None = device.port
    elif kind == "modbus-tcp":
        if device.host is None:
            raise ConfigError(f"{where}host: a modbus-tcp device needs host (and port)")
        if isinstance(device.port, str) and not device.port.isdigit():
            raise ConfigError(f"{where}port: {device.port!r} is not a TCP port number")
        port = str(device.port if device.port is not None else 502)
        if not 1 <= int(port) <= 65535:
            raise ConfigError(f"{where}port: {port} is not a TCP port (1-65535)")
    else:  # mqtt: the device comes to the local broker
        if device.port is not None or device.host is not None:
            raise ConfigError(
                f"{where}port: an mqtt device connects to local_broker; it has no port or host"
            )
        port = None
    try:
        device_id = profile.device_id_for_address(device.address)  # checks the address too
    except ValueError as err:
        raise ConfigError(f"{where}address: {err}") from None
    return DeviceEntry(device.id or device_id, profile, device.address, port, device.host)


def plan_devices(config: EdgeConfig, profiles: dict[str, DeviceProfile], source: str) -> DevicePlan:
    plan = DevicePlan()
    seen_ids: dict[str, int] = {}
    seen_slots: dict[tuple[str, str, str], int] = {}
    line_of: dict[str, tuple[int, DeviceProfile]] = {}
    cb100_ports = {bus.port for bus in config.serial_buses}
    for index, device in enumerate(config.devices):
        where = f"{source}: devices[{index}]."
        profile = profiles.get(device.profile)
        if profile is None:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(
                f"{_where(source, index, 'profile')}: unknown profile {device.profile!r} "
                f"(profiles in {config.profiles_dir}: {known})"
            )
        if profile.codec == "cb100":
            raise ConfigError(
                f"{_where(source, index, 'profile')}: {device.profile} devices are heard, not "
                "polled: list their bus under serial_buses"
            )
        entry = _entry(device, profile, where)
        if entry.device_id in seen_ids:
            raise ConfigError(
                f"{_where(source, index, 'id')}: device id {entry.device_id!r} twice "
                f"(also devices[{seen_ids[entry.device_id]}])"
            )
        seen_ids[entry.device_id] = index
        slot = (entry.host or "", entry.port or "", entry.address)
        if slot in seen_slots:
            raise ConfigError(
                f"{_where(source, index, 'address')}: address {entry.address!r} twice on the "
                f"same bus (also devices[{seen_slots[slot]}])"
            )
        seen_slots[slot] = index
        kind = profile.transport.kind
        if kind in SERIAL_KINDS:
            assert entry.port is not None
            if entry.port in cb100_ports:
                raise ConfigError(
                    f"{_where(source, index, 'port')}: {entry.port} is a call-button bus "
                    "(serial_buses); a polled device needs its own bus"
                )
            first = line_of.setdefault(entry.port, (index, profile))
            if first[1].transport != profile.transport or first[1].codec != profile.codec:
                raise ConfigError(
                    f"{_where(source, index, 'port')}: devices on {entry.port} must share one "
                    f"protocol and line settings; {device.profile} differs from "
                    f"devices[{first[0]}] ({first[1].identity.name})"
                )
            plan.serial.setdefault((profile.codec, entry.port), []).append(entry)
        elif kind == "modbus-tcp":
            plan.modbus_tcp.append(entry)
        else:
            if config.local_broker is None or config.local_broker.username is None:
                raise ConfigError(
                    f"{_where(source, index, 'profile')}: {device.profile} is an MQTT device; "
                    "set local_broker (host, port, username) for the edge to reach it"
                )
            try:  # the device logs in to the local broker under its id
                check_account_name(entry.device_id)
            except ValueError as err:
                raise ConfigError(f"{_where(source, index, 'id')}: {err}") from None
            plan.mqtt.append(entry)
    return plan


def by_port(entries: list[DeviceEntry]) -> dict[str, list[DeviceEntry]]:
    grouped: dict[str, list[DeviceEntry]] = defaultdict(list)
    for entry in entries:
        grouped[entry.port or ""].append(entry)
    return dict(grouped)
