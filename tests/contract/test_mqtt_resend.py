"""On reconnect, batches the owner resends itself are dropped from paho's session store,
so paho's own redelivery cannot overtake the owner's in-order resend."""

from __future__ import annotations

import paho.mqtt.client as paho

from contract.mqtt import BrokerSettings, MqttConnection


def test_owner_resent_topics_are_dropped_and_others_kept() -> None:
    connection = MqttConnection(
        BrokerSettings(port=1),  # never connected: only paho's message table is used
        "edge-x",
        subscriptions=[],
        on_message=lambda _m: None,
        resent_by_owner=lambda topic: "/events/" in topic,
    )
    client: paho.Client = connection._client
    # Queued while "connected" (as paho has them when a connection dies under them).
    client.publish("community/v1/edge/x/events/alarm", b"batch-1", qos=1)
    client.publish("community/v1/edge/x/status", b"status", qos=1)
    client.publish("community/v1/edge/x/events/telemetry", b"batch-2", qos=1)
    assert len(client._out_messages) == 3
    connection._discard_owner_resends(client)
    assert [m.topic for m in client._out_messages.values()] == ["community/v1/edge/x/status"]
