"""The one check of a remote configuration document, shared by hub and edge: every kind of
mistake is refused with a reason that names the field."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from contract.remote_config import DeviceSpec, EdgeConfigDocument, SerialBusSpec
from profiles import load_profile, parse_profile
from profiles.config_check import (
    ConfigDocumentError,
    address_from_device_id,
    check_config_document,
)
from tests.edge.conftest import CB100_PROFILE

CB100 = CB100_PROFILE.read_text(encoding="utf-8")
BUS0, BUS1 = "/dev/ttyUSB0", "/dev/ttyUSB1"


def device(serial: int, bus: str | None = BUS0, profile: str = "cb-100") -> DeviceSpec:
    return DeviceSpec(f"cb100-{serial}", profile, bus, str(serial), None)


def document(
    *,
    buses: tuple[SerialBusSpec, ...] = (SerialBusSpec(BUS0, "cb-100"),),
    devices: tuple[DeviceSpec, ...] = (device(77626), device(77627)),
    profiles: dict[str, str] | None = None,
) -> EdgeConfigDocument:
    return EdgeConfigDocument(
        edge_id="edge-1",
        version=2,
        issued_at=datetime(2026, 1, 2, tzinfo=UTC),
        serial_buses=buses,
        devices=devices,
        profiles={"cb-100": CB100} if profiles is None else profiles,
    )


def problems(doc: EdgeConfigDocument) -> list[str]:
    with pytest.raises(ConfigDocumentError) as err:
        check_config_document(doc)
    assert str(err.value) == "; ".join(err.value.problems)
    return list(err.value.problems)


def test_a_good_document_passes_with_its_profiles_parsed() -> None:
    doc = document(
        buses=(SerialBusSpec(BUS0, "cb-100"), SerialBusSpec(BUS1, "cb-100")),
        devices=(device(77626), device(77627, bus=BUS1), device(77628, bus=None)),
    )
    checked = check_config_document(doc)
    assert checked.version == 2
    assert [(port, p.identity.name) for port, p in checked.bus_plan()] == [
        (BUS0, "cb-100"),
        (BUS1, "cb-100"),
    ]


def test_an_empty_document_is_fine() -> None:
    assert check_config_document(document(buses=(), devices=(), profiles={})).bus_plan() == []


def test_profile_text_that_is_not_yaml() -> None:
    [problem] = problems(document(profiles={"cb-100": "identity: [unclosed\n"}))
    assert problem.startswith("config.profiles['cb-100']: line ")
    assert "not valid YAML" in problem


def test_profile_that_breaks_the_profile_schema() -> None:
    broken = CB100.replace("lane: alarm", "lane: urgent", 1)
    found = problems(document(profiles={"cb-100": broken}))
    assert any(p.startswith("config.profiles['cb-100']: events[0].lane: ") for p in found)


def test_profile_filed_under_another_name() -> None:
    found = problems(document(profiles={"cb-100": CB100.replace("name: cb-100", "name: cb-x")}))
    assert "config.profiles['cb-100'].identity.name: 'cb-x' differs" in found[0]


def test_bus_with_unknown_profile_and_duplicate_port() -> None:
    found = problems(
        document(
            buses=(
                SerialBusSpec(BUS0, "cb-100"),
                SerialBusSpec(BUS0, "cb-100"),
                SerialBusSpec(BUS1, "cb-999"),
            ),
            devices=(),
        )
    )
    assert found[0].startswith("config.serial_buses[1].port: duplicate port '/dev/ttyUSB0'")
    assert found[1].startswith("config.serial_buses[2].profile: unknown profile 'cb-999'")
    assert "(the document's profiles: cb-100)" in found[1]


def test_device_with_unknown_profile() -> None:
    [problem] = problems(document(devices=(device(77626), device(77627, profile="cb-999"))))
    assert problem.startswith("config.devices[1].profile: 'cb100-77627': unknown profile 'cb-999'")


def test_device_on_unknown_bus() -> None:
    [problem] = problems(document(devices=(device(77626, bus="/dev/ttyS9"),)))
    assert problem.startswith("config.devices[0].bus: 'cb100-77626': unknown bus '/dev/ttyS9'")


def test_device_whose_profile_differs_from_its_bus() -> None:
    other = CB100.replace("name: cb-100", "name: cb-200")
    [problem] = problems(
        document(
            buses=(SerialBusSpec(BUS0, "cb-100"), SerialBusSpec(BUS1, "cb-200")),
            devices=(device(77626, bus=BUS1, profile="cb-100"),),
            profiles={"cb-100": CB100, "cb-200": other},
        )
    )
    assert problem.startswith("config.devices[0].profile: 'cb100-77626' has profile 'cb-100'")
    assert "runs 'cb-200'" in problem


def test_unplaced_device_whose_profile_no_bus_runs() -> None:
    [problem] = problems(document(buses=(), devices=(device(77626, bus=None),)))
    assert problem.startswith("config.devices[0].profile: no serial bus runs profile 'cb-100'")


def test_duplicate_device_and_duplicate_address() -> None:
    twin = dataclasses.replace(device(77626), device_id="cb100-77626")
    same_address = dataclasses.replace(device(77627), address="77626")
    found = problems(document(devices=(device(77626), twin, same_address)))
    assert found[0].startswith("config.devices[1].device_id: duplicate device 'cb100-77626'")
    assert found[1].startswith("config.devices[2].address: duplicate address '77626'")


def test_address_that_does_not_match_the_device_id() -> None:
    wrong = dataclasses.replace(device(77626), address="77627")
    [problem] = problems(document(devices=(wrong,)))
    assert problem.startswith("config.devices[0].address: '77627' does not match device id")


def test_every_problem_is_reported_not_only_the_first() -> None:
    found = problems(
        document(
            buses=(SerialBusSpec(BUS0, "cb-999"),),
            devices=(device(1, profile="cb-998"), device(2, bus="/dev/none")),
        )
    )
    assert len(found) == 3


def test_address_from_device_id() -> None:
    profile = load_profile(CB100_PROFILE)
    assert address_from_device_id(profile, "cb100-77626") == "77626"
    assert address_from_device_id(profile, "cb100-x") is None
    assert address_from_device_id(profile, "cb200-77626") is None
    assert address_from_device_id(profile, "cb100-99999999999") is None  # beyond uint32
    padded = parse_profile(CB100.replace('"cb100-{serial}"', '"cb-{serial:08d}"'), "p")
    assert address_from_device_id(padded, "cb-00077626") == "77626"
    assert address_from_device_id(padded, "cb-77626") is None
