"""Device profiles with mistakes: the loader names the file and never raises anything else.

An operator adds a device model by writing YAML; a typo must come back as a
:class:`ProfileError` that points at the file (and the field where there is one), never
as a traceback from deep inside the agent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.errors import ProfileError
from edge.profiles.loader import parse_profile
from tests.fuzz.test_contract_fuzz import _paths, json_values

PROFILES = Path(__file__).resolve().parents[2] / "device_profiles"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOURCE = "device_profiles/fuzzed.yaml"


def _parse_or_profile_error(text: str) -> None:
    try:
        parse_profile(text, SOURCE)
    except ProfileError as err:
        assert str(err).startswith(SOURCE), err


def _originals() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted(PROFILES.glob("*.yaml"))]


@FUZZ
@given(text=st.text(max_size=300))
def test_any_text(text: str) -> None:
    _parse_or_profile_error(text)


@FUZZ
@given(data=st.data())
def test_a_shipped_profile_with_one_field_replaced_or_removed(data: st.DataObject) -> None:
    profile = data.draw(st.sampled_from(_originals()))
    path = data.draw(st.sampled_from(list(_paths(profile))))
    parent = profile
    for part in path[:-1]:
        parent = parent[part]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(json_values)
    _parse_or_profile_error(yaml.safe_dump(profile, allow_unicode=True))


def test_shipped_profiles_parse() -> None:
    for original in _originals():
        parse_profile(yaml.safe_dump(original, allow_unicode=True), SOURCE)
