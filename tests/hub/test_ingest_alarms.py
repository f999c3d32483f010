"""Alarms have a consumer of their own at the hub (issue #13): a bulk message in hand does
not hold an SOS back, and a waiting alarm gets ingest's next write transaction."""

from __future__ import annotations

import asyncio

from contract.mqtt import Message
from hub.ingest import Ingest, WriteTurn
from tests.conftest import wait_until


def message(lane: str, n: int) -> Message:
    return Message(f"community/v1/edge/e/events/{lane}", str(n).encode(), 1, n, False)


async def test_an_alarm_is_handled_while_a_bulk_message_is_in_hand() -> None:
    ingest = Ingest(None, None, None, None, None)  # type: ignore[arg-type]  # handle() faked
    release = asyncio.Event()
    handled: list[str] = []

    async def handle(msg: Message) -> None:
        lane = msg.topic.rsplit("/", 1)[1]
        if lane == "telemetry":
            await release.wait()  # a long decode or commit of a bulk batch
        handled.append(lane)

    ingest.handle = handle  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(ingest.run())
    try:
        ingest.on_message(message("telemetry", 0))
        ingest.on_message(message("telemetry", 1))
        ingest.on_alarm_message(message("alarm", 2))
        await wait_until(lambda: handled == ["alarm"], 10, message="alarm taken")
        assert ingest.backlog() == 1  # the second bulk message still waits
        release.set()
        await wait_until(lambda: len(handled) == 3, 10, message="bulk went on")
    finally:
        task.cancel()
    assert handled == ["alarm", "telemetry", "telemetry"]


async def test_a_waiting_alarm_gets_the_next_write_transaction() -> None:
    pending: list[str] = []
    turn = WriteTurn(lambda: bool(pending))
    order: list[str] = []
    bulk_has_turn = asyncio.Event()
    alarm_came = asyncio.Event()

    async def bulk() -> None:
        async with turn.take(alarm=False):
            order.append("bulk 1")
            bulk_has_turn.set()
            await alarm_came.wait()  # the alarm arrives mid-transaction
        async with turn.take(alarm=False):  # the next chunk's transaction waits for it
            order.append("bulk 2")

    async def alarm() -> None:
        await bulk_has_turn.wait()
        pending.append("sos")
        alarm_came.set()
        async with turn.take(alarm=True):
            order.append("alarm")
            pending.clear()
        await turn.changed()

    await asyncio.wait_for(asyncio.gather(bulk(), alarm()), 10)
    assert order == ["bulk 1", "alarm", "bulk 2"]
