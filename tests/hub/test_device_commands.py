"""Device commands in process (httpx over ASGI) on a real SQLite file, with the real
effect dispatcher publishing to a recording broker stand-in.

Devices registered here: door-gate-3 (grid 1, edge-1), door-gate-9 (grid 2, edge-2),
door-gate-5 (grid 1, no edge yet), bin-1 (grid 1, edge-1, a Modbus bin sensor). Worker 1
serves grid 1. Profiles are the repository's ``device_profiles/``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import Command, CommandResult, topics
from hub.app import create_app
from hub.db.schema import audit_log, commands, devices
from hub.domain.access import Principal, Role
from hub.domain.notification import Notification
from hub.effects import EffectDispatcher
from hub.services.device_commands import check_command
from hub.services.errors import InvalidInput
from profiles.loader import load_profile
from simulators.stack import REPO_ROOT
from tests.hub.api_as import acting_as, api_config, clients_as

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
PRINCIPALS = {
    "admin": Principal(kind="token", name="api", role=Role.ADMIN),
    "operator": Principal(kind="user", name="op", role=Role.OPERATOR),
    "hotline": Principal(kind="user", name="desk", role=Role.HOTLINE),
    "worker1": Principal(
        kind="user", name="wangli", role=Role.WORKER, worker_id=1, grid_ids=frozenset({1})
    ),
}


class RecordingBroker:
    connected = True

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        self.published.append((topic, payload))
        return True


class NoNotifier:
    async def notify(self, notification: Notification) -> None:
        raise AssertionError("a device command notifies nobody")


@pytest.fixture
def broker() -> RecordingBroker:
    return RecordingBroker()


@pytest.fixture
async def app(engine: AsyncEngine, broker: RecordingBroker) -> FastAPI:
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(devices).values(household_id=None),
            [
                {"id": "door-gate-3", "profile": "fr-door", "grid_id": 1, "edge_id": "edge-1"},
                {"id": "door-gate-9", "profile": "fr-door", "grid_id": 2, "edge_id": "edge-2"},
                {"id": "door-gate-5", "profile": "fr-door", "grid_id": 1, "edge_id": None},
                {"id": "bin-1", "profile": "bin-sensor", "grid_id": 1, "edge_id": "edge-1"},
            ],
        )
    config = api_config()
    app = create_app(config)
    effects = EffectDispatcher(engine, broker, NoNotifier(), lambda: T0)
    app.state.runtime = SimpleNamespace(
        config=config, engine=engine, clock=lambda: T0, effects=effects
    )

    acting_as(app, PRINCIPALS)
    return app


@pytest.fixture
async def clients(app: FastAPI) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with clients_as(app, PRINCIPALS) as made:
        yield made


async def rows(engine: AsyncEngine, table: sa.Table) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(sa.select(table))).mappings()]


async def test_a_command_is_stored_audited_published_and_shows_its_result(
    clients: dict[str, httpx.AsyncClient],
    app: FastAPI,
    engine: AsyncEngine,
    broker: RecordingBroker,
) -> None:
    sent = await clients["operator"].post(
        "/api/v1/devices/door-gate-3/commands",
        json={"name": "open_door", "args": {"duration_s": 5}},
    )
    assert sent.status_code == 202, sent.text
    body = sent.json()
    assert (body["state"], body["edge_id"], body["args"]) == ("sent", "edge-1", {"duration_s": 5})
    command_id = body["command_id"]

    [(topic, payload)] = broker.published
    assert topic == topics.commands("edge-1")
    command = Command.decode(payload)
    assert (command.command_id, command.device_id, command.name) == (
        command_id,
        "door-gate-3",
        "open_door",
    )
    assert command.args["duration_s"] == 5

    [audit] = await rows(engine, audit_log)
    assert (audit["actor"], audit["action"], audit["target_type"], audit["target_id"]) == (
        "user:op",
        "device.command",
        "device",
        "door-gate-3",
    )
    assert audit["after"] == {"command_id": command_id, "name": "open_door", "args": body["args"]}

    refused = await app.state.runtime.effects.on_result(
        "edge-1", CommandResult(command_id, "door-gate-3", "ok", "door opened for 5 s")
    )
    assert refused is None
    shown = (await clients["worker1"].get(f"/api/v1/commands/{command_id}")).json()
    assert (shown["state"], shown["detail"]) == ("ok", "door opened for 5 s")
    assert shown["result_at"] == "2025-03-03T01:00:00Z"
    listed = await clients["hotline"].get("/api/v1/devices/door-gate-3/commands")
    assert [c["command_id"] for c in listed.json()] == [command_id]


async def test_modbus_write_point_is_checked_against_the_points(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    ok = await clients["worker1"].post(
        "/api/v1/devices/bin-1/commands",
        json={"name": "write_point", "args": {"point": "report_interval_s", "value": 60}},
    )
    assert ok.status_code == 202, ok.text
    for args, says in (
        ({"point": "fill_pct", "value": 50}, "read-only"),
        ({"point": "report_interval_s", "value": 0}, "outside"),
        ({"point": "nope", "value": 1}, "point must be one of"),
    ):
        refused = await clients["operator"].post(
            "/api/v1/devices/bin-1/commands", json={"name": "write_point", "args": args}
        )
        assert refused.status_code == 422, refused.text
        assert says in refused.json()["detail"]


async def test_refusals_store_and_publish_nothing(
    clients: dict[str, httpx.AsyncClient], engine: AsyncEngine, broker: RecordingBroker
) -> None:
    door = "/api/v1/devices/door-gate-3/commands"
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("operator", "/api/v1/devices/door-x/commands", {"name": "open_door"}, 404, "not found"),
        ("operator", "/api/v1/devices/door-gate-5/commands", {"name": "open_door"}, 409, "edge"),
        ("operator", door, {"name": "open_dor"}, 422, "known: open_door, set_mode"),
        ("operator", door, {"name": "open_door", "args": {"duration_s": 600}}, 422, "duration_s"),
        ("operator", door, {"name": "open_door", "args": {}}, 422, "missing"),
        ("operator", door, {"name": "open_door", "args": {"duration_s": "5"}}, 422, "duration_s"),
        (
            "operator",
            door,
            {"name": "open_door", "args": {"duration_s": 5, "force": True}},
            422,
            "unexpected",
        ),
        ("operator", door, {"name": "set_mode", "args": {"mode": "party"}}, 422, "mode"),
        ("operator", door, {"name": "Open Door"}, 422, "name"),
        ("operator", door, {"name": "open_door", "bogus": 1}, 422, "bogus"),
        ("hotline", door, {"name": "open_door", "args": {"duration_s": 5}}, 403, "role"),
        (
            "worker1",
            "/api/v1/devices/door-gate-9/commands",
            {"name": "open_door", "args": {"duration_s": 5}},
            404,  # another grid's device is answered as a missing one (issue #11)
            "device door-gate-9 not found",
        ),
    ]
    for who, path, body, status, says in cases:
        response = await clients[who].post(path, json=body)
        assert response.status_code == status, (who, path, body, response.text)
        assert says in response.json()["detail"], (body, response.json())
    assert await rows(engine, commands) == []
    assert await rows(engine, audit_log) == []
    assert broker.published == []
    assert (await clients["admin"].get("/api/v1/commands/nope")).status_code == 404
    other_grid = await clients["worker1"].get("/api/v1/devices/door-gate-9/commands")
    assert other_grid.status_code == 404  # as a missing device (issue #11)


def test_call_button_feedback_needs_a_known_code() -> None:
    profile = load_profile(REPO_ROOT / "device_profiles" / "cb-100.yaml")
    check_command(profile, "button_feedback", {"code": "help_coming", "ref_seq": 3})
    for args in ({"code": "party"}, {}, {"code": "received", "ref_seq": -1}, {"x": 1}):
        with pytest.raises(InvalidInput):
            check_command(profile, "button_feedback", args)
