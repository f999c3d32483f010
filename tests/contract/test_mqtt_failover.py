"""A client given the nodes of a broker cluster moves on to the next node when its own dies.

Two private Mosquittos stand in for two nodes (what a cluster shares between its nodes is
the cluster's business; see ``scripts/broker_cluster_trial.py`` for the real thing). The
first node is killed with SIGKILL; the connection must come back on the second one, and
subscriptions must be made there again.
"""

from __future__ import annotations

from pathlib import Path

import paho.mqtt.publish as paho_publish
import pytest

from contract.mqtt import BrokerNode, BrokerSettings, Message, MqttConnection
from simulators.broker import MosquittoProcess, free_port
from tests.conftest import wait_until

pytestmark = pytest.mark.integration


def test_nodes_lists_the_first_node_then_the_failover_ones() -> None:
    settings = BrokerSettings.model_validate(
        {"host": "a", "port": 1, "failover": [{"host": "b", "port": 2}, {"host": "c"}]}
    )
    assert settings.nodes() == [("a", 1), ("b", 2), ("c", 1883)]
    assert BrokerSettings().nodes() == [("127.0.0.1", 1883)]


async def test_connection_moves_to_the_next_node_when_its_node_dies(tmp_path: Path) -> None:
    first = MosquittoProcess(tmp_path / "first").start()
    second = MosquittoProcess(tmp_path / "second").start()
    received: list[Message] = []
    settings = BrokerSettings(
        port=first.port, failover=[BrokerNode(host="127.0.0.1", port=second.port)], keepalive_s=5
    )
    connection = MqttConnection(
        settings, "failover-test", subscriptions=[("failover/test", 1)], on_message=received.append
    )
    try:
        await connection.start()
        await wait_until(lambda: connection.connected, 10, message="connected to the first node")
        assert connection.node == f"127.0.0.1:{first.port}"
        first.kill()
        await wait_until(lambda: not connection.connected, 10, message="loss noticed")
        await wait_until(lambda: connection.connected, 15, message="connected to the second node")
        assert connection.node == f"127.0.0.1:{second.port}"

        # Subscribed again on the new node: a message published there arrives.
        def published_and_received() -> bool:
            paho_publish.single("failover/test", b"x", qos=1, port=second.port)
            return bool(received)

        await wait_until(
            published_and_received, 10, interval=0.2, message="a message through the second node"
        )
    finally:
        await connection.stop()
        first.stop()
        second.stop()


async def test_a_dead_first_node_at_start_is_skipped(tmp_path: Path) -> None:
    second = MosquittoProcess(tmp_path / "second").start()
    settings = BrokerSettings(
        port=free_port(),  # nothing listens there
        failover=[BrokerNode(host="127.0.0.1", port=second.port)],
    )
    connection = MqttConnection(
        settings, "failover-start", subscriptions=[], on_message=lambda _m: None
    )
    try:
        await connection.start()
        await wait_until(lambda: connection.connected, 15, message="connected to the second node")
        assert connection.node == f"127.0.0.1:{second.port}"
    finally:
        await connection.stop()
        second.stop()


async def test_stop_is_not_undone_by_the_failover(tmp_path: Path) -> None:
    first = MosquittoProcess(tmp_path / "first").start()
    second = MosquittoProcess(tmp_path / "second").start()
    settings = BrokerSettings(
        port=first.port, failover=[BrokerNode(host="127.0.0.1", port=second.port)]
    )
    connection = MqttConnection(
        settings, "failover-stop", subscriptions=[], on_message=lambda _m: None
    )
    try:
        await connection.start()
        await wait_until(lambda: connection.connected, 10, message="connected")
        await connection.stop()  # returns: paho's loop thread ended, no reconnect elsewhere
        assert connection.node == f"127.0.0.1:{first.port}"
    finally:
        first.stop()
        second.stop()
