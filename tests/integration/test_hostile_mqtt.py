"""Acceptance: hostile payloads on every topic the hub and the edge listen to.

Random bytes, broken and deeply nested JSON, oversized messages and well-formed JSON of the
wrong shape are published on each subscribed topic through the real broker. Both
processes must stay up, the hub must quarantine each message addressed to it with a
reason, the edge must count each one addressed to it, and a help call afterwards must
still get through.
"""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from contract import Lane, topics
from simulators.button import SimulatedButtonBus
from simulators.stack import Stack
from tests.conftest import wait_until
from tests.integration.conftest import api

pytestmark = pytest.mark.integration

EDGE = "edge-demo"
BUTTON = 77626
PAYLOADS: list[bytes] = [
    bytes(range(256)),  # not UTF-8
    b"{not json",
    b"[" * 100_000,  # nested deeper than any parser's stack
    b'{"v":1,"seqs":[' + b"9" * 5000 + b"]}",  # a 5,000-digit number
    b'{"v":1,"edge_id":"edge-demo","incarnation":"x","events":[{"seq":-1}]}',
    b'{"v":99}',
    b'"just a string"',
]
# Refused by the broker itself (max_packet_size = the contract's 1 MiB), so it never
# reaches either process; the decoders' own limit is covered in tests/fuzz.
OVERSIZED = b"x" * (1_048_576 + 10)
HUB_TOPICS = [topics.events(EDGE, lane) for lane in Lane] + [
    topics.command_results(EDGE),
    topics.status("edge-other"),
]
EDGE_TOPICS = [topics.acks(EDGE), topics.commands(EDGE), topics.HUB_STATUS]
CONFIG_TOPIC = topics.config(EDGE)  # refused as configuration, reported as config_refused


def publish(stack: Stack, topic: str, payload: bytes, tmp_path: Path) -> None:
    """Publish with mosquitto_pub; an oversized packet must be refused by the broker.

    With ``max_packet_size`` (issue #16: the deprecated ``message_size_limit`` dropped the
    payload silently) Mosquitto disconnects a client that sends a larger packet, so
    mosquitto_pub fails ("connection lost"); every other payload is accepted.
    """
    file = tmp_path / "payload.bin"
    file.write_bytes(payload)
    done = subprocess.run(
        ["mosquitto_pub", "-p", str(stack.broker_port), "-q", "1", "-t", topic, "-f", str(file)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if payload is OVERSIZED:
        assert done.returncode != 0, "the broker accepted a packet over max_packet_size"
    else:
        assert done.returncode == 0, done.stderr


async def test_garbage_on_every_topic_is_counted_and_nothing_stops(
    stack: Stack, tmp_path: Path
) -> None:
    stack.start_hub()
    link = tmp_path / "bus0"
    async with SimulatedButtonBus([BUTTON], link_path=link, retransmit_s=1.0) as bus:
        edge = stack.start_edge(EDGE, [str(link)], status_interval_s=0.5)
        async with api(stack) as client:

            async def edge_info() -> dict[str, Any]:
                rows = (await client.get("/api/v1/edges")).json()
                return next((r["info"] for r in rows if r["edge_id"] == EDGE and r["online"]), {})

            await wait_until(edge_info, 30, message="edge online")
            for topic in [*HUB_TOPICS, *EDGE_TOPICS, CONFIG_TOPIC]:
                for payload in [*PAYLOADS, OVERSIZED]:
                    publish(stack, topic, payload, tmp_path)

            expected_at_hub = len(HUB_TOPICS) * len(PAYLOADS)

            async def quarantined() -> list[dict[str, Any]]:
                rows = (await client.get("/api/v1/quarantine", params={"limit": 500})).json()
                return [r for r in rows if r["topic"] in HUB_TOPICS]

            rows = await wait_until(
                lambda: _at_least(quarantined, expected_at_hub), 60, message="quarantine rows"
            )
            assert all(r["reason"] for r in rows)
            info = await wait_until(
                lambda: _edge_counted(edge_info, len(EDGE_TOPICS) * len(PAYLOADS)),
                60,
                message="edge counted the bad messages",
            )
            assert info["bad_messages"] >= len(EDGE_TOPICS) * len(PAYLOADS)
            refused = await wait_until(
                lambda: _refusals(edge_info), 60, message="config garbage reported refused"
            )
            assert refused["reason"]
            assert stack.hub is not None and stack.hub.running
            assert edge.running

            # The hub status topic got garbage: the edge must still consider the hub online
            # once it re-announces, and a help call must get through.
            bus.button(BUTTON).press_sos()

            async def case_opened() -> list[dict[str, Any]]:
                cases: list[dict[str, Any]] = (await client.get("/api/v1/cases")).json()
                return cases

            [case] = await wait_until(case_opened, 30, message="case for the SOS")
            assert case["device_id"] == f"cb100-{BUTTON}"


async def _at_least(
    query: Callable[[], Awaitable[list[dict[str, Any]]]], n: int
) -> list[dict[str, Any]] | None:
    rows = await query()
    return rows if len(rows) >= n else None


async def _edge_counted(
    edge_info: Callable[[], Awaitable[dict[str, Any]]], n: int
) -> dict[str, Any] | None:
    info = await edge_info()
    return info if info.get("bad_messages", 0) >= n else None


async def _refusals(edge_info: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any] | None:
    refused: dict[str, Any] | None = (await edge_info()).get("config_refused")
    return refused
