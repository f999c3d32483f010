"""Acceptance (issue #13): the alarm lane's own MQTT connection is independent of telemetry.

Real Mosquitto, real hub and edge processes, a CB-100 button on a pty. The edge's bulk
link goes through :mod:`simulators.proxy`, its alarm link straight to the broker
(``uplink.alarm_port``, the same broker over another path). With the bulk link's TCP
stream stalled — what a telemetry backlog filling a socket does to a shared connection —
an SOS still reaches the grid worker's stream and the button still hears "received"; the
heartbeat sent meanwhile waits on the edge and arrives once the stream moves again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.codecs.cb100 import FrameType
from simulators.button import LedState, SimulatedButtonBus
from simulators.proxy import ProxyThread
from simulators.stack import Stack
from tests.conftest import wait_until
from tests.integration.conftest import api, placement, query, worker_stream

pytestmark = pytest.mark.integration

EDGE = "edge-demo"  # the seeded devices belong to it
BUTTON = 77626
DEADLINE_S = 20


@pytest.fixture
def proxy(stack: Stack) -> Iterator[ProxyThread]:
    started = ProxyThread("127.0.0.1", stack.broker_port).start()
    try:
        yield started
    finally:
        started.stop()


def heartbeats_at_hub(stack: Stack) -> int:
    [(count,)] = query(
        stack,
        "SELECT COUNT(*) FROM events WHERE kind = 'heartbeat' AND device_id = ?",
        f"cb100-{BUTTON}",
    )
    return int(count)


async def test_sos_gets_through_while_the_telemetry_link_is_stalled(
    stack: Stack, proxy: ProxyThread, tmp_path: Path
) -> None:
    stack.start_hub()
    _household, _grid, worker = placement(stack, f"cb100-{BUTTON}")
    link = tmp_path / "bus0"
    async with SimulatedButtonBus([BUTTON], link_path=link, retransmit_s=1.0) as bus:
        stack.start_edge(
            EDGE,
            [str(link)],
            broker={"host": "127.0.0.1", "port": proxy.port},  # the bulk link, via the proxy
            uplink={"alarm_port": stack.broker_port},  # the alarm link, straight
        )
        button = bus.button(BUTTON)
        async with api(stack) as client, worker_stream(client, worker) as stream:
            # Both links work: a heartbeat gets through first.
            button.heartbeat()
            await wait_until(lambda: heartbeats_at_hub(stack) == 1, DEADLINE_S, message="hb 1")

            proxy.partition("stall")  # the bulk link's TCP stream stops moving
            held = button.heartbeat()
            await wait_until(
                lambda: (
                    (FrameType.LINK_ACK, held.seq) in [(f.type, f.seq) for f in button.received]
                ),
                DEADLINE_S,
                message="the heartbeat stored on the edge",
            )
            sos = button.press_sos()
            await wait_until(
                lambda: LedState.RECEIVED in button.led_history, DEADLINE_S, message="received"
            )
            assert (FrameType.RECEIVED, sos.seq) in [(f.type, f.seq) for f in button.received]
            await wait_until(lambda: stream.notifications, DEADLINE_S, message="worker notified")
            assert stream.notifications[0]["kind"] == "sos"
            # The telemetry link really was stalled all along: the heartbeat is still held.
            assert heartbeats_at_hub(stack) == 1
            assert proxy.stats["partitions"] == 1

            proxy.heal()
            await wait_until(
                lambda: heartbeats_at_hub(stack) == 2, DEADLINE_S, message="held heartbeat"
            )
    [(sos_lane,)] = query(
        stack, "SELECT lane FROM events WHERE kind = 'sos' AND device_id = ?", f"cb100-{BUTTON}"
    )
    assert sos_lane == "alarm"
