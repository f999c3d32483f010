"""The broker-cluster trial's NATS accounts: the hub's Mosquitto ACL rules, as subjects."""

from __future__ import annotations

import pytest

from hub.provisioning.mosquitto_files import edge_rules
from simulators.nats_cluster import QOS1_DELIVERY, NatsUser, mqtt_to_subject


def test_topics_and_filters_become_subjects() -> None:
    assert mqtt_to_subject("community/v1/edge/e-1/acks") == "community.v1.edge.e-1.acks"
    assert mqtt_to_subject("community/v1/edge/+/events/+") == "community.v1.edge.*.events.*"
    assert mqtt_to_subject("community/v1/#") == "community.v1.>"


def test_a_dot_in_a_topic_is_refused_not_mistranslated() -> None:
    with pytest.raises(ValueError, match="escaping"):
        mqtt_to_subject("community/v1/edge/building.7/acks")


def test_an_edge_account_gets_its_own_subtree_and_qos1_delivery() -> None:
    rules = edge_rules("edge-7")
    user = NatsUser(
        "edge-7",
        "secret",
        publish=tuple(t for access, t in rules if access == "write"),
        subscribe=tuple(t for access, t in rules if access == "read"),
    )
    text = user.render()
    assert '"community.v1.edge.edge-7.events.alarm"' in text
    assert '"community.v1.edge.edge-7.acks"' in text
    assert '"community.v1.hub.status"' in text
    assert f'"{QOS1_DELIVERY}"' in text.split("subscribe:")[1]
    assert f'"{QOS1_DELIVERY}"' not in text.split("subscribe:")[0]  # never to publish
    assert 'allowed_connection_types: ["MQTT"]' in text
    assert "edge-8" not in text


def test_an_account_without_lists_may_do_everything() -> None:
    assert "permissions" not in NatsUser("probe", "pw").render()
