"""Ingest retries a message that failed unexpectedly before it takes the next one, so a
transient database error cannot reorder a lane (found by the fault suite)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from contract.mqtt import Message
from hub import ingest as ingest_module
from hub.ingest import Ingest
from tests.conftest import wait_until


def message(topic: str, n: int) -> Message:
    return Message(topic, str(n).encode(), 1, n, False)


@pytest.fixture
def ingest(monkeypatch: pytest.MonkeyPatch) -> Ingest:
    monkeypatch.setattr(ingest_module, "RETRY_FIRST_S", 0.001)
    return Ingest(None, None, None, None, None)  # type: ignore[arg-type]  # handle() is faked


async def test_a_failing_batch_is_retried_in_place_and_order_is_kept(
    ingest: Ingest, monkeypatch: pytest.MonkeyPatch
) -> None:
    handled: list[int] = []
    failures = {1: 3}  # message 1 fails three times ("database is locked"), then works

    async def handle(msg: Message) -> None:
        n = int(msg.payload)
        if failures.get(n, 0):
            failures[n] -= 1
            raise RuntimeError("database is locked")
        handled.append(n)

    monkeypatch.setattr(ingest, "handle", handle)
    task = asyncio.create_task(ingest.run())
    try:
        for n in range(4):
            ingest.on_message(message("community/v1/edge/e/events/telemetry", n))
        await wait_until(lambda: len(handled) == 4, 10, message="all handled")
    finally:
        task.cancel()
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
