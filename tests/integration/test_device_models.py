"""Acceptance (issue #3): every device model end to end, simulator → edge → hub → API.

One system for the whole module (starting it costs most of the time): the hub broker and
the hub as a process, a local Mosquitto with per-device accounts, the edge as a process,
and a small community of simulated devices (:class:`simulators.community.Community`, two
buildings): DL/T 645 meters on a pty, water meters on a Modbus RTU socat pty pair, bin
sensors on a pymodbus TCP server, doors and a parcel locker over MQTT. Each test drives
one model and reads the result through the hub's API:

* door: a ``face_pass`` is in the door's access log; ``door_forced`` → a ``door_alert`` task;
* locker: ``parcel_deposited`` is listed by ``GET /api/v1/parcels``;
* DL/T 645 meter: a reading with 220.1 V reaches the device's readings and state;
* water meter (Modbus RTU on a pty): ``water_reading`` values are in the device's state;
* bin sensor (Modbus TCP): fill ≥ 80 % → a ``collection`` task;
* an operator opens a door with ``POST /api/v1/devices/{id}/commands``; the command's
  result ``ok`` is visible through ``GET /api/v1/commands/{id}``;
* a door event published with the ``mosquitto_pub`` tool and the door's own account
  reaches the hub.

Tasks are read from ``GET /api/v1/tasks`` and filtered here by kind and device, so the
tests do not depend on which ``kind`` values the query parameter accepts.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar, cast

import httpx
import pytest
import pytest_asyncio

from edge.codecs import dlt645
from simulators.community import Community, grid_ids, hub_settings, plan_layout
from simulators.stack import Stack
from tests.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

WAIT_S = 45.0  # the machine may be busy; every wait ends as soon as its condition holds
T = TypeVar("T")


async def until(check: Callable[[], Awaitable[T]], message: str) -> T:
    """``wait_until`` for an async check, typed, polling the API every 0.2 s."""
    return cast(T, await wait_until(cast(Callable[[], Any], check), WAIT_S, 0.2, message))


@dataclass
class World:
    stack: Stack
    community: Community
    client: httpx.AsyncClient

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(path, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    async def events(self, device_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"device_id": device_id, "limit": 100}
        if kind is not None:
            params["kind"] = kind
        found: list[dict[str, Any]] = await self.get("/api/v1/events", **params)
        return found

    async def tasks(self, kind: str, device_id: str) -> list[dict[str, Any]]:
        rows = await self.get("/api/v1/tasks", limit=500)
        return [t for t in rows if t["kind"] == kind and t["device_id"] == device_id]

    async def state(self, device_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.get(f"/api/v1/devices/{device_id}/state")
        return found

    async def heard(self, device_id: str) -> None:
        """Wait until the hub has an event of ``device_id`` (so the edge listens to it)."""
        await until(lambda: self.events(device_id), f"a first event of {device_id}")


async def edge_online(stack: Stack, client: httpx.AsyncClient, edge_id: str) -> None:
    """Wait until the hub sees the edge online; fail at once, with its log, if it exited."""
    edge = stack.edges[edge_id]

    async def online() -> bool:
        if not edge.running:
            pytest.fail(f"the edge exited:\n{edge.log_text()[-3000:]}")
        edges = (await client.get("/api/v1/edges")).json()
        return any(e["edge_id"] == edge_id and e["online"] for e in edges)

    await until(online, f"{edge_id} online at the hub")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    stack = Stack(tmp_path_factory.mktemp("device-models"))
    try:
        await asyncio.to_thread(stack.start_broker)
        await asyncio.to_thread(lambda: stack.start_hub(**hub_settings()))
        async with httpx.AsyncClient(
            base_url=stack.hub_url, headers=stack.headers(), timeout=10
        ) as client:
            community = Community(stack, plan_layout(2, await grid_ids(client)))
            try:
                await community.start(client)
                await edge_online(stack, client, community.edge_id)
                yield World(stack, community, client)
            finally:
                await community.stop()
    finally:
        await asyncio.to_thread(stack.stop)
        for name, proc in [("hub", stack.hub), *stack.edges.items()]:
            if proc is not None and "Traceback" in proc.log_text():
                print(f"--- {name} log ---\n{proc.log_text()[-4000:]}")


async def test_a_face_pass_is_in_the_doors_access_log(world: World) -> None:
    building = world.community.layout.buildings[0]
    await world.heard(building.door_id)
    person = f"P-{secrets.token_hex(3)}"
    await world.community.doors[0].face_pass(person, 0.97)

    async def logged() -> list[dict[str, Any]]:
        rows = await world.get(f"/api/v1/doors/{building.door_id}/access-log")
        return [r for r in rows if r["person_id"] == person]

    [entry] = await until(logged, f"{person} in the access log")
    assert entry["kind"] == "face_pass" and entry["similarity"] == pytest.approx(0.97)


async def test_a_forced_door_gives_a_door_alert_task(world: World) -> None:
    building = world.community.layout.buildings[0]
    await world.heard(building.door_id)
    assert await world.tasks("door_alert", building.door_id) == []
    await world.community.doors[0].door_forced()
    [task] = await until(lambda: world.tasks("door_alert", building.door_id), "a door_alert task")
    assert task["state"] == "open" and task["grid_id"] == building.grid_id


async def test_a_deposited_parcel_is_listed(world: World) -> None:
    community = world.community
    locker, household = community.locker, community.layout.households[1]
    assert locker is not None
    await world.heard(community.layout.locker_id)
    parcel = f"SF{secrets.randbelow(10**10):010d}"
    await locker.deposit(9, household.hub_id, parcel)

    async def listed() -> list[dict[str, Any]]:
        rows = await world.get("/api/v1/parcels", device_id=community.layout.locker_id)
        return [r for r in rows if r["parcel_id"] == parcel]

    [row] = await until(listed, f"parcel {parcel} in GET /api/v1/parcels")
    assert (row["compartment"], row["household_id"], row["state"]) == (
        9,
        household.hub_id,
        "waiting",
    )


async def test_a_dlt645_meter_reading_reaches_readings_and_state(world: World) -> None:
    household = world.community.layout.households[0]
    meter_id = household.meter_id
    assert household.meter_address is not None and meter_id is not None
    meter = world.community.meters.meter(household.meter_address)
    meter.fixed[dlt645.DI_PHASE_A_VOLTAGE] = Decimal("220.1")

    async def read_220_1() -> list[dict[str, Any]]:
        points = await world.get(f"/api/v1/devices/{meter_id}/readings", field="voltage_v")
        return [p for p in points if p["value"] == pytest.approx(220.1)]

    await until(read_220_1, "a meter_reading of 220.1 V in the readings")

    async def in_state() -> bool:
        values = (await world.state(meter_id))["values"]
        return values.get("voltage_v") == pytest.approx(220.1) and "energy_kwh" in values

    await until(in_state, "220.1 V in the meter's state")
    readings = await world.events(meter_id, "meter_reading")
    assert readings and {r["lane"] for r in readings} == {"telemetry"}


async def test_a_water_meter_on_modbus_rtu_reaches_state(world: World) -> None:
    building = world.community.layout.buildings[0]
    simulated = world.community.water_meter(0)

    async def in_state() -> dict[str, Any]:
        state = await world.state(building.water_meter_id)
        values: dict[str, Any] = state["values"]
        return values if {"total_m3", "flow_m3h"} <= set(values) else {}

    values = await until(in_state, "water_reading values in the state")
    assert 123.456 <= values["total_m3"] <= simulated.total_m3 + 0.001
    [event] = (await world.events(building.water_meter_id, "water_reading"))[:1]
    assert event["lane"] == "telemetry" and set(event["data"]) == {"total_m3", "flow_m3h"}


async def test_a_full_bin_on_modbus_tcp_gives_a_collection_task(world: World) -> None:
    building = world.community.layout.buildings[1]
    await world.heard(building.bin_id)
    assert await world.tasks("collection", building.bin_id) == []
    world.community.bin_sensor(1).force("full")

    async def full_reading() -> bool:
        return any(
            e["data"].get("fill_pct", 0) >= 80
            for e in await world.events(building.bin_id, "bin_reading")
        )

    await until(full_reading, "a bin_reading of 95 %")
    [task] = await until(lambda: world.tasks("collection", building.bin_id), "a collection task")
    assert task["state"] == "open"


async def test_an_operator_opens_a_door_through_the_api(world: World) -> None:
    building = world.community.layout.buildings[1]
    door = world.community.doors[1]
    await world.heard(building.door_id)
    response = await world.client.post(
        f"/api/v1/devices/{building.door_id}/commands",
        json={"name": "open_door", "args": {"duration_s": 3}},
    )
    assert response.status_code == 202, response.text
    command_id = response.json()["command_id"]

    async def finished() -> dict[str, Any]:
        command: dict[str, Any] = await world.get(f"/api/v1/commands/{command_id}")
        return command if command["state"] not in ("pending", "sent") else {}

    command = await until(finished, "the command's result")
    assert (command["state"], command["device_id"]) == ("ok", building.door_id), command["detail"]
    assert door.opened == [3]


async def test_a_door_event_sent_with_mosquitto_pub_reaches_the_hub(world: World) -> None:
    mosquitto_pub = shutil.which("mosquitto_pub")
    assert mosquitto_pub is not None, "install mosquitto-clients"
    community = world.community
    building = community.layout.buildings[1]
    assert community.local_broker is not None
    await world.heard(building.door_id)
    card = f"C-{secrets.token_hex(4)}"
    message = {"type": "card_pass", "event_id": f"cli-{card}", "card_id": card}
    process = await asyncio.create_subprocess_exec(
        mosquitto_pub,
        "-h", "127.0.0.1",
        "-p", str(community.local_broker.port),
        "-u", building.door_id,
        "-P", community.passwords[building.door_id],
        "-i", f"{building.door_id}-cli",
        "-q", "1",
        "-t", f"devices/{building.door_address}/events",
        "-m", json.dumps(message),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, output

    async def arrived() -> list[dict[str, Any]]:
        rows = await world.events(building.door_id, "card_pass")
        return [r for r in rows if r["data"].get("card_id") == card]

    [event] = await until(arrived, f"card_pass {card} at the hub")
    assert event["edge_id"] == community.edge_id and event["lane"] == "normal"
