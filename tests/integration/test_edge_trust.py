"""Acceptance (issue #11): an edge speaks only for its own devices, and a quarantine flood
does not make the API fail, through the real broker with auth and real hub processes.

Two edges are provisioned through the API. The first, ``edge-demo``, is a real edge agent
with a simulated call button on a pty (the demo seed registers the button behind it);
the second, ``edge-b``, is a raw MQTT client with its own credentials that publishes
well-formed contract batches on its own topics, which the broker ACL allows. Its forged
``presence``, ``cancel`` and ``sos`` for the first edge's button must be quarantined with
the reason; the real case keeps its deadline and escalates; no case opens elsewhere; no
feedback goes to the forger. Then ``edge-b`` floods the hub with ~10,000 unknown-device
events per 1 MiB message while an operator keeps writing through the API: no 500.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from contract import Event, EventBatch, Lane, topics
from simulators.button import LedState, SimulatedButtonBus
from simulators.stack import Stack
from tests.conftest import wait_until
from tests.integration.conftest import api, query
from tests.integration.test_broker_acl import Client

pytestmark = pytest.mark.integration

EDGE = "edge-demo"  # the seeded buttons are registered behind it
FORGER = "edge-b"
BUTTON = 77626
DEADLINE_S = 60.0
MAX_MESSAGE = 1_048_576  # the contract's (and the broker's) limit


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.stop()
        for name, proc in [("hub", s.hub), *s.edges.items()]:
            if proc is not None and "Traceback" in proc.log_text():
                print(f"--- {name} log ---\n{proc.log_text()[-4000:]}")


@pytest.fixture
def forger_clients() -> Iterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.close()


async def provision(client: httpx.AsyncClient, edge_id: str) -> str:
    response = await client.post("/api/v1/edges", json={"edge_id": edge_id})
    assert response.status_code == 201, response.text
    return str(response.json()["password"])


def connect_forger(stack: Stack, password: str, opened: list[Client]) -> Client:
    forger = Client(stack.broker_port, FORGER, password)
    opened.append(forger)
    assert not forger.connect().is_failure
    assert not any(r.is_failure for r in forger.subscribe(topics.commands(FORGER)))
    assert not any(r.is_failure for r in forger.subscribe(topics.acks(FORGER)))
    return forger


def batch(incarnation: str, events: list[Event]) -> bytes:
    return EventBatch(FORGER, incarnation, tuple(events)).encode()


def acked_seqs(forger: Client) -> set[tuple[str, int]]:
    seqs = set()
    for topic, payload, _ in list(forger.messages):
        if topic == topics.acks(FORGER):
            body = json.loads(payload)
            seqs |= {(body["incarnation"], s) for s in body["seqs"]}
    return seqs


async def test_a_second_edge_cannot_act_for_the_first_edges_button(
    stack: Stack, tmp_path: Path, forger_clients: list[Client]
) -> None:
    stack.start_with_broker_auth(escalation={"grid_worker_s": 15, "backup_worker_s": 600})
    link = tmp_path / "bus0"
    async with (
        api(stack) as client,
        SimulatedButtonBus([BUTTON], link_path=link, retransmit_s=1.0) as bus,
    ):
        edge_password = await provision(client, EDGE)
        forger_password = await provision(client, FORGER)
        stack.start_edge(
            EDGE,
            [str(link)],
            broker={"host": "127.0.0.1", "port": stack.broker_port, "username": EDGE},
            extra_env={"EDGE__BROKER__PASSWORD": edge_password},
        )
        button = bus.button(BUTTON)
        button.press_sos()
        await wait_until(
            lambda: LedState.RECEIVED in button.led_history, DEADLINE_S, message="0x81 received"
        )
        [case] = (await client.get("/api/v1/cases")).json()
        assert (case["state"], case["tier"]) == ("dispatched", 0)
        deadline = case["deadline_at"]

        forger = connect_forger(stack, forger_password, forger_clients)
        now = datetime.now(UTC)
        device = f"cb100-{BUTTON}"
        normal = [
            Event(1, device, "presence", Lane.NORMAL, now, {"frame_seq": 200}),
            Event(2, device, "cancel", Lane.NORMAL, now, {"frame_seq": 201}),
        ]
        alarms = [
            Event(3, device, "sos", Lane.ALARM, now, {"frame_seq": 202}),
            Event(4, "cb100-77627", "sos", Lane.ALARM, now, {"frame_seq": 1}),
            Event(5, "cb100-77628", "fall", Lane.ALARM, now, {"frame_seq": 1}),
        ]
        assert not forger.publish(
            topics.events(FORGER, Lane.NORMAL), batch("f1", normal)
        ).is_failure
        assert not forger.publish(topics.events(FORGER, Lane.ALARM), batch("f2", alarms)).is_failure
        # The hub acks what it has committed (quarantined included): the forgeries are done.
        await wait_until(
            lambda: len(acked_seqs(forger)) == 5, DEADLINE_S, message="forgeries acked"
        )
        rows = [
            r
            for r in (await client.get("/api/v1/quarantine", params={"limit": 50})).json()
            if r["edge_id"] == FORGER
        ]
        assert sorted(r["device_id"] for r in rows) == sorted(e.device_id for e in normal + alarms)
        for row in rows:
            assert "belongs to edge edge-demo (sent by edge-b)" in row["reason"], row
            assert "属于边缘网关 edge-demo" in row["reason"]

        # The real case is as it was: nobody on site, no cancel, the same deadline ...
        body = (await client.get(f"/api/v1/cases/{case['id']}")).json()
        actions = [a["action"] for a in body["audit"]]
        assert not {"arrive", "request_cancel", "presence_hint", "join"} & set(actions), actions
        assert (body["arrived_at"], body["cancel_requested"]) == (None, False)
        if body["tier"] == 0:
            assert (body["state"], body["deadline_at"]) == ("dispatched", deadline)
        # ... and it escalates at that deadline.

        async def escalated() -> dict[str, Any] | None:
            found: dict[str, Any] = (await client.get(f"/api/v1/cases/{case['id']}")).json()
            return found if found["tier"] >= 1 else None

        body = await wait_until(escalated, DEADLINE_S, message="the real case escalates")
        step = next(a for a in body["audit"] if a["action"] == "escalate")
        assert datetime.fromisoformat(step["at"]) >= datetime.fromisoformat(deadline)
        assert [c["id"] for c in (await client.get("/api/v1/cases")).json()] == [case["id"]]
        # No feedback went to the forger; the real button heard only its own answer.
        assert [t for t in forger.topics_received() if t == topics.commands(FORGER)] == []
        commands = query(stack, "SELECT DISTINCT edge_id FROM commands")
        assert commands == [(EDGE,)]
        assert LedState.HELP_COMING not in button.led_history


def flood(incarnation: str, first_seq: int) -> tuple[bytes, int]:
    """One message of as many unknown-device events as fit under the contract's 1 MiB."""
    at = datetime.now(UTC)
    events = [
        Event(first_seq + n, f"x{first_seq + n}", "heartbeat", Lane.TELEMETRY, at, {})
        for n in range(10_000)
    ]
    while True:
        payload = EventBatch(FORGER, incarnation, tuple(events)).encode()
        if len(payload) <= MAX_MESSAGE - 1024:
            return payload, len(events)
        events = events[: len(events) - 50]


async def test_a_quarantine_flood_does_not_make_api_writes_fail(
    stack: Stack, forger_clients: list[Client]
) -> None:
    stack.start_with_broker_auth()
    async with api(stack) as client:
        forger = connect_forger(stack, await provision(client, FORGER), forger_clients)
        messages = [flood(f"flood-{n}", 1) for n in range(3)]
        total = sum(count for _, count in messages)
        assert all(len(p) > 1_000_000 for p, _ in messages) and total >= 3 * 9_000

        statuses: list[int] = []
        done = asyncio.Event()

        async def operator_writes() -> None:
            n = 0
            while not done.is_set():
                n += 1
                response = await client.patch("/api/v1/households/1", json={"notes": f"巡访 {n}"})
                statuses.append(response.status_code)
                assert response.status_code != 500, response.text

        writer = asyncio.create_task(operator_writes())
        try:
            await wait_until(lambda: len(statuses) >= 1, DEADLINE_S, message="writes")
            for payload, _ in messages:
                reason = await asyncio.to_thread(
                    forger.publish, topics.events(FORGER, Lane.TELEMETRY), payload
                )
                assert not reason.is_failure, reason
            writes_before = len(statuses)
            await wait_until(
                lambda: len(acked_seqs(forger)) >= total,
                300,
                interval=0.5,
                message="the flood acked",
            )
            writes_during = len(statuses) - writes_before
        finally:
            done.set()
            await writer
        assert set(statuses) == {200}, sorted(set(statuses))
        assert writes_during >= 1, "the API was written to while the flood was ingested"

        kept = query(stack, "SELECT COUNT(*) FROM quarantine WHERE edge_id = ?", FORGER)[0][0]
        dropped = (await client.get("/api/v1/quarantine/dropped")).json()
        assert kept <= 1000, "the per-edge cap"
        [row] = [d for d in dropped if d["edge_id"] == FORGER]
        assert (row["cause"], row["count"]) == ("edge_cap", total - kept)
        assert stack.hub is not None and stack.hub.running
