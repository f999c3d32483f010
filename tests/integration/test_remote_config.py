"""Acceptance: remote configuration with real parts — Mosquitto, ``python -m hub``,
``python -m edge`` and real ptys for the buttons.

A good configuration pushed by the hub is applied and a button on its new bus gets
through; a bad one published straight to the edge's topic (bypassing the hub's check) is
refused, the edge keeps running the previous one and the hub shows why; after ``kill -9``
the edge comes back on the last known good configuration, not on its YAML file's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from contract.remote_config import CONFIG_APPLIED, CONFIG_REFUSED
from simulators.button import SimulatedButtonBus
from simulators.stack import Stack
from tests.conftest import wait_until
from tests.integration.conftest import api, query

pytestmark = pytest.mark.integration

EDGE = "edge-demo"  # the seeded devices cb100-77626..77628 belong to it
OLD, NEW = 77626, 77627  # a button on the bus the YAML file names, one on a new bus
TIMEOUT = 30.0


@contextlib.asynccontextmanager
async def two_buses(tmp_path: Path) -> AsyncIterator[tuple[SimulatedButtonBus, SimulatedButtonBus]]:
    async with (
        SimulatedButtonBus([OLD], link_path=tmp_path / "bus0", retransmit_s=1.0) as bus0,
        SimulatedButtonBus([NEW], link_path=tmp_path / "bus1", retransmit_s=1.0) as bus1,
    ):
        yield bus0, bus1


def port(bus: SimulatedButtonBus) -> str:
    assert bus.link_path is not None
    return str(bus.link_path)


def events_of(stack: Stack, device_id: str, kind: str) -> list[dict[str, Any]]:
    rows = query(stack, "SELECT data FROM events WHERE device_id = ? AND kind = ?", device_id, kind)
    return [json.loads(data) for (data,) in rows]


async def reaches_hub(stack: Stack, bus: SimulatedButtonBus, serial: int) -> None:
    """A service request pressed now is link-acked by the edge and stored by the hub."""
    frame = bus.button(serial).request_service(3)
    await wait_until(
        lambda: any(
            d.get("frame_seq") == frame.seq
            for d in events_of(stack, f"cb100-{serial}", "service_request")
        ),
        TIMEOUT,
        message=f"service request of {serial} at the hub",
    )


async def edge_config(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get(f"/api/v1/edges/{EDGE}/config")
    return response.json() if response.status_code == 200 else {}


async def running_version(client: httpx.AsyncClient, version: int) -> dict[str, Any]:
    async def check() -> dict[str, Any]:  # empty: not yet
        body = await edge_config(client)
        running = body.get("running") or {}
        return body if running.get("online") and running.get("config_version") == version else {}

    return await wait_until(check, TIMEOUT, interval=0.1, message=f"edge runs version {version}")


def refusal_of(
    client: httpx.AsyncClient, version: int
) -> Callable[[], Coroutine[Any, Any, dict[str, Any]]]:
    """A condition: the hub shows the edge's refusal of ``version`` (empty: not yet)."""

    async def shown() -> dict[str, Any]:
        refused = ((await edge_config(client)).get("running") or {}).get("config_refused")
        return refused if refused and refused["version"] == version else {}

    return shown


async def push(client: httpx.AsyncClient, *ports: str) -> dict[str, Any]:
    response = await client.put(
        f"/api/v1/edges/{EDGE}/config",
        json={"serial_buses": [{"port": p, "profile": "cb-100"} for p in ports]},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _publish_retained(broker_port: int, topic: str, payload: bytes) -> None:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex}"
    )
    client.connect("127.0.0.1", broker_port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


async def publish_retained(stack: Stack, payload: bytes) -> None:
    """Straight to the edge's config topic, bypassing the hub and its check."""
    await asyncio.to_thread(_publish_retained, stack.broker_port, topics.config(EDGE), payload)


def mutated(document: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> bytes:
    copy = json.loads(json.dumps(document))
    change(copy)
    return json.dumps(copy).encode()


async def test_pushed_config_with_a_new_bus_is_applied(stack: Stack, tmp_path: Path) -> None:
    stack.start_hub()
    async with two_buses(tmp_path) as (bus0, bus1), api(stack) as client:
        stack.start_edge(EDGE, [port(bus0)], status_interval_s=0.5)
        await running_version(client, 0)  # its YAML file's buses

        refused = await client.put(
            f"/api/v1/edges/{EDGE}/config",
            json={"serial_buses": [{"port": port(bus0), "profile": "cb-999"}]},
        )
        assert refused.status_code == 422
        assert (
            "config.serial_buses[0].profile: unknown profile 'cb-999'" in refused.json()["detail"]
        )

        issued = await push(client, port(bus0), port(bus1))
        assert (issued["version"], issued["published"]) == (1, True)
        assert {d["device_id"]: d["address"] for d in issued["document"]["devices"]} == {
            "cb100-77626": "77626",
            "cb100-77627": "77627",
            "cb100-77628": "77628",
        }
        body = await running_version(client, 1)
        assert body["latest"]["version"] == 1 and body["running"]["config_refused"] is None

        await reaches_hub(stack, bus1, NEW)  # the new bus runs
        await reaches_hub(stack, bus0, OLD)  # and the old one still does

        edges = (await client.get("/api/v1/edges")).json()
        [info] = [e["info"] for e in edges if e["edge_id"] == EDGE]
        assert info["config_version"] == 1
        await wait_until(
            lambda: events_of(stack, EDGE, CONFIG_APPLIED), TIMEOUT, message="config.applied"
        )
        assert events_of(stack, EDGE, CONFIG_APPLIED)[0]["version"] == 1
        unregistered = query(stack, "SELECT reason FROM quarantine WHERE reason LIKE '%config.%'")
        assert unregistered == [], "the edge's own events must not be quarantined"
        audit = query(
            stack, "SELECT action FROM audit_log WHERE target_type = 'edge' AND target_id = ?", EDGE
        )
        assert ("edge.config.issue",) in audit


async def test_a_bad_device_list_is_refused_and_the_old_config_keeps_running(
    stack: Stack, tmp_path: Path
) -> None:
    stack.start_hub()
    async with two_buses(tmp_path) as (bus0, _bus1), api(stack) as client:
        stack.start_edge(EDGE, [port(bus0)], status_interval_s=0.5)
        good = (await push(client, port(bus0)))["document"]
        await running_version(client, 1)

        def unknown_profile(doc: dict[str, Any]) -> None:
            doc["version"] = 2
            doc["devices"].append(
                {"device_id": "cb100-99", "profile": "cb-999", "bus": port(bus0), "address": "99"}
            )

        def broken_profile(doc: dict[str, Any]) -> None:
            doc["version"] = 3
            doc["profiles"]["cb-100"] = "identity: [unclosed\n"

        for version, change, reason in [
            (2, unknown_profile, "config.devices[3].profile: 'cb100-99': unknown profile 'cb-999'"),
            (3, broken_profile, "config.profiles['cb-100']: line 2, column 1: not valid YAML"),
        ]:
            await publish_retained(stack, mutated(good, change))

            refused: dict[str, Any] = await wait_until(
                refusal_of(client, version), TIMEOUT, message=f"refusal of {version}"
            )
            assert reason in refused["reason"], refused

            body = await edge_config(client)
            assert body["running"]["config_version"] == 1
            assert body["latest"]["version"] == 1  # the hub never issued the bad ones
            await reaches_hub(stack, bus0, OLD)  # the old bus runs on

        edges = (await client.get("/api/v1/edges")).json()
        [info] = [e["info"] for e in edges if e["edge_id"] == EDGE]
        assert info["config_version"] == 1 and info["config_refused"]["version"] == 3
        await wait_until(
            lambda: len(events_of(stack, EDGE, CONFIG_REFUSED)) == 2,
            TIMEOUT,
            message="both refusals in the hub's history",
        )
        stored = json.loads((stack.workdir / EDGE / "config" / "current.json").read_text())
        assert stored["version"] == 1

        fixed = await push(client, port(bus0))  # the hub's next version supersedes the bad ones
        assert fixed["version"] == 2
        await wait_until(
            lambda: (
                json.loads((stack.workdir / EDGE / "config" / "current.json").read_text())[
                    "version"
                ]
                == 2
            ),
            TIMEOUT,
            message="version 2 from the hub stored",
        )


async def test_after_kill_9_the_edge_runs_the_last_known_good_config(
    stack: Stack, tmp_path: Path
) -> None:
    stack.start_hub()
    async with two_buses(tmp_path) as (bus0, bus1), api(stack) as client:
        edge = stack.start_edge(EDGE, [port(bus0)], status_interval_s=0.5)
        await push(client, port(bus1))  # move the edge to the new bus only
        await running_version(client, 1)
        await reaches_hub(stack, bus1, NEW)

        edge.kill()
        await publish_retained(stack, b"")  # clear the retained copy: only the disk has it
        edge.start()  # the same YAML file, which names bus0 only

        await wait_until(
            lambda: edge.log_text().count("last known good configuration version 1") >= 1,
            TIMEOUT,
            message="edge started from its stored configuration",
        )
        await running_version(client, 1)
        await reaches_hub(stack, bus1, NEW)
