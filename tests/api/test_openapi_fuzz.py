"""Schemathesis against the hub's own OpenAPI document, over real HTTP.

A real ``python -m hub`` (seeded demo community, a private Mosquitto whose password and ACL
files the hub writes) is started once for the
module; schemathesis generates requests for every operation from the hub's schema and
checks that none answers 5xx and that every response matches its declared schema (status
code, content type, body). The static admin token authenticates, so the generated
requests reach the handlers instead of stopping at 401.

The schema is built from the same application code at import time (schemathesis'
``from_fixture`` does not work with this pytest); a test checks that it is the one the
running hub serves.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from hub.app import create_app
from hub.config import ApiSettings, HubConfig
from simulators.postgres import PostgresCluster, run_coroutine
from simulators.stack import Stack
from tests.conftest import BACKENDS_ENV, MigratedSchema

pytestmark = pytest.mark.integration

# Streams never end, so a generated request to one would hang until its timeout.
_SKIPPED_PATHS = ("/api/v1/workers/{worker_id}/stream", "/api/v1/stream/cases")


@pytest.fixture(scope="module")
def running_hub(
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    migrated_schema: MigratedSchema,
) -> Iterator[Stack]:
    stack = Stack(Path(tmp_path_factory.mktemp("openapi")))
    if os.environ.get(BACKENDS_ENV) == "postgres":  # the hub on PostgreSQL (docs/postgres.md)
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        stack.database_url = run_coroutine(cluster.create_database("openapi_fuzz"))
    migrated_schema.place(stack, request)
    try:
        stack.start_with_broker_auth()  # so edge provisioning is exercised too
        yield stack
    finally:
        stack.stop()


def _openapi() -> dict[str, object]:
    config = HubConfig(api=ApiSettings(token=SecretStr("x" * 32)))
    return create_app(config).openapi()


# What the issue asks: no 5xx, and no response that breaks its declared schema.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
OPENAPI = _openapi()
schema = schemathesis.openapi.from_dict(OPENAPI).exclude(path=list(_SKIPPED_PATHS))


def test_the_fuzzed_schema_is_the_served_one(running_hub: Stack) -> None:
    served = httpx.get(f"{running_hub.hub_url}/openapi.json", timeout=10).json()
    assert served["paths"].keys() == OPENAPI["paths"].keys()  # type: ignore[attr-defined]


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_5xx_and_responses_match_their_schema(
    case: schemathesis.Case[Any], running_hub: Stack
) -> None:
    case.call_and_validate(
        base_url=running_hub.hub_url, headers=running_hub.headers(), timeout=10, checks=CHECKS
    )
