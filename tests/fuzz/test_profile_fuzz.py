"""Device profiles with mistakes: the loader names the file and never raises anything else.

An operator adds a device model by writing YAML; a typo must come back as a
:class:`ProfileError` that points at the file (and the field where there is one), never
as a traceback from deep inside the agent. Every shipped profile (the v1 CB-100 one and
the v2 serial/DL/T 645, Modbus RTU/TCP and MQTT ones) is mutated.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.errors import ProfileError
from profiles.loader import parse_profile
from tests.fuzz.test_contract_fuzz import _paths, json_values

PROFILES = Path(__file__).resolve().parents[2] / "device_profiles"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PER_PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOURCE = "device_profiles/fuzzed.yaml"
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
NAMES = sorted(p.stem for p in PROFILES.glob("*.yaml"))

# Values that hit the v2 rules rather than the type checks: other transport kinds and
# codecs, crons that are almost right, zero and non-finite scales, overlapping addresses.
TRICKY: st.SearchStrategy[Any] = st.sampled_from(
    [
        "serial", "modbus-rtu", "modbus-tcp", "mqtt", "tcp", "cb100", "dlt645", "modbus",
        "json", "0 * * * *", "61 * * * *", "0 * * *", "0 0 31 2 *", "0 9 * * 1", "*/0 * * * *",
        0, 0.0, -1, 1, 2, 65535, 65536, float("inf"), float("-inf"), float("nan"), 1e308,
        "{address}", "{serial}", "x-{address}-{address}", "devices/+/events", "rw", "r",
        "input", "holding", "u64", "f32", [], {}, None, True,
    ]
)  # fmt: skip


@cache
def _original(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((PROFILES / f"{name}.yaml").read_text())
    return loaded


def _parse_or_profile_error(text: str) -> None:
    try:
        parse_profile(text, SOURCE)
    except ProfileError as err:
        assert str(err).startswith(SOURCE), err


def _mutate(data: st.DataObject, profile: dict[str, Any], values: st.SearchStrategy[Any]) -> None:
    path = data.draw(st.sampled_from(list(_paths(profile))))
    parent = profile
    for part in path[:-1]:
        parent = parent[part]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(values)


def _dump(profile: dict[str, Any]) -> str:
    return yaml.dump(profile, Dumper=_DUMPER, allow_unicode=True)


@FUZZ
@given(text=st.text(max_size=300))
def test_any_text(text: str) -> None:
    _parse_or_profile_error(text)


@FUZZ
@given(data=st.data())
def test_a_shipped_profile_with_one_field_replaced_or_removed(data: st.DataObject) -> None:
    profile = copy.deepcopy(_original(data.draw(st.sampled_from(NAMES))))
    _mutate(data, profile, json_values)
    _parse_or_profile_error(_dump(profile))


@pytest.mark.parametrize("name", NAMES)
@PER_PROFILE
@given(data=st.data())
def test_each_profile_with_v2_mistakes(name: str, data: st.DataObject) -> None:
    profile = copy.deepcopy(_original(name))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        _mutate(data, profile, TRICKY | json_values)
    _parse_or_profile_error(_dump(profile))


def test_shipped_profiles_parse() -> None:
    assert {"cb-100", "fr-door", "parcel-locker", "dlt645-meter", "water-meter"} <= set(NAMES)
    assert "bin-sensor" in NAMES
    for name in NAMES:
        parse_profile(yaml.safe_dump(_original(name), allow_unicode=True), SOURCE)
