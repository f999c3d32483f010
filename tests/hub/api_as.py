"""The hub's API in process, called as named principals: what the route tests share.

A test says who calls (``clients["worker1"].get(...)``); the app's authentication is
replaced by a header naming the principal, so the tests exercise the role and grid rules
of every route, not the log-in (that is ``test_auth.py`` and ``test_auth_login.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import httpx
from fastapi import FastAPI, Request
from pydantic import SecretStr

from hub.api.deps import authenticate
from hub.config import ApiSettings, HubConfig
from hub.domain.access import Principal
from simulators.stack import REPO_ROOT


def api_config() -> HubConfig:
    """A hub configuration with an API token and the shipped device profiles."""
    return HubConfig(
        api=ApiSettings(token=SecretStr("t" * 32)), profiles_dir=REPO_ROOT / "device_profiles"
    )


def acting_as(app: FastAPI, principals: Mapping[str, Principal]) -> None:
    """Requests to ``app`` are made by the principal their ``x-test-as`` header names."""

    async def as_test_header(request: Request) -> Principal:
        return principals[request.headers["x-test-as"]]

    app.dependency_overrides[authenticate] = as_test_header


@contextlib.asynccontextmanager
async def clients_as(
    app: FastAPI, principals: Mapping[str, Principal]
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """One in-process HTTP client per principal, each sending its name."""
    transport = httpx.ASGITransport(app=app)
    made = {
        name: httpx.AsyncClient(
            transport=transport, base_url="http://hub", headers={"x-test-as": name}
        )
        for name in principals
    }
    try:
        yield made
    finally:
        for client in made.values():
            await client.aclose()
