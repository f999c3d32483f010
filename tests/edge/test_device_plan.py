"""The configured device list is checked against the profiles before anything connects,
every error naming file and field, and grouped the way the drivers own the devices."""

from __future__ import annotations

from typing import Any

import pytest

from edge.config import ConfigError, EdgeConfig
from edge.device_plan import plan_devices
from profiles.loader import load_profiles
from simulators.stack import REPO_ROOT

PROFILES = load_profiles(REPO_ROOT / "device_profiles")


def plan(devices: list[dict[str, Any]], **extra: Any) -> Any:
    config = EdgeConfig.model_validate({"edge_id": "e1", "devices": devices, **extra})
    return plan_devices(config, PROFILES, "edge.yaml")


def test_devices_are_grouped_by_the_driver_that_owns_them() -> None:
    result = plan(
        [
            {"profile": "water-meter", "address": "7", "port": "/dev/ttyUSB1"},
            {"profile": "water-meter", "address": "8", "port": "/dev/ttyUSB1"},
            {"profile": "dlt645-meter", "address": "000012345678", "port": "/dev/ttyUSB2"},
            {"profile": "bin-sensor", "address": "1", "host": "10.0.0.8", "port": 5020},
            {"profile": "bin-sensor", "address": "1", "host": "10.0.0.9", "id": "bin-b1"},
            {"profile": "fr-door", "address": "gate-3", "id": "door-east"},
        ],
        local_broker={"port": 1884, "username": "edge-local"},
    )
    assert [e.device_id for e in result.serial["modbus", "/dev/ttyUSB1"]] == ["wm-7", "wm-8"]
    assert [e.device_id for e in result.serial["dlt645", "/dev/ttyUSB2"]] == ["meter-000012345678"]
    assert [(e.host, e.port) for e in result.modbus_tcp] == [
        ("10.0.0.8", "5020"),
        ("10.0.0.9", "502"),
    ]
    assert [e.device_id for e in result.mqtt] == ["door-east"]
    assert len(result) == 6


@pytest.mark.parametrize(
    ("devices", "extra", "message"),
    [
        (
            [{"profile": "no-such", "address": "1", "port": "/dev/x"}],
            {},
            "edge.yaml: devices[0].profile: unknown profile 'no-such'",
        ),
        (
            [{"profile": "water-meter", "address": "7"}],
            {},
            "edge.yaml: devices[0].port: a modbus-rtu device needs the serial port",
        ),
        (
            [{"profile": "bin-sensor", "address": "1", "port": 502}],
            {},
            "edge.yaml: devices[0].host: a modbus-tcp device needs host",
        ),
        (
            [{"profile": "bin-sensor", "address": "1", "host": "h", "port": 70000}],
            {},
            "edge.yaml: devices[0].port: 70000 is not a TCP port",
        ),
        (
            [{"profile": "fr-door", "address": "gate-3"}],
            {},
            "edge.yaml: devices[0].profile: fr-door is an MQTT device; set local_broker",
        ),
        (
            [{"profile": "water-meter", "address": "300", "port": "/dev/x"}],
            {},
            "edge.yaml: devices[0].address:",
        ),
        (
            [
                {"profile": "water-meter", "address": "7", "port": "/dev/x"},
                {"profile": "water-meter", "address": "7", "port": "/dev/x", "id": "other"},
            ],
            {},
            "edge.yaml: devices[1].address: address '7' twice on the same bus (also devices[0])",
        ),
        (
            [
                {"profile": "water-meter", "address": "7", "port": "/dev/x"},
                {"profile": "water-meter", "address": "8", "port": "/dev/y", "id": "wm-7"},
            ],
            {},
            "edge.yaml: devices[1].id: device id 'wm-7' twice (also devices[0])",
        ),
        (
            [
                {"profile": "water-meter", "address": "7", "port": "/dev/x"},
                {"profile": "dlt645-meter", "address": "000012345678", "port": "/dev/x"},
            ],
            {},
            "edge.yaml: devices[1].port: devices on /dev/x must share one protocol",
        ),
        (
            [{"profile": "water-meter", "address": "7", "port": "/dev/x"}],
            {"serial_buses": [{"port": "/dev/x", "profile": "cb-100"}]},
            "edge.yaml: devices[0].port: /dev/x is a call-button bus",
        ),
        (
            [{"profile": "cb-100", "address": "77626", "port": "/dev/x"}],
            {},
            "edge.yaml: devices[0].profile: cb-100 devices are heard, not polled",
        ),
    ],
)
def test_a_wrong_device_list_names_file_and_field(
    devices: list[dict[str, Any]], extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        plan(devices, **extra)
    assert message in str(caught.value)


def test_an_mqtt_device_id_must_be_a_broker_account_name() -> None:
    with pytest.raises(ConfigError) as caught:
        plan(
            [{"profile": "fr-door", "address": "gate-3", "id": "door:east"}],
            local_broker={"port": 1884, "username": "edge-local"},
        )
    assert "edge.yaml: devices[0].id: invalid account name 'door:east'" in str(caught.value)
