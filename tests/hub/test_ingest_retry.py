"""Ingest retries a message that failed unexpectedly before it takes the next one, so a
transient database error cannot reorder a lane (found by the fault suite)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any

import pytest

from contract.mqtt import Message
from hub import ingest as ingest_module
from hub.ingest import Ingest
from hub.services.errors import Conflict
from tests.conftest import wait_until


def message(topic: str, n: int) -> Message:
    return Message(topic, str(n).encode(), 1, n, False)


@pytest.fixture
def ingest(monkeypatch: pytest.MonkeyPatch) -> Ingest:
    monkeypatch.setattr(ingest_module, "RETRY_FIRST_S", 0.001)
    return Ingest(None, None, None, None, None)  # type: ignore[arg-type]  # handle() is faked


async def ingest_with_failures(
    ingest: Ingest,
    monkeypatch: pytest.MonkeyPatch,
    topic: str,
    count: int,
    failures: dict[int, int],
    error: Exception,
) -> list[int]:
    """Ingest messages 0 … count-1 on ``topic`` through a faked ``handle`` in which
    message n first fails ``failures[n]`` times with ``error``; what was handled, in order."""
    handled: list[int] = []

    async def handle(msg: Message) -> None:
        n = int(msg.payload)
        if failures.get(n, 0):
            failures[n] -= 1
            raise error
        handled.append(n)

    monkeypatch.setattr(ingest, "handle", handle)
    task = asyncio.create_task(ingest.run())
    try:
        for n in range(count):
            ingest.on_message(message(topic, n))
        await wait_until(lambda: len(handled) == count, 10, message="all handled")
    finally:
        task.cancel()
    return handled


async def test_a_failing_batch_is_retried_in_place_and_order_is_kept(
    ingest: Ingest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # message 1 fails three times ("database is locked"), then works
    handled = await ingest_with_failures(
        ingest,
        monkeypatch,
        "community/v1/edge/e/events/telemetry",
        4,
        {1: 3},
        RuntimeError("database is locked"),
    )
    assert handled == [0, 1, 2, 3]
    assert ingest.stats["errors"] == 3


async def test_a_message_that_keeps_failing_is_left_to_the_resend(
    ingest: Ingest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "RETRY_FOR_S", 0.05)
    handled: list[int] = []

    async def handle(msg: Message) -> Any:
        n = int(msg.payload)
        if n == 0:
            raise RuntimeError("a bug that only this message triggers")
        handled.append(n)

    monkeypatch.setattr(ingest, "handle", handle)
    task = asyncio.create_task(ingest.run())
    try:
        ingest.on_message(message("community/v1/edge/e/events/normal", 0))
        ingest.on_message(message("community/v1/edge/e/events/normal", 1))
        await wait_until(lambda: handled == [1], 10, message="ingest went on")
    finally:
        task.cancel()
    assert ingest.stats["errors"] >= 2


async def test_alarms_are_taken_while_a_bulk_batch_is_retried(
    ingest: Ingest, monkeypatch: pytest.MonkeyPatch
) -> None:
    handled: list[str] = []
    failures = {"telemetry": 5}

    async def handle(msg: Message) -> None:
        lane = msg.topic.rsplit("/", 1)[1]
        if failures.get(lane, 0):
            failures[lane] -= 1
            raise RuntimeError("database is locked")
        handled.append(lane)

    monkeypatch.setattr(ingest, "handle", handle)
    task = asyncio.create_task(ingest.run())
    try:
        ingest.on_message(message("community/v1/edge/e/events/telemetry", 0))
        await wait_until(lambda: ingest.stats["errors"] >= 1, 10, message="first failure")
        ingest.on_message(message("community/v1/edge/e/events/alarm", 1))
        await wait_until(lambda: len(handled) == 2, 10, message="both handled")
    finally:
        task.cancel()
    assert handled == ["alarm", "telemetry"]


async def test_a_case_changed_meanwhile_is_one_log_line_and_a_retry(
    ingest: Ingest, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With replicas, a repeat press ingested here races the escalation another replica's
    timer commits on the same case: the case's save raises Conflict, the transaction rolls
    back, and the retry reads the new version. An expected race: counted, one line, no
    traceback, and not an error."""
    caplog.set_level(logging.DEBUG, logger="hub.ingest")
    handled = await ingest_with_failures(  # the repeat press meets two escalations
        ingest,
        monkeypatch,
        "community/v1/edge/e/events/alarm",
        3,
        {1: 2},
        Conflict("case 7 was changed meanwhile; reload and retry"),
    )
    assert handled == [0, 1, 2]  # retried in place, before the next
    assert ingest.stats["conflicts"] == 2
    assert ingest.stats["errors"] == 0
    records = [r for r in caplog.records if r.name == "hub.ingest"]
    assert len(records) == 2, [r.getMessage() for r in records]
    for record in records:
        assert record.exc_info is None and record.exc_text is None
        assert "\n" not in record.getMessage()
        assert "case 7 was changed meanwhile" in record.getMessage()
        assert "events/alarm" in record.getMessage()
    assert "Traceback" not in caplog.text


class UniqueViolationError(Exception):
    """Stands for asyncpg's, which the bulk insert raises as the driver's own error."""


def wrapped(cause: Exception) -> Exception:
    """As SQLAlchemy raises a driver's error: another exception, caused by it."""
    try:
        raise RuntimeError("(sqlalchemy) IntegrityError") from cause
    except RuntimeError as err:
        return err


@pytest.mark.parametrize(
    "stored_meanwhile",
    [
        UniqueViolationError(
            'duplicate key value violates unique constraint "uq_events_uid"\n'
            "DETAIL:  Key (uid)=(edge-1:abc:000000000042) already exists."
        ),
        wrapped(
            UniqueViolationError('duplicate key value violates unique constraint "uq_events_uid"')
        ),
        sqlite3.IntegrityError("UNIQUE constraint failed: events.uid"),
    ],
    ids=["postgres-driver", "wrapped", "sqlite"],
)
async def test_a_batch_stored_meanwhile_by_another_replica_is_one_line_and_a_retry(
    ingest: Ingest,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    stored_meanwhile: Exception,
) -> None:
    """While an edge is handed from one replica to another both may take one batch; the
    second insert meets the first one's event uids. Its retry finds them stored: counted
    as a concurrent change, one line, no traceback (the replica soak showed tracebacks)."""
    caplog.set_level(logging.DEBUG, logger="hub.ingest")
    handled = await ingest_with_failures(
        ingest, monkeypatch, "community/v1/edge/e/events/normal", 3, {1: 1}, stored_meanwhile
    )
    assert handled == [0, 1, 2]
    assert (ingest.stats["conflicts"], ingest.stats["errors"]) == (1, 0)
    [record] = [r for r in caplog.records if r.name == "hub.ingest"]
    assert record.exc_info is None and "\n" not in record.getMessage()
    assert "concurrent change" in record.getMessage()


async def test_other_integrity_errors_are_still_errors_with_their_traceback(
    ingest: Ingest, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hub.ingest")
    handled = await ingest_with_failures(
        ingest,
        monkeypatch,
        "community/v1/edge/e/events/normal",
        1,
        {0: 1},
        sqlite3.IntegrityError("NOT NULL constraint failed: events.device_id"),
    )
    assert handled == [0]
    assert (ingest.stats["conflicts"], ingest.stats["errors"]) == (0, 1)
    assert "Traceback" in caplog.text
