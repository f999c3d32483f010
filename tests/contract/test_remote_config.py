"""The remote configuration document: strict decoding that names the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from contract import ContractError, topics
from contract.remote_config import (
    MAX_PROFILE_BYTES,
    DeviceSpec,
    EdgeConfigDocument,
    SerialBusSpec,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def document() -> EdgeConfigDocument:
    return EdgeConfigDocument(
        edge_id="edge-1",
        version=3,
        issued_at=T0,
        serial_buses=(SerialBusSpec("/dev/ttyUSB0", "cb-100"),),
        devices=(DeviceSpec("cb100-77626", "cb-100", "/dev/ttyUSB0", "77626", 4),),
        profiles={"cb-100": "identity: {name: cb-100}\n"},
    )


def obj() -> dict[str, Any]:
    return document().to_obj()


def decode(value: dict[str, Any]) -> EdgeConfigDocument:
    return EdgeConfigDocument.decode(json.dumps(value))


def test_round_trip_and_topic() -> None:
    doc = document()
    assert EdgeConfigDocument.decode(doc.encode()) == doc
    assert topics.config("edge-1") == "community/v1/edge/edge-1/config"


def test_a_device_may_have_no_bus_and_no_household() -> None:
    value = obj()
    value["devices"][0]["bus"] = None
    del value["devices"][0]["household_id"]
    device = decode(value).devices[0]
    assert (device.bus, device.household_id) == (None, None)


def _mutated(path: list[str | int], new: object) -> dict[str, Any]:
    value = obj()
    node: Any = value
    for key in path[:-1]:
        node = node[key]
    if new is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = new
    return value


@pytest.mark.parametrize(
    ("path", "new", "names"),
    [
        (["version"], 0, "config.version"),
        (["version"], True, "config.version"),
        (["version"], KeyError, "config.version: required"),
        (["issued_at"], "2026-01-02T03:04:05", "config.issued_at"),
        (["edge_id"], "", "config.edge_id"),
        (["serial_buses"], {}, "config.serial_buses"),
        (["serial_buses", 0, "port"], "  ", "config.serial_buses[0].port"),
        (["serial_buses", 0, "baud"], 9600, "config.serial_buses[0].baud: unknown field"),
        (["devices", 0, "profile"], KeyError, "config.devices[0].profile: required"),
        (["devices", 0, "address"], 77626, "config.devices[0].address"),
        (["devices", 0, "household_id"], "4", "config.devices[0].household_id"),
        (["devices", 0], "cb100-77626", "config.devices[0]: expected an object"),
        (["profiles"], [], "config.profiles"),
        (["profiles", "cb-100"], 7, "config.profiles['cb-100']"),
        (["profiles", "cb-100"], "x" * (MAX_PROFILE_BYTES + 1), "config.profiles['cb-100']"),
        (["extra"], 1, "config.extra: unknown field"),
    ],
)
def test_each_mistake_is_refused_naming_the_field(
    path: list[str | int], new: object, names: str
) -> None:
    with pytest.raises(ContractError) as err:
        decode(_mutated(path, new))
    assert names in str(err.value)


def test_not_json_or_wrong_contract_version() -> None:
    with pytest.raises(ContractError, match="not valid UTF-8 JSON"):
        EdgeConfigDocument.decode(b"{nope")
    with pytest.raises(ContractError, match="contract version"):
        decode({**obj(), "v": 2})
