"""Acceptance: device state, supervision and commands through a real Mosquitto.

The hub runs in this process with its whole lifespan (migrations on a real SQLite file,
the MQTT ingest with its persistent session, the device timer, the command dispatcher);
its API is called over ASGI with the static admin token. Events come in as an edge sends
them (an ``EventBatch`` published to the edge's events topic), and a fake edge — a paho
client on the edge's commands topic — answers commands with a ``CommandResult``.

The device handlers are put in place here (``hub.app.device_handlers`` patched), so the
test does not depend on how ``hub.handlers.features`` lists them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from contract import Command, CommandResult, Event, EventBatch, Lane, topics
from contract.mqtt import BrokerSettings
from hub.app import create_app
from hub.config import ApiSettings, HubConfig
from hub.handlers.device_state import DeviceStateHandler
from hub.handlers.router import DeviceEventHandler
from hub.handlers.supervision import SupervisionHandler, SupervisionSettings
from simulators.stack import REPO_ROOT, Stack
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

TOKEN = "integration-test-token-" + "x" * 16
BUILDING = "幸福里小区3号楼"
T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float, message: str) -> T:
    """``wait_until`` for an async check, typed (its own signature does not say what the
    awaited value is)."""
    return cast(T, await wait_until(cast(Callable[[], Any], check), timeout, message=message))


@contextlib.asynccontextmanager
async def running_hub(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    settings = SupervisionSettings(outage_min_devices=5, outage_window_s=1.0)

    def handlers(config: HubConfig) -> list[DeviceEventHandler]:
        return [DeviceStateHandler(), SupervisionHandler(settings)]

    monkeypatch.setattr("hub.app.device_handlers", handlers)
    config = HubConfig(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hub' / 'hub.db'}",
        broker=BrokerSettings(host="127.0.0.1", port=stack.broker_port),
        api=ApiSettings(token=SecretStr(TOKEN)),
        profiles_dir=REPO_ROOT / "device_profiles",
        device_tick_s=0.1,
    )
    app = create_app(config, seed_demo=True)
    async with app.router.lifespan_context(app):
        await wait_until(lambda: app.state.mqtt.connected, 20, message="hub connected")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://hub",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        ) as client:
            yield client


def mqtt_client(stack: Stack) -> paho.Client:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex}"
    )
    client.connect("127.0.0.1", stack.broker_port)
    client.loop_start()
    return client


@contextlib.contextmanager
def publisher(stack: Stack) -> Iterator[paho.Client]:
    client = mqtt_client(stack)
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


async def send(stack: Stack, edge_id: str, lane: Lane, events: list[Event]) -> None:
    def go() -> None:
        batch = EventBatch(edge_id, "test-incarnation", tuple(events))
        with publisher(stack) as client:
            info = client.publish(topics.events(edge_id, lane), batch.encode(), qos=1)
            info.wait_for_publish(10)
            assert info.is_published()

    await asyncio.to_thread(go)


async def register(client: httpx.AsyncClient, device_id: str, **fields: Any) -> None:
    body = {"id": device_id, "profile": "water-meter", "grid_id": 1} | fields
    response = await client.post("/api/v1/devices", json=body)
    assert response.status_code == 201, response.text


async def test_power_cut_is_one_outage_task_and_state_follows_the_events(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    async with running_hub(stack, tmp_path, monkeypatch) as client:
        dark = [f"wm-{n}" for n in range(1, 31)]
        for device_id in dark:
            await register(client, device_id, place=f"{BUILDING}地下室", edge_id="edge-b3")
        await register(client, "wm-99", place="东门", edge_id="edge-gate")  # on its own

        await send(
            stack,
            "edge-b3",
            Lane.TELEMETRY,
            [
                Event(1, "wm-1", "water_reading", Lane.TELEMETRY, now, {"total_m3": 12.5}),
                Event(
                    2,
                    "wm-1",
                    "water_reading",
                    Lane.TELEMETRY,
                    now + timedelta(seconds=1),
                    {"flow_m3h": 0.4},
                ),
            ],
        )

        async def state() -> dict[str, Any] | None:
            body: dict[str, Any] = (await client.get("/api/v1/devices/wm-1/state")).json()
            return body if body["values"] == {"total_m3": 12.5, "flow_m3h": 0.4} else None

        await eventually(state, 20, message="wm-1's readings in its state")
        series = await client.get("/api/v1/devices/wm-1/readings", params={"field": "total_m3"})
        assert [p["value"] for p in series.json()] == [12.5]

        cut = now + timedelta(seconds=5)
        offline = [
            Event(10 + n, d, "device.offline", Lane.NORMAL, cut, {"reason": "no answer"})
            for n, d in enumerate(dark)
        ]
        await send(stack, "edge-b3", Lane.NORMAL, offline)
        await send(
            stack,
            "edge-gate",
            Lane.NORMAL,
            [Event(1, "wm-99", "device.offline", Lane.NORMAL, cut, {"reason": "no answer"})],
        )

        async def maintenance() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = (
                await client.get("/api/v1/tasks", params={"kind": "maintenance"})
            ).json()
            return found

        # The lone device's task proves the window has passed for all of them.
        [lone] = await eventually(maintenance, 20, message="the lone device's maintenance task")
        assert lone["device_id"] == "wm-99"
        tasks = (await client.get("/api/v1/tasks", params={"limit": 500})).json()
        outages = [t for t in tasks if t["kind"] == "outage"]
        assert len(outages) == 1, tasks
        assert f"疑似停电：{BUILDING} 30 台设备离线" in outages[0]["detail"]
        assert outages[0]["grid_id"] == 1
        assert [t["kind"] for t in tasks if t["kind"] != "service_request"] == [
            "maintenance",
            "outage",
        ]
        dark_state = (await client.get("/api/v1/devices/wm-17/state")).json()
        assert (dark_state["online"], dark_state["offline_reason"]) == (False, "no answer")
        events = await client.get("/api/v1/events", params={"kind": "device.offline", "limit": 500})
        assert len(events.json()) == 31


async def test_a_command_round_trip_through_a_fake_edge(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[Command] = []

    def answer(client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        command = Command.decode(bytes(message.payload))
        received.append(command)
        result = CommandResult(command.command_id, command.device_id, "ok", "door opened")
        client.publish(topics.command_results("edge-gate"), result.encode(), qos=1)

    acked: list[int] = []
    edge = mqtt_client(stack)
    edge.on_message = answer
    edge.on_subscribe = lambda _c, _u, mid, _codes, _props: acked.append(mid)
    _, mid = edge.subscribe(topics.commands("edge-gate"), qos=1)
    try:
        await wait_until(lambda: mid in acked, 10, message="the fake edge subscribed")
        async with running_hub(stack, tmp_path, monkeypatch) as client:
            await register(client, "door-gate-3", profile="fr-door", edge_id="edge-gate")
            sent = await client.post(
                "/api/v1/devices/door-gate-3/commands",
                json={"name": "open_door", "args": {"duration_s": 5}},
            )
            assert sent.status_code == 202, sent.text
            command_id = sent.json()["command_id"]

            async def result() -> dict[str, Any] | None:
                body: dict[str, Any] = (await client.get(f"/api/v1/commands/{command_id}")).json()
                return body if body["state"] == "ok" else None

            done = await eventually(result, 20, message="the command's result")
            assert done["detail"] == "door opened"
            assert done["sent_at"] is not None and done["result_at"] is not None
            [command] = received
            assert (command.command_id, command.name, command.args["duration_s"]) == (
                command_id,
                "open_door",
                5,
            )
            listed = (await client.get("/api/v1/devices/door-gate-3/commands")).json()
            assert [(c["command_id"], c["state"]) for c in listed] == [(command_id, "ok")]
    finally:
        edge.disconnect()
        edge.loop_stop()
