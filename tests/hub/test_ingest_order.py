"""The hub refuses a batch whose predecessor in its lane it lacks (``EventBatch.follows``),
so per-lane commit order holds even when the broker loses a queued batch; real SQLite."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import Ack, Event, EventBatch, Lane, topics
from contract.mqtt import Message
from hub.db import schema
from hub.domain.effects import Effects
from hub.domain.escalation import EscalationPolicy
from hub.ingest import Ingest
from hub.services.cases import CaseService

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
EDGE = "edge-demo"
INC = "inc-1"
BUTTON = "cb100-77626"


@dataclass
class FakeBroker:
    connected: bool = True
    acks: list[Ack] = field(default_factory=list)
    pubacked: list[Message] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        assert topic == topics.acks(EDGE)
        self.acks.append(Ack.decode(payload))
        return True

    def ack(self, message: Message) -> None:
        self.pubacked.append(message)


class NoEffects:
    async def dispatch(self, effects: Effects) -> None:
        pass


def batch(seqs: range, follows: int) -> Message:
    events = tuple(
        Event(s, BUTTON, "heartbeat", Lane.TELEMETRY, T0, {"battery_pct": 90}) for s in seqs
    )
    payload = EventBatch(EDGE, INC, events, follows=follows).encode()
    return Message(topics.events(EDGE, Lane.TELEMETRY), payload, 1, seqs[0], False)


async def stored_seqs(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(schema.events.c.uid).order_by(schema.events.c.id))
        return [int(str(uid).rsplit(":", 1)[1]) for (uid,) in rows]


def make_ingest(engine: AsyncEngine, broker: FakeBroker) -> Ingest:
    service = CaseService(EscalationPolicy(), ZoneInfo("Asia/Shanghai"))
    return Ingest(engine, service, broker, NoEffects(), lambda: T0)  # type: ignore[arg-type]


async def test_a_batch_whose_predecessor_was_lost_is_refused_with_a_gap(
    engine: AsyncEngine,
) -> None:
    broker = FakeBroker()
    ingest = make_ingest(engine, broker)
    await ingest.handle(batch(range(1, 4), follows=0))
    # the batch 4..6 (follows 3) is lost by the broker; 7..9 arrives
    await ingest.handle(batch(range(7, 10), follows=6))
    assert await stored_seqs(engine) == [1, 2, 3]
    assert broker.acks[-1] == Ack(EDGE, INC, (), gap=Lane.TELEMETRY)
    assert len(broker.pubacked) == 2  # refused, yet PUBACKed: the edge resends, not the broker
    assert ingest.stats["gaps"] == 1
    # the edge rewinds: its oldest unacknowledged event comes first, with follows 0
    await ingest.handle(batch(range(4, 7), follows=0))
    await ingest.handle(batch(range(7, 10), follows=6))
    assert await stored_seqs(engine) == list(range(1, 10))
    assert broker.acks[-1] == Ack(EDGE, INC, (7, 8, 9))


async def test_a_resent_batch_whose_predecessor_is_stored_is_taken_after_a_restart(
    engine: AsyncEngine,
) -> None:
    broker = FakeBroker()
    await make_ingest(engine, broker).handle(batch(range(1, 4), follows=0))
    restarted = make_ingest(engine, broker)  # knows nothing in memory: asks the database
    await restarted.handle(batch(range(4, 6), follows=3))
    await restarted.handle(batch(range(2, 4), follows=1))  # a late duplicate: acked again
    assert await stored_seqs(engine) == [1, 2, 3, 4, 5]
    assert broker.acks[-1] == Ack(EDGE, INC, (2, 3))
    assert restarted.stats["gaps"] == 0


async def test_the_gap_check_is_per_incarnation(engine: AsyncEngine) -> None:
    broker = FakeBroker()
    ingest = make_ingest(engine, broker)
    await ingest.handle(batch(range(1, 4), follows=0))
    other = EventBatch(
        EDGE, "inc-2", (Event(5, BUTTON, "heartbeat", Lane.TELEMETRY, T0, {}),), follows=3
    )
    await ingest.handle(Message(topics.events(EDGE, Lane.TELEMETRY), other.encode(), 1, 9, False))
    assert broker.acks[-1] == Ack(EDGE, "inc-2", (), gap=Lane.TELEMETRY)
