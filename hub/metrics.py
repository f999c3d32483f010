"""The hub's Prometheus metrics, in a registry of its own (one per app, so tests that run
several apps in one process do not clash on the global registry).

Nothing is incremented on hot paths for this module: at scrape time a collector reads the
counters the parts already keep (``Ingest.stats``, the notification channels' ``sent`` /
``failed``, the live streams'), and :meth:`HubMetrics.render` first reads what the
database knows: open cases by state, escalations (``case_audit``), and each edge's outbox
as its last retained status reported it (``edge_status.info``).

Metric names (all ``hub_``): ``ingest_events_total{lane}``, ``ingest_batches_total``,
``ingest_duplicates_total``, ``ingest_quarantined_total``, ``ingest_errors_total``,
``ingest_clamped_total`` (event times outside the window, issue #11),
``ingest_conflicts_total`` (retried: another replica changed a case or stored the batch
meanwhile, issue #14),
``ingest_backlog_messages``, ``cases_open{state}``, ``escalations_total``,
``notifications_sent_total{channel}``, ``notifications_failed_total{channel}``,
``notification_retries_total{channel}``, ``notification_stream_dropped_total``,
``edge_online{edge}``, ``edge_status_age_seconds{edge}``, ``edge_outbox_depth{edge,lane}``,
``edge_outbox_oldest_unsent_age_seconds{edge}``, ``mqtt_connected``; plus the standard
``process_*`` metrics.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncConnection

from contract import Lane
from hub.db.schema import case_audit, cases, edge_status
from hub.domain.case import ACTIVE_STATES


class IngestCounters(Protocol):
    @property
    def stats(self) -> Mapping[str, int]: ...
    @property
    def events_by_lane(self) -> Mapping[str, int]: ...
    def backlog(self) -> int: ...


class ChannelCounters(Protocol):
    @property
    def channel(self) -> str: ...
    @property
    def sent(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def retries(self) -> int: ...


class StreamCounters(Protocol):
    @property
    def delivered(self) -> int: ...
    @property
    def dropped(self) -> int: ...


class Connection(Protocol):
    @property
    def connected(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class EdgeSnapshot:
    edge_id: str
    online: bool
    status_age_s: float
    outbox_depth: dict[str, float]
    oldest_unsent_age_s: float | None


@dataclass(slots=True)
class DatabaseSnapshot:
    open_cases: dict[str, int] = field(default_factory=dict)
    escalations: int = 0
    edges: list[EdgeSnapshot] = field(default_factory=list)


def _number(value: Any) -> float | None:
    """A finite number from an edge's JSON, or None (the edge is not trusted to be right)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def edge_snapshot(
    edge_id: str, online: bool, at: datetime, info: Any, now: datetime
) -> EdgeSnapshot:
    info = info if isinstance(info, dict) else {}
    depth = info.get("outbox_depth")
    lanes: dict[str, float] = {}
    if isinstance(depth, dict):
        for lane, count in depth.items():
            value = _number(count)
            if isinstance(lane, str) and value is not None:
                lanes[lane] = value
    return EdgeSnapshot(
        edge_id,
        bool(online),
        max(0.0, (now - at).total_seconds()),
        lanes,
        _number(info.get("oldest_unsent_age_s")),
    )


async def read_snapshot(conn: AsyncConnection, now: datetime) -> DatabaseSnapshot:
    """Three small queries: cases by active state, escalation audit rows, edge statuses."""
    active = sorted(str(s) for s in ACTIVE_STATES)
    by_state = await conn.execute(
        sa.select(cases.c.state, sa.func.count())
        .where(cases.c.state.in_(active))
        .group_by(cases.c.state)
    )
    open_cases = dict.fromkeys(active, 0) | {str(s): int(n) for s, n in by_state}
    escalations = (
        await conn.execute(
            sa.select(sa.func.count())
            .select_from(case_audit)
            .where(case_audit.c.action == "escalate")
        )
    ).scalar_one()
    rows = await conn.execute(
        sa.select(edge_status.c.edge_id, edge_status.c.online, edge_status.c.at, edge_status.c.info)
    )
    edges = [edge_snapshot(e, online, at, info, now) for e, online, at, info in rows]
    return DatabaseSnapshot(open_cases, int(escalations), edges)


class HubMetrics(Collector):
    """The registry and the collector of one hub app."""

    def __init__(
        self,
        *,
        ingest: IngestCounters,
        channels: Sequence[ChannelCounters],
        streams: StreamCounters,
        mqtt: Connection,
        clock: Callable[[], datetime],
    ) -> None:
        self._ingest = ingest
        self._channels = list(channels)
        self._streams = streams
        self._mqtt = mqtt
        self._clock = clock
        self._snapshot = DatabaseSnapshot()
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.registry.register(self)

    async def render(self, conn: AsyncConnection) -> bytes:
        """The Prometheus text exposition, with the database part read just now."""
        snapshot = await read_snapshot(conn, self._clock())
        # No await between taking the snapshot and rendering: concurrent scrapes each
        # render the snapshot they read.
        self._snapshot = snapshot
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        yield from self._ingest_metrics()
        yield from self._case_metrics()
        yield from self._notification_metrics()
        yield from self._edge_metrics()
        mqtt = GaugeMetricFamily(
            "hub_mqtt_connected", "1 while the hub's ingest connection to the broker is up"
        )
        mqtt.add_metric([], 1.0 if self._mqtt.connected else 0.0)
        yield mqtt

    def _ingest_metrics(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "hub_ingest_events", "New events stored, by lane", labels=["lane"]
        )
        by_lane = self._ingest.events_by_lane
        for lane in Lane:
            name = lane.name.lower()
            events.add_metric([name], float(by_lane.get(name, 0)))
        yield events
        stats = self._ingest.stats
        for key, text in (
            ("batches", "Event batches (MQTT messages) processed"),
            ("duplicates", "Events received again and skipped"),
            ("quarantined", "Messages and events quarantined with a reason"),
            ("errors", "Messages whose processing failed (redelivered later)"),
            ("gaps", "Batches refused because an earlier batch of their lane was missing"),
            ("clamped", "Events whose time was outside the window around the hub's clock"),
            ("handed_over", "Queued messages left to the replica that now owns their edge"),
            ("conflicts", "Messages retried after a concurrent change by another replica"),
        ):
            yield CounterMetricFamily(f"hub_ingest_{key}", text, value=float(stats.get(key, 0)))
        yield GaugeMetricFamily(
            "hub_ingest_backlog_messages",
            "MQTT messages received and not yet processed",
            value=float(self._ingest.backlog()),
        )

    def _case_metrics(self) -> Iterator[Metric]:
        snapshot = self._snapshot
        open_cases = GaugeMetricFamily(
            "hub_cases_open", "Help-call cases not yet resolved, by state", labels=["state"]
        )
        for state, count in sorted(snapshot.open_cases.items()):
            open_cases.add_metric([state], float(count))
        yield open_cases
        yield CounterMetricFamily(
            "hub_escalations",
            "Cases moved on to a further tier because nobody acknowledged in time",
            value=float(snapshot.escalations),
        )

    def _notification_metrics(self) -> Iterator[Metric]:
        sent: Counter[str] = Counter({"stream": self._streams.delivered})
        failed: Counter[str] = Counter({"stream": 0})
        retries: Counter[str] = Counter()
        for channel in self._channels:
            sent[channel.channel] += channel.sent
            failed[channel.channel] += channel.failed
            retries[channel.channel] += channel.retries
        for name, counts, text in (
            ("hub_notifications_sent", sent, "Notifications delivered, by channel"),
            ("hub_notifications_failed", failed, "Notifications given up, by channel"),
            ("hub_notification_retries", retries, "Failed attempts retried, by channel"),
        ):
            family = CounterMetricFamily(name, text, labels=["channel"])
            for channel_name in sorted(sent):
                family.add_metric([channel_name], float(counts.get(channel_name, 0)))
            yield family
        yield CounterMetricFamily(
            "hub_notification_stream_dropped",
            "Live-stream notifications not written to the live feed (queue full or write failed)",
            value=float(self._streams.dropped),
        )

    def _edge_metrics(self) -> Iterator[Metric]:
        online = GaugeMetricFamily(
            "hub_edge_online", "1 when the edge's retained status says online", labels=["edge"]
        )
        age = GaugeMetricFamily(
            "hub_edge_status_age_seconds", "Seconds since the edge's last status", labels=["edge"]
        )
        depth = GaugeMetricFamily(
            "hub_edge_outbox_depth",
            "Events in the edge's outbox not yet acknowledged, as of its last status",
            labels=["edge", "lane"],
        )
        oldest = GaugeMetricFamily(
            "hub_edge_outbox_oldest_unsent_age_seconds",
            "Age of the oldest unacknowledged event in the edge's outbox, as of its last status",
            labels=["edge"],
        )
        for edge in self._snapshot.edges:
            online.add_metric([edge.edge_id], 1.0 if edge.online else 0.0)
            age.add_metric([edge.edge_id], edge.status_age_s)
            for lane, count in sorted(edge.outbox_depth.items()):
                depth.add_metric([edge.edge_id, lane], count)
            if edge.oldest_unsent_age_s is not None:
                oldest.add_metric([edge.edge_id], edge.oldest_unsent_age_s)
        yield from (online, age, depth, oldest)
