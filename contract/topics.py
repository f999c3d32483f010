"""MQTT topic names.

Every edge owns the subtree ``community/v1/edge/<edge_id>/``; a broker ACL can therefore
give an edge exactly its own subtree. Events travel on one topic per lane so that the hub
can take alarms ahead of a telemetry backlog even inside one broker connection.
"""

from __future__ import annotations

from contract.envelope import ContractError, Lane

PREFIX = "community/v1"

#: What the hub subscribes to for events from every edge.
HUB_EVENTS_SUBSCRIPTION = f"{PREFIX}/edge/+/events/+"
#: The hub's own status (retained, with last will). Edges send only while it says online:
#: after a broker restart nobody hears a message until the hub has subscribed again.
HUB_STATUS = f"{PREFIX}/hub/status"
#: Between the processes of one hub only (wake-ups, ``hub.news``); no edge may read it.
HUB_NEWS = f"{PREFIX}/hub/news"
#: What the hub subscribes to for edge status (retained, with last will).
HUB_STATUS_SUBSCRIPTION = f"{PREFIX}/edge/+/status"
#: What the hub subscribes to for results of commands it sent.
HUB_COMMAND_RESULTS_SUBSCRIPTION = f"{PREFIX}/edge/+/command-results"


def _edge(edge_id: str) -> str:
    if not edge_id or any(c in edge_id for c in "/+#") or edge_id.strip() != edge_id:
        raise ContractError(f"invalid edge id {edge_id!r}: must be non-empty, no '/', '+', '#'")
    return f"{PREFIX}/edge/{edge_id}"


def events(edge_id: str, lane: Lane) -> str:
    return f"{_edge(edge_id)}/events/{lane.name.lower()}"


def acks(edge_id: str) -> str:
    return f"{_edge(edge_id)}/acks"


def commands(edge_id: str) -> str:
    return f"{_edge(edge_id)}/commands"


def command_results(edge_id: str) -> str:
    return f"{_edge(edge_id)}/command-results"


def status(edge_id: str) -> str:
    return f"{_edge(edge_id)}/status"


def config(edge_id: str) -> str:
    """Hub → edge, retained, QoS 1: the edge's ``EdgeConfigDocument`` (remote configuration).

    Retained so that an edge that was offline when it was issued gets it on (re)connect.
    """
    return f"{_edge(edge_id)}/config"


def parse_edge_topic(topic: str) -> tuple[str, str]:
    """Split ``community/v1/edge/<edge_id>/<rest>`` into (edge_id, rest)."""
    parts = topic.split("/", 4)
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != PREFIX or parts[2] != "edge":
        raise ContractError(f"topic {topic!r} is not under {PREFIX}/edge/<edge_id>/")
    return parts[3], parts[4]


def lane_of_events_topic(rest: str) -> Lane:
    """The lane named by the ``events/<lane>`` tail of an events topic."""
    head, _, name = rest.partition("/")
    if head != "events":
        raise ContractError(f"not an events topic: {rest!r}")
    try:
        return Lane[name.upper()]
    except KeyError:
        raise ContractError(f"unknown lane {name!r} in topic") from None
