"""Edge agent configuration: one YAML file, overridable by ``EDGE__...`` environment variables.

Example (``docs/configuration.md`` has the full annotated version)::

    edge_id: edge-building-7
    data_dir: /var/lib/community-edge      # the outbox database lives here
    profiles_dir: device_profiles
    broker: {host: hub.example, port: 8883, username: edge-building-7, tls_ca_file: ca.pem}
    serial_buses:                         # buses of listening devices (call buttons)
      - {port: /dev/ttyUSB0, profile: cb-100}
    devices:                              # polled and MQTT devices (issue #3)
      - {profile: water-meter, address: "7", port: /dev/ttyUSB1}
      - {profile: bin-sensor, address: "1", host: 10.0.0.8, port: 502}
      - {profile: fr-door, address: gate-3}
    local_broker: {host: 127.0.0.1, port: 1884, username: edge-local}

The broker passwords come from ``EDGE__BROKER__PASSWORD`` and
``EDGE__LOCAL_BROKER__PASSWORD``, never from the file.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator

from contract.config_file import ConfigError, load_config
from contract.mqtt import BrokerSettings
from edge.outbox import OutboxSettings
from edge.uplink import UplinkSettings

__all__ = ["ConfigError", "DeviceConfig", "EdgeConfig", "SerialBusConfig", "load_edge_config"]


class SerialBusConfig(BaseModel):
    model_config = {"extra": "forbid"}

    port: str = Field(min_length=1, description="device path, e.g. /dev/ttyUSB0 or a pty link")
    profile: str = Field(min_length=1, description="device profile name, e.g. cb-100")


class DeviceConfig(BaseModel):
    """One device of the installation; what it is comes from its profile."""

    model_config = {"extra": "forbid"}

    profile: str = Field(min_length=1, description="device profile name, e.g. water-meter")
    address: str = Field(
        min_length=1,
        max_length=64,
        description="Modbus unit id, 12-digit DL/T 645 meter address or MQTT device name",
    )
    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="device id; default: the profile's device_id template",
    )
    port: str | int | None = Field(
        default=None, description="serial device of an RS-485 bus, or the TCP port"
    )
    host: str | None = Field(default=None, min_length=1, description="Modbus TCP host")
    household_id: int | None = Field(default=None, ge=1)
    grid_id: int | None = Field(default=None, ge=1)
    place: str = Field(default="", max_length=100)


class EdgeConfig(BaseModel):
    model_config = {"extra": "forbid"}

    edge_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    data_dir: Path = Path("var/edge")
    profiles_dir: Path = Path("device_profiles")
    broker: BrokerSettings = BrokerSettings()
    uplink: UplinkSettings = UplinkSettings()
    outbox: OutboxSettings = OutboxSettings()  # caps, pressure level, alarm reserve
    serial_buses: list[SerialBusConfig] = []
    devices: list[DeviceConfig] = []
    # The local Mosquitto the MQTT devices (doors, lockers) talk to; None: no MQTT devices.
    local_broker: BrokerSettings | None = None
    # Time zone of cron poll schedules ("0 * * * *": every full hour, local time).
    timezone: str = Field(default="Asia/Shanghai", min_length=1)
    status_interval_s: float = Field(default=30.0, gt=0, le=3600)
    # A hub command whose absolute deadline has passed by this edge's clock by more than
    # this is expired on arrival (edge.command_deadline: clock skew between hub and edge).
    command_clock_tolerance_s: float = Field(default=2.0, ge=0, le=60)
    # Prometheus metrics on 127.0.0.1:<port>/metrics (edge.metrics); 0 or unset: off.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai)") from None
        return value

    @property
    def outbox_path(self) -> Path:
        return self.data_dir / "outbox.db"

    @property
    def config_dir(self) -> Path:
        """Where the hub's configuration documents are kept (``edge.remote_config``)."""
        return self.data_dir / "config"


def load_edge_config(path: str | Path | None) -> EdgeConfig:
    return load_config(path, EdgeConfig, env_prefix="EDGE")
