"""SQL whose meaning differs between SQLite and PostgreSQL, pinned to one meaning on both.

Each case here was found moving the hub to PostgreSQL (issue #14, docs/postgres.md).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import Event, EventBatch, Lane, topics
from contract.mqtt import Message
from hub.db import schema
from hub.db.engine import describe_url
from hub.services.records import contains
from tests.hub.test_ingest_order import BUTTON, EDGE, T0, FakeBroker, make_ingest


@pytest.mark.parametrize(
    ("value", "text", "found"),
    [
        ("Block B, 幸福里", "block b", True),  # SQLite's LIKE ignores Latin case; PG's not
        ("幸福里小区3号楼", "3号楼", True),
        ("100% 完成", "100%", True),
        ("1000 完成", "100%", False),  # % and _ in the text match only themselves
        ("a_b", "a_b", True),
        ("axb", "a_b", False),
        ("C:\\path", "c:\\p", True),
    ],
)
async def test_contains_is_literal_and_ignores_latin_case(
    engine: AsyncEngine, value: str, text: str, found: bool
) -> None:
    async with engine.connect() as conn:
        result = (await conn.execute(sa.select(contains(sa.literal(value), text)))).scalar()
    assert bool(result) is found


def test_the_logged_database_url_hides_its_password() -> None:
    url = "postgresql+asyncpg://hub:s3cret-pw@db.example:5432/hub"
    assert "s3cret" not in describe_url(url)
    assert describe_url(url).startswith("postgresql+asyncpg://hub:***@db.example:5432/hub")


async def test_ids_longer_than_their_column_do_not_sink_the_batch(engine: AsyncEngine) -> None:
    """The contract allows a device id of 200 characters; ``events.device_id`` says 64.
    SQLite never enforced that; PostgreSQL would refuse the row and with it the whole batch,
    the help call beside it included, at every resend. So ``String(n)`` is unbounded on
    PostgreSQL too (hub.db.schema), and the unknown device is quarantined as on SQLite."""
    broker = FakeBroker()
    ingest = make_ingest(engine, broker)
    events = (
        Event(1, "x" * 150, "sos", Lane.ALARM, T0, {}),
        Event(2, BUTTON, "sos", Lane.ALARM, T0, {}),
    )
    payload = EventBatch(EDGE, "i" * 64, events, follows=0).encode()
    await ingest.handle(Message(topics.events(EDGE, Lane.ALARM), payload, 1, 1, False))
    assert broker.acks[-1].seqs == (1, 2)
    async with engine.connect() as conn:
        cases = (await conn.execute(sa.select(schema.cases.c.device_id))).scalars().all()
        quarantined = (await conn.execute(sa.select(schema.quarantine.c.device_id))).all()
    assert cases == [BUTTON]
    assert quarantined == [("x" * 150,)]


async def test_nul_characters_are_refused_or_kept_as_base64(engine: AsyncEngine) -> None:
    """PostgreSQL's text types cannot hold U+0000 (SQLite's can): an id with one breaks the
    contract (the batch is quarantined whole, its JSON escapes kept as text), a payload
    with a raw NUL byte is quarantined as base64, and event data keeps it JSON-escaped."""
    broker = FakeBroker()
    ingest = make_ingest(engine, broker)
    bad_id = EventBatch(EDGE, "inc", (Event(1, "a\x00b", "sos", Lane.ALARM, T0, {}),))
    data_nul = EventBatch(EDGE, "inc", (Event(1, BUTTON, "sos", Lane.ALARM, T0, {"x": "\x00"}),))
    topic = topics.events(EDGE, Lane.ALARM)
    await ingest.handle(Message(topic, bad_id.encode(), 1, 1, False))
    await ingest.handle(Message(topic, b'{"v":1,"raw":"\x00"}', 1, 2, False))
    await ingest.handle(Message(topic, data_nul.encode(), 1, 3, False))
    assert [a.seqs for a in broker.acks] == [(1,)]
    async with engine.connect() as conn:
        reasons = (await conn.execute(sa.select(schema.quarantine.c.reason))).scalars().all()
        payloads = (await conn.execute(sa.select(schema.quarantine.c.payload))).scalars().all()
        data = (await conn.execute(sa.select(schema.events.c.data))).scalars().all()
    assert any("NUL" in r for r in reasons)
    assert any(p.startswith("base64:") for p in payloads)
    assert data == [{"x": "\x00"}]
