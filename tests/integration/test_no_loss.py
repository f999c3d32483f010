"""Acceptance: nothing lost, nothing duplicated, alarms first — across a broker outage,
``kill -9`` of the hub and ``kill -9`` of the edge. Real processes, ptys and SQLite."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from simulators.broker import MosquittoProcess
from simulators.button import SimulatedButtonBus
from simulators.stack import Stack
from tests.conftest import wait_until
from tests.integration.conftest import query

pytestmark = pytest.mark.integration

EDGE = "edge-demo"
SERIALS = (77626, 77627, 77628)


def produced(bus: SimulatedButtonBus) -> set[tuple[str, int]]:
    """(device, frame seq) of every distinct frame the buttons sent."""
    return {(f"cb100-{b.serial}", f.seq) for b in bus.buttons.values() for f in b.sent}


def at_hub(stack: Stack) -> list[tuple[str, int, int, str]]:
    return [
        (d, int(s), int(i), k)
        for d, s, i, k in query(
            stack,
            "SELECT device_id, json_extract(data, '$.frame_seq'), id, kind FROM events ORDER BY id",
        )
    ]


def all_acked(bus: SimulatedButtonBus) -> bool:
    return all(not b.pending_seqs for b in bus.buttons.values())


def assert_exactly_once(stack: Stack, bus: SimulatedButtonBus) -> list[tuple[str, int, int, str]]:
    rows = at_hub(stack)
    keys = [(d, s) for d, s, _, _ in rows]
    assert len(keys) == len(set(keys)), "an event was committed twice at the hub"
    assert set(keys) == produced(bus)
    return rows


async def wait_all_at_hub(stack: Stack, bus: SimulatedButtonBus, timeout: float) -> None:
    await wait_until(lambda: all_acked(bus), timeout, message="every frame link-acked")
    want = len(produced(bus))
    await wait_until(
        lambda: len(at_hub(stack)) >= want, timeout, message=f"{want} events at the hub"
    )


@contextlib.asynccontextmanager
async def running(
    stack: Stack, tmp_path: Path, retransmit_s: float = 0.5
) -> AsyncIterator[SimulatedButtonBus]:
    link = tmp_path / "bus0"
    async with SimulatedButtonBus(SERIALS, link_path=link, retransmit_s=retransmit_s) as bus:
        stack.start_edge(EDGE, [str(link)], status_interval_s=0.5)
        yield bus


async def edge_online(stack: Stack) -> None:
    await wait_until(
        lambda: query(stack, "SELECT online FROM edge_status WHERE edge_id = ?", EDGE) == [(1,)],
        20,
        message="edge online at the hub",
    )


async def produce(
    bus: SimulatedButtonBus,
    count: int,
    *,
    sos_every: int = 0,
    pace_s: float = 0.0,
    midway: Callable[[], None] | None = None,
) -> None:
    buttons = [bus.button(s) for s in SERIALS]
    for i in range(count):
        button = buttons[i % len(buttons)]
        if sos_every and i % sos_every == sos_every // 2:
            button.press_sos()
        else:
            button.heartbeat(80)
        if midway is not None and i == count // 2:
            midway()
        if pace_s:
            await asyncio.sleep(pace_s)  # pacing the producer, not synchronisation
        elif i % 50 == 0:
            await asyncio.sleep(0)


async def test_broker_outage_loses_nothing_and_alarms_go_first(
    stack: Stack, tmp_path: Path
) -> None:
    stack.start_hub()
    async with running(stack, tmp_path, retransmit_s=2.0) as bus:
        await edge_online(stack)
        assert stack.broker is not None
        port = stack.broker.port
        stack.broker.kill()
        edge = stack.edges[EDGE]
        await wait_until(
            lambda: "connection to" in edge.log_text() and "lost" in edge.log_text(),
            10,
            message="edge noticed the broker is gone",
        )

        buttons = [bus.button(s) for s in SERIALS]
        for i in range(1000):
            buttons[i % 3].heartbeat(80)
            if i in (300, 600, 900):
                buttons[i % 3].press_sos()
            if i % 50 == 0:
                await asyncio.sleep(0)
        await wait_until(lambda: all_acked(bus), 30, message="all 1,003 frames in the outbox")
        assert len(produced(bus)) == 1003

        stack.broker = MosquittoProcess(stack.workdir / "broker2", port).start()
        await wait_all_at_hub(stack, bus, 60)
        rows = assert_exactly_once(stack, bus)
        sos_ids = [i for _, _, i, k in rows if k == "sos"]
        heartbeat_ids = [i for _, _, i, k in rows if k == "heartbeat"]
        assert len(sos_ids) == 3
        assert max(sos_ids) < min(heartbeat_ids), "an SOS was committed behind the backlog"


async def test_hub_kill_9_while_events_flow(stack: Stack, tmp_path: Path) -> None:
    stack.start_hub()
    async with running(stack, tmp_path) as bus:
        await edge_online(stack)
        assert stack.hub is not None
        hub = stack.hub
        await produce(bus, 600, sos_every=100, pace_s=0.004, midway=hub.kill)
        hub.start()
        stack.wait_for_hub()
        await wait_all_at_hub(stack, bus, 60)
        assert_exactly_once(stack, bus)


async def test_edge_kill_9_while_events_flow(stack: Stack, tmp_path: Path) -> None:
    stack.start_hub()
    async with running(stack, tmp_path) as bus:
        await edge_online(stack)
        edge = stack.edges[EDGE]

        def kill_and_restart() -> None:
            edge.kill()
            edge.start()

        await produce(bus, 600, sos_every=100, pace_s=0.004, midway=kill_and_restart)
        await wait_all_at_hub(stack, bus, 60)
        assert_exactly_once(stack, bus)
