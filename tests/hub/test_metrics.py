"""Hub metrics on a real database (SQLite and PostgreSQL): per-app registries, and edge
statuses that lie."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.db.schema import edge_status
from hub.metrics import HubMetrics

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)


@dataclass
class FakeIngest:
    stats: dict[str, int] = field(
        default_factory=lambda: {"batches": 4, "errors": 1, "conflicts": 2}
    )
    events_by_lane: dict[str, int] = field(default_factory=lambda: {"alarm": 2, "normal": 9})

    def backlog(self) -> int:
        return 3


@dataclass
class FakeChannel:
    channel: str
    sent: int
    failed: int
    retries: int = 0


@dataclass
class FakeStreams:
    delivered: int = 5
    dropped: int = 1


@dataclass
class FakeConnection:
    connected: bool = True


@pytest.fixture
def seed_time() -> None:
    """An empty, migrated database: the cases and edge statuses are the test's own."""
    return None


def parse(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def metrics(channels: list[FakeChannel] | None = None) -> HubMetrics:
    return HubMetrics(
        ingest=FakeIngest(),
        channels=channels or [],
        streams=FakeStreams(),
        mqtt=FakeConnection(),
        clock=lambda: NOW,
    )


async def add_edge(engine: AsyncEngine, edge_id: str, info: Any, age_s: float) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(edge_status).values(
                edge_id=edge_id, online=True, at=NOW - timedelta(seconds=age_s), info=info
            )
        )


async def test_counters_and_edge_outboxes_including_nonsense_from_an_edge(
    engine: AsyncEngine,
) -> None:
    await add_edge(
        engine, "good", {"outbox_depth": {"alarm": 1, "normal": 40}, "oldest_unsent_age_s": 12.5}, 3
    )
    await add_edge(
        engine,
        "liar",
        {
            "outbox_depth": {"alarm": "many", "normal": True, "telemetry": 2},
            "oldest_unsent_age_s": "x",
        },
        1,
    )
    await add_edge(engine, "old-version", ["not", "a", "dict"], 1)
    channels = [
        FakeChannel("wecom", 3, 1, 2),
        FakeChannel("webhook", 1, 0),
        FakeChannel("webhook", 2, 2),
    ]
    hub = metrics(channels)
    async with engine.connect() as conn:
        found = parse(await hub.render(conn))

    def v(name: str, **labels: str) -> float | None:
        return found.get((name, frozenset(labels.items())))

    assert v("hub_edge_outbox_depth", edge="good", lane="normal") == 40.0
    assert v("hub_edge_outbox_oldest_unsent_age_seconds", edge="good") == 12.5
    assert v("hub_edge_status_age_seconds", edge="good") == 3.0
    assert v("hub_edge_outbox_depth", edge="liar", lane="telemetry") == 2.0
    assert v("hub_edge_outbox_depth", edge="liar", lane="alarm") is None
    assert v("hub_edge_outbox_depth", edge="liar", lane="normal") is None
    assert v("hub_edge_outbox_oldest_unsent_age_seconds", edge="liar") is None
    assert v("hub_edge_online", edge="old-version") == 1.0
    assert v("hub_cases_open", state="open") == 0.0
    assert v("hub_ingest_events_total", lane="alarm") == 2.0
    assert v("hub_ingest_events_total", lane="telemetry") == 0.0
    assert v("hub_ingest_errors_total") == 1.0
    assert v("hub_ingest_conflicts_total") == 2.0
    assert v("hub_ingest_backlog_messages") == 3.0
    assert v("hub_notifications_sent_total", channel="webhook") == 3.0
    assert v("hub_notifications_failed_total", channel="webhook") == 2.0
    assert v("hub_notifications_sent_total", channel="stream") == 5.0
    assert v("hub_notification_retries_total", channel="wecom") == 2.0
    assert v("hub_notification_stream_dropped_total") == 1.0
    assert v("hub_mqtt_connected") == 1.0


async def test_each_app_has_its_own_registry(engine: AsyncEngine) -> None:
    first, second = metrics([FakeChannel("sms", 1, 0)]), metrics([FakeChannel("sms", 7, 0)])
    async with engine.connect() as conn:
        a, b = parse(await first.render(conn)), parse(await second.render(conn))
    key = ("hub_notifications_sent_total", frozenset({("channel", "sms")}))
    assert (a[key], b[key]) == (1.0, 7.0)
