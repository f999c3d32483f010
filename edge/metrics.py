"""Prometheus metrics of one edge agent, served on 127.0.0.1 only.

A node exporter or a local Prometheus agent on the gateway scrapes ``GET /metrics`` on
``metrics_port`` (disabled when the port is 0 or unset). The endpoint is a minimal asyncio
HTTP/1.0 server in the agent's own loop rather than ``prometheus_client``'s threaded one,
because the outbox figures are read from the agent's aiosqlite connection, which belongs to
that loop. Loopback only: it needs no authentication and exposes nothing beyond the
gateway.

Metric names (all ``edge_``): ``outbox_depth{lane}``, ``outbox_oldest_unsent_age_seconds``,
``bad_frames_total{bus,reason}``, ``garbage_bytes_total{bus}``, ``bus_errors_total{bus,
reason}`` (``replay``: an old frame played back, issue #11),
``bus_seq_restarts_total{bus}`` (frames taken as a button restart),
``commands_expired_total``, ``bus_link_open{bus}``, ``devices_known{bus}``,
``devices_online{bus}`` (heard within three heartbeat intervals of their profile),
``uplink_in_flight_events``, ``uplink_events_sent_total``, ``uplink_rewinds_total``,
``outbox_write_errors_total``, ``bad_messages_total``, ``mqtt_connected``, ``hub_online``;
plus ``process_*``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contract.envelope import utc_now
from edge.errors import EdgeError

if TYPE_CHECKING:
    from edge.agent import EdgeAgent

log = logging.getLogger(__name__)

BIND_HOST = "127.0.0.1"
#: A device counts as online when heard within this many heartbeat intervals.
ONLINE_HEARTBEATS = 3
#: Used when a profile declares no heartbeat interval.
DEFAULT_ONLINE_WINDOW = timedelta(minutes=5)
REQUEST_TIMEOUT_S = 5.0
MAX_HEADER_LINES = 100


@dataclass(slots=True)
class _OutboxSnapshot:
    depth: dict[str, int] = field(default_factory=dict)
    oldest_age_s: float = 0.0


class EdgeMetrics(Collector):
    def __init__(self, agent: EdgeAgent) -> None:
        self._agent = agent
        self._outbox = _OutboxSnapshot()
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.registry.register(self)

    async def render(self) -> bytes:
        """The exposition text, with the outbox read just now (may raise EdgeError)."""
        outbox = self._agent.outbox
        snapshot = _OutboxSnapshot(await outbox.depth(), await outbox.oldest_age_s())
        self._outbox = snapshot  # no await from here to the end: one consistent answer
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        agent = self._agent
        depth = GaugeMetricFamily(
            "edge_outbox_depth", "Events in the outbox not yet acknowledged", labels=["lane"]
        )
        for lane, count in sorted(self._outbox.depth.items()):
            depth.add_metric([lane], float(count))
        yield depth
        yield GaugeMetricFamily(
            "edge_outbox_oldest_unsent_age_seconds",
            "Age of the oldest event not yet acknowledged by the hub (0 when empty)",
            value=self._outbox.oldest_age_s,
        )
        yield CounterMetricFamily(
            "edge_outbox_write_errors",
            "Outbox writes that failed",
            value=float(agent.outbox.stats.get("write_errors", 0)),
        )
        yield from self._bus_metrics()
        uplink = agent.uplink
        yield GaugeMetricFamily(
            "edge_uplink_in_flight_events",
            "Events sent to the hub and not yet acknowledged",
            value=float(uplink.in_flight_events()),
        )
        yield CounterMetricFamily(
            "edge_uplink_events_sent",
            "Events published to the hub (resends included)",
            value=float(uplink.stats.get("events_sent", 0)),
        )
        yield CounterMetricFamily(
            "edge_uplink_rewinds",
            "Times unacknowledged events were resent",
            value=float(uplink.stats.get("rewinds", 0)),
        )
        yield CounterMetricFamily(
            "edge_bad_messages",
            "MQTT messages from the hub that broke the contract",
            value=float(agent.stats.get("bad_messages", 0)),
        )
        yield CounterMetricFamily(
            "edge_commands_expired",
            "Hub commands not executed because their deadline had passed",
            value=float(agent.stats.get("commands_expired", 0)),
        )
        yield GaugeMetricFamily(
            "edge_mqtt_connected",
            "1 while connected to the broker",
            value=1.0 if agent.mqtt.connected else 0.0,
        )
        yield GaugeMetricFamily(
            "edge_hub_online",
            "1 while the hub's retained status says online",
            value=1.0 if uplink.hub_online else 0.0,
        )
        alarm_link = agent.alarm_mqtt
        yield GaugeMetricFamily(
            "edge_alarm_link_connected",
            "1 while the alarm lane's own MQTT connection is up (issue #13)",
            value=1.0 if alarm_link is not None and alarm_link.connected else 0.0,
        )
        behind = CounterMetricFamily(
            "edge_polls_behind_schedule",
            "Poll slots passed because polls started late (the edge did not keep up); "
            "counted instead of reading values that would be dropped",
            labels=["driver"],
        )
        for driver in agent.drivers:
            passed = driver.stats().get("polls_behind_schedule")
            if passed is not None:
                behind.add_metric([driver.name], float(passed))
        yield behind

    def _bus_metrics(self) -> Iterator[Metric]:
        bad = CounterMetricFamily(
            "edge_bad_frames", "Rejected frames, by bus and reason", labels=["bus", "reason"]
        )
        garbage = CounterMetricFamily(
            "edge_garbage_bytes", "Bytes on the line that were not part of a frame", labels=["bus"]
        )
        errors = CounterMetricFamily(
            "edge_bus_errors",
            "Frames decoded but not accepted, by reason",
            labels=["bus", "reason"],
        )
        restarts = CounterMetricFamily(
            "edge_bus_seq_restarts",
            "Frames whose seq went back, taken as a button restart (or an old replay)",
            labels=["bus"],
        )
        link = GaugeMetricFamily("edge_bus_link_open", "1 while the port is open", labels=["bus"])
        known = GaugeMetricFamily(
            "edge_devices_known", "Devices heard on the bus since start", labels=["bus"]
        )
        online = GaugeMetricFamily(
            "edge_devices_online", "Devices heard within 3 heartbeat intervals", labels=["bus"]
        )
        now = utc_now()
        for bus in list(self._agent.buses):
            stats: dict[str, Any] = bus.stats()
            name = bus.name
            window = self._online_window(name)
            for reason, count in sorted(stats["bad_frames"].items()):
                bad.add_metric([name, reason], float(count))
            garbage.add_metric([name], float(stats["garbage_bytes"]))
            for reason, count in sorted(stats["errors"].items()):
                errors.add_metric([name, reason], float(count))
            restarts.add_metric([name], float(stats["seq_restarts"]))
            link.add_metric([name], 1.0 if stats["link_open"] else 0.0)
            devices: dict[str, dict[str, Any]] = stats["devices"]
            known.add_metric([name], float(len(devices)))
            heard = sum(_heard_within(d, now, window) for d in devices.values())
            online.add_metric([name], float(heard))
        yield from (bad, garbage, errors, restarts, link, known, online)

    def _online_window(self, bus_name: str) -> timedelta:
        """Three heartbeat intervals of the profile configured for the bus's port."""
        agent = self._agent
        names = {b.port: b.profile for b in agent.config.serial_buses}
        profile = agent.profiles.get(names.get(bus_name, ""))
        interval = profile.heartbeat_interval_s if profile is not None else None
        if not interval:
            return DEFAULT_ONLINE_WINDOW
        return timedelta(seconds=interval * ONLINE_HEARTBEATS)

    # -- the endpoint ----------------------------------------------------------------------
    async def serve(self, port: int) -> None:
        """Serve ``GET /metrics`` on 127.0.0.1:``port`` until cancelled. A port that cannot
        be bound is logged and the agent runs on without metrics."""
        try:
            server = await asyncio.start_server(self._handle, BIND_HOST, port)
        except OSError as err:
            log.error("metrics endpoint not started on %s:%d: %s", BIND_HOST, port, err)
            return
        log.info("metrics on http://%s:%d/metrics", BIND_HOST, port)
        async with server:
            await server.serve_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                status, content_type, body = await self._answer(reader)
                head = (
                    f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                writer.write(head.encode("ascii") + body)
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError) as err:
            log.debug("metrics request dropped: %s", err)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
        request_line = (await reader.readline()).decode("latin-1").split()
        for _ in range(MAX_HEADER_LINES):  # headers are read and ignored
            if (await reader.readline()).strip() == b"":
                break
        if len(request_line) < 2:
            return "400 Bad Request", "text/plain", b"bad request\n"
        method, target = request_line[0], request_line[1].split("?", 1)[0]
        if target != "/metrics":
            return "404 Not Found", "text/plain", b"not found: try /metrics\n"
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"only GET\n"
        try:
            return "200 OK", CONTENT_TYPE_LATEST, await self.render()
        except (EdgeError, sqlite3.Error) as err:
            log.warning("metrics unavailable: %s", err)
            return "503 Service Unavailable", "text/plain", b"outbox unavailable\n"


def _heard_within(device: dict[str, Any], now: datetime, window: timedelta) -> bool:
    last_seen = device.get("last_seen")
    if not isinstance(last_seen, str):
        return False
    try:
        return now - datetime.fromisoformat(last_seen.replace("Z", "+00:00")) <= window
    except ValueError:
        return False
