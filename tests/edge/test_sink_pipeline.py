"""Drivers start their records in order without awaiting each one: the outbox's group
commit would otherwise cap a driver at one reading per commit interval (found by the
Modbus bench: 200 devices polled every second stored five readings a second)."""

from __future__ import annotations

import asyncio

from edge.sink import RecordPipeline
from tests.conftest import wait_until


async def test_records_run_together_in_start_order_within_the_bound() -> None:
    entered: list[int] = []
    release = asyncio.Event()

    async def record(n: int) -> None:
        entered.append(n)
        await release.wait()  # as a record waits for its group commit

    pipeline = RecordPipeline(max_in_flight=8)
    for n in range(8):
        await pipeline.start(record(n))
    await wait_until(lambda: len(entered) == 8, 5, message="all eight recording at once")
    assert entered == list(range(8))
    ninth = asyncio.create_task(pipeline.start(record(8)))
    await asyncio.sleep(0)
    assert not ninth.done() and pipeline.in_flight == 8  # the bound holds the ninth back
    release.set()
    await asyncio.wait_for(ninth, 5)
    await wait_until(lambda: pipeline.in_flight == 0, 5, message="all done")
    assert entered == list(range(9))


async def test_a_failing_record_frees_its_place() -> None:
    async def boom() -> None:
        raise RuntimeError("a bug in one record")

    pipeline = RecordPipeline(max_in_flight=1)
    await pipeline.start(boom())
    await asyncio.wait_for(pipeline.start(asyncio.sleep(0)), 5)  # room again
    await wait_until(lambda: pipeline.in_flight == 0, 5, message="done")
