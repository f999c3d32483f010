"""Acceptance (issue #11, edge side): replayed button frames, command deadlines, and
command results from the wrong edge, through the real broker, hub and edge processes.

* A recorded SOS frame played back on the pty after the (shortened) dedupe window, and
  again after the edge was killed and restarted, is link-acked but is not a new event; a
  button that restarted (its counter back at 0) and one whose counter wrapped 65535 → 0
  still get their SOS through.
* An operator's ``open_door`` asked while the edge is down (``kill -9``; its persistent
  session makes the broker keep the command) ends ``expired``; the edge, restarted after
  the deadline, refuses it on arrival and the door simulator never receives it.
* With broker auth and two edges provisioned through the API, the second edge publishes,
  with its own credentials on its own topic, a result for the first edge's command: the
  hub quarantines it with the reason and the command's state is unchanged; the first
  edge's own result is then accepted.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from contract import CommandResult, topics
from edge.codecs.cb100 import FrameType, encode
from edge.drivers.base import DeviceEntry
from edge.local_broker import write_local_broker_files
from profiles.loader import load_profile
from simulators.broker import free_port
from simulators.button import SimulatedButtonBus
from simulators.door import SimulatedDoor
from simulators.stack import REPO_ROOT, Stack
from tests.conftest import wait_until
from tests.integration.conftest import api
from tests.integration.test_broker_acl import Client

pytestmark = pytest.mark.integration

WAIT_S = 60.0  # a shared, busy machine: every wait ends as soon as its condition holds
EDGE = "edge-demo"  # the seeded demo buttons 77626-77628 belong to it
DEDUPE_S = 1.0


async def _edge_info(client: httpx.AsyncClient, edge_id: str) -> dict[str, Any]:
    rows = (await client.get("/api/v1/edges")).json()
    return next((r["info"] for r in rows if r["edge_id"] == edge_id and r["online"]), {})


async def _sos_seqs(client: httpx.AsyncClient, device_id: str) -> list[int]:
    rows = (
        await client.get("/api/v1/events", params={"device_id": device_id, "kind": "sos"})
    ).json()
    return sorted(int(r["data"]["frame_seq"]) for r in rows)


async def _events(client: httpx.AsyncClient, device_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        await client.get("/api/v1/events", params={"device_id": device_id, "kind": "sos"})
    ).json()
    return rows


def _replays(info: dict[str, Any]) -> int:
    return sum(int(bus.get("replays", 0)) for bus in info.get("buses", []))


async def test_a_replayed_sos_is_not_a_new_event_and_restarted_or_wrapped_buttons_get_through(
    stack: Stack, tmp_path: Path
) -> None:
    stack.start_hub()
    link = tmp_path / "bus0"
    metrics_port = free_port()
    edge_config: dict[str, Any] = {
        "status_interval_s": 0.5,
        "outbox": {"dedupe_window_s": DEDUPE_S},
        "metrics_port": metrics_port,
    }
    async with SimulatedButtonBus(link_path=link, retransmit_s=1.0) as bus, api(stack) as client:
        button = bus.add_button(77626, first_seq=1000)
        edge = stack.start_edge(EDGE, [str(link)], **edge_config)
        await wait_until(lambda: _edge_info(client, EDGE), WAIT_S, 0.2, "edge online")

        sos = button.press_sos()
        recorded = encode(sos)  # what an attacker listening on the bus keeps
        await wait_until(
            lambda: _sos_seqs(client, "cb100-77626"), WAIT_S, 0.2, "the SOS at the hub"
        )

        def acks_of(seq: int) -> int:
            return sum(1 for f in button.received if f.type == FrameType.LINK_ACK and f.seq == seq)

        acked = acks_of(1000)
        # Past the dedupe window: a time condition, not a synchronisation.
        since = time.monotonic()
        await wait_until(lambda: time.monotonic() - since > 2 * DEDUPE_S, 10, 0.1, "window")
        bus.write(recorded)
        await bus.wait_for(lambda: acks_of(1000) > acked, WAIT_S)  # the line goes quiet
        # Either the edge counts it as a replay, or (the bug) it reaches the hub as an SOS.
        await wait_until(
            lambda: _replayed_or_recorded(client, 1), WAIT_S, 0.2, "the replay handled"
        )
        assert await _sos_seqs(client, "cb100-77626") == [1000]
        assert _replays(await _edge_info(client, EDGE)) == 1
        metrics = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        replays = f'edge_bus_errors_total{{bus="{link}",reason="replay"}} 1.0'
        assert replays in metrics, metrics

        # kill -9 and restart the edge: the window comes back from the outbox.
        await asyncio.to_thread(edge.kill)
        edge = stack.start_edge(EDGE, [str(link)], **edge_config)
        button.heartbeat()  # acked once the new edge reads the line
        await bus.wait_for(lambda: not button.pending_seqs, WAIT_S)
        acked = acks_of(1000)
        bus.write(recorded)
        await bus.wait_for(lambda: acks_of(1000) > acked, WAIT_S)
        await wait_until(
            lambda: _replayed_or_recorded(client, 1), WAIT_S, 0.2, "the replay handled"
        )
        assert await _sos_seqs(client, "cb100-77626") == [1000]

        # The button lost power (battery change): it counts again from 0. Taken, flagged.
        button.stop()
        restarted = bus.add_button(77626, first_seq=0)
        restarted.press_sos()
        seqs = await wait_until(
            lambda: _seqs_when(client, "cb100-77626", 2), WAIT_S, 0.2, "the restarted SOS"
        )
        # The alarm lane is in order: a recorded replay would have arrived before this one.
        assert seqs == [0, 1000]
        flagged = {
            e["data"]["frame_seq"]: e["data"].get("seq_restart")
            for e in await _events(client, "cb100-77626")
        }
        assert flagged == {0: True, 1000: None}

        # A button whose counter wraps: 65534, 65535, then 0 — every SOS gets through.
        wrapping = bus.add_button(77627, first_seq=65534)
        wrapping.heartbeat()
        for _ in range(2):
            wrapping.press_sos()
            await bus.wait_for(lambda: not wrapping.pending_seqs, WAIT_S)
        assert await wait_until(
            lambda: _seqs_when(client, "cb100-77627", 2), WAIT_S, 0.2, "both SOS of 77627"
        ) == [0, 65535]
        assert not any(e["data"].get("seq_restart") for e in await _events(client, "cb100-77627"))
        assert edge.running


async def _replayed_or_recorded(client: httpx.AsyncClient, n: int) -> bool:
    """The edge (this process) counted ``n`` replays, or a second SOS reached the hub."""
    info = await _edge_info(client, EDGE)
    return _replays(info) >= n or len(await _sos_seqs(client, "cb100-77626")) > 1


async def _seqs_when(client: httpx.AsyncClient, device_id: str, n: int) -> list[int]:
    seqs = await _sos_seqs(client, device_id)
    return seqs if len(seqs) >= n else []


# --- command deadlines ---------------------------------------------------------------------

DOOR_EDGE = "edge-doors"
DOOR_ADDRESS = "gate-1"
DOOR_ID = f"door-{DOOR_ADDRESS}"


async def test_an_open_door_asked_while_the_edge_is_down_expires_and_never_reaches_the_door(
    stack: Stack, tmp_path: Path
) -> None:
    stack.start_hub(command_retry_s=0.5)
    profile = load_profile(REPO_ROOT / "device_profiles" / "fr-door.yaml")
    edge_password = secrets.token_urlsafe(24)
    files = write_local_broker_files(
        tmp_path / "local-broker",
        [DeviceEntry(DOOR_ID, profile, DOOR_ADDRESS)],
        edge_username="edge-local",
        edge_password=edge_password,
        store=tmp_path / "store",
    )
    from edge.local_broker import read_passwords

    local = await asyncio.to_thread(
        stack.start_local_broker,
        "local-broker",
        password_file=files.password_file,
        acl_file=files.acl_file,
    )
    door = SimulatedDoor(
        "127.0.0.1",
        local.port,
        address=DOOR_ADDRESS,
        username=DOOR_ID,
        password=read_passwords(tmp_path / "store")[DOOR_ID],
        heartbeat_s=1.0,
    )
    edge_config: dict[str, Any] = {
        "status_interval_s": 0.5,
        "devices": [{"profile": "fr-door", "address": DOOR_ADDRESS}],
        "local_broker": {"host": "127.0.0.1", "port": local.port, "username": "edge-local"},
    }
    env = {"EDGE__LOCAL_BROKER__PASSWORD": edge_password}
    await door.start()
    try:
        async with api(stack) as client:
            grid = (await client.get("/api/v1/grids")).json()[0]["id"]
            registered = await client.post(
                "/api/v1/devices",
                json={
                    "id": DOOR_ID,
                    "profile": "fr-door",
                    "grid_id": grid,
                    "edge_id": DOOR_EDGE,
                },
            )
            assert registered.status_code == 201, registered.text
            edge = stack.start_edge(DOOR_EDGE, [], extra_env=env, **edge_config)
            await wait_until(lambda: _edge_info(client, DOOR_EDGE), WAIT_S, 0.2, "edge online")

            # The edge dies; its persistent session stays, so the broker keeps its commands.
            await asyncio.to_thread(edge.kill)
            sent = await client.post(
                f"/api/v1/devices/{DOOR_ID}/commands",
                json={"name": "open_door", "args": {"duration_s": 3}},
            )
            assert sent.status_code == 202, sent.text
            command_id = sent.json()["command_id"]

            created = datetime.fromisoformat(sent.json()["created_at"]).timestamp()

            async def state() -> dict[str, Any]:
                found: dict[str, Any] = (await client.get(f"/api/v1/commands/{command_id}")).json()
                return found

            # Past the deadline (open_door: 10 s) and the edge's clock tolerance (2 s): a
            # time condition, not a synchronisation.
            await wait_until(lambda: time.time() > created + 10 + 3, 30, 0.1, "past the deadline")

            at_hub = await state()  # the hub gave up at the deadline (retry every 0.5 s)

            # The edge comes back after the deadline and gets the command the broker kept.
            stack.start_edge(DOOR_EDGE, [], extra_env=env, **edge_config)

            async def answered() -> dict[str, Any]:
                command = await state()
                arrived = "on arrival at the edge" in command["detail"]
                return command if arrived or door.commands else {}

            command = await wait_until(answered, WAIT_S, 0.2, "the edge's answer")
            # The door never received it (on the old code it opened, minutes late in life).
            assert door.commands == []
            assert door.opened == []
            assert at_hub["state"] == "expired", at_hub
            assert command["state"] == "expired", command
            deadline_at = datetime.fromisoformat(command["deadline_at"]).timestamp()
            assert abs(deadline_at - (created + 10)) < 0.01

            async def expired_counted() -> dict[str, Any]:
                info = await _edge_info(client, DOOR_EDGE)
                return info if info.get("commands", {}).get("commands_expired") else {}

            await wait_until(expired_counted, WAIT_S, 0.2, "the edge counted it")
    finally:
        await door.stop()


# --- command result origin -----------------------------------------------------------------

EDGE_A, EDGE_B = "edge-a", "edge-b"
BUTTON_ID = "cb100-99001"


async def test_a_result_from_another_edge_is_quarantined_and_the_command_is_unchanged(
    tmp_path: Path,
) -> None:
    stack = Stack(tmp_path)
    clients: list[Client] = []
    try:
        await asyncio.to_thread(stack.start_with_broker_auth)
        async with api(stack) as client:
            passwords = {}
            for edge_id in (EDGE_A, EDGE_B):
                issued = await client.post("/api/v1/edges", json={"edge_id": edge_id})
                assert issued.status_code == 201, issued.text
                passwords[edge_id] = issued.json()["password"]
            grid = (await client.get("/api/v1/grids")).json()[0]["id"]
            registered = await client.post(
                "/api/v1/devices",
                json={"id": BUTTON_ID, "profile": "cb-100", "grid_id": grid, "edge_id": EDGE_A},
            )
            assert registered.status_code == 201, registered.text
            # A command to edge A's button (deadline 300 s); nobody answers it yet.
            sent = await client.post(
                f"/api/v1/devices/{BUTTON_ID}/commands",
                json={"name": "button_feedback", "args": {"code": "help_coming"}},
            )
            assert sent.status_code == 202, sent.text
            command_id = sent.json()["command_id"]
            before = (await client.get(f"/api/v1/commands/{command_id}")).json()
            assert before["state"] == "sent"

            edge_b = Client(stack.broker_port, EDGE_B, passwords[EDGE_B])
            clients.append(edge_b)
            assert not (await asyncio.to_thread(edge_b.connect)).is_failure
            forged = CommandResult(command_id, BUTTON_ID, "ok", "shown (forged)").encode()
            reason = await asyncio.to_thread(edge_b.publish, topics.command_results(EDGE_B), forged)
            assert not reason.is_failure  # its own topic: the broker lets it through

            async def quarantined() -> list[dict[str, Any]]:
                rows = (await client.get("/api/v1/quarantine", params={"limit": 100})).json()
                return [r for r in rows if r["topic"] == topics.command_results(EDGE_B)]

            [row] = await wait_until(quarantined, WAIT_S, 0.2, "the forged result quarantined")
            assert f"sent to edge '{EDGE_A}'" in row["reason"], row["reason"]
            after = (await client.get(f"/api/v1/commands/{command_id}")).json()
            assert (after["state"], after["detail"], after["result_at"]) == (
                before["state"],
                before["detail"],
                before["result_at"],
            )

            # The edge the command went to is heard: the path itself works.
            edge_a = Client(stack.broker_port, EDGE_A, passwords[EDGE_A])
            clients.append(edge_a)
            assert not (await asyncio.to_thread(edge_a.connect)).is_failure
            real = CommandResult(command_id, BUTTON_ID, "ok", "shown").encode()
            await asyncio.to_thread(edge_a.publish, topics.command_results(EDGE_A), real)

            async def answered() -> dict[str, Any]:
                command: dict[str, Any] = (
                    await client.get(f"/api/v1/commands/{command_id}")
                ).json()
                return command if command["state"] == "ok" else {}

            done = await wait_until(answered, WAIT_S, 0.2, "edge A's result stored")
            assert done["detail"] == "shown"
    finally:
        for c in clients:
            c.close()
        await asyncio.to_thread(stack.stop)
        if stack.hub is not None and "Traceback" in stack.hub.log_text():
            print(f"--- hub log ---\n{stack.hub.log_text()[-4000:]}")
