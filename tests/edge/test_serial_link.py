"""SerialLink on real pseudo-terminals: data both ways, the port vanishing and coming back
behind the same symlink, and prompt shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import tty
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest

from edge.errors import TransportError
from edge.transports.serial_port import LinkTiming, SerialLink
from tests.edge.conftest import eventually

pytestmark = pytest.mark.integration

FAST = LinkTiming(read_timeout_s=0.02, backoff_initial_s=0.01, backoff_max_s=0.05)


class Pty:
    """A pty pair with a symlink to its slave, like ``/dev/serial/by-id/...``."""

    def __init__(self, link: Path) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        temporary = link.with_name(link.name + ".new")
        temporary.symlink_to(os.ttyname(self.slave))
        temporary.replace(link)

    def read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            data += os.read(self.master, count - len(data))
        return data

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@asynccontextmanager
async def running(link: SerialLink, received: bytearray) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(link.run(received.extend))
    try:
        yield task
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("serial-reader")]


async def test_bytes_flow_both_ways(tmp_path: Path) -> None:
    pty = Pty(tmp_path / "bus0")
    received = bytearray()
    link = SerialLink(str(tmp_path / "bus0"), timing=FAST)
    try:
        async with running(link, received):
            await eventually(lambda: link.is_open, what="port open")
            os.write(pty.master, b"\xaa\x55hello")
            await eventually(lambda: received == b"\xaa\x55hello", what="bytes from the device")
            await link.write(b"\x80ack")
            assert await asyncio.to_thread(pty.read, 4) == b"\x80ack"
        assert not link.is_open
    finally:
        pty.close()


async def test_port_vanishes_and_comes_back_behind_the_same_link(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="edge.transports.serial_port")
    path = tmp_path / "bus0"
    first = Pty(path)
    received = bytearray()
    link = SerialLink(str(path), timing=FAST)
    second: Pty | None = None
    try:
        async with running(link, received):
            await eventually(lambda: link.is_open, what="port open")
            # The adapter is pulled: udev removes its by-id link, the pty goes away. (Removing
            # the link first also keeps a reused /dev/pts number from being opened by it.)
            path.unlink()
            first.close()
            await eventually(lambda: not link.is_open, what="loss noticed")
            with pytest.raises(TransportError, match="not open"):
                await link.write(b"x")
            await eventually(
                lambda: any("still unavailable" in r.message for r in caplog.records),
                what="a failed reopen",
            )
            second = Pty(path)  # ... and plugged in again
            await eventually(lambda: link.is_open, what="reopened")
            assert link.reopen_count == 1
            os.write(second.master, b"again")
            await eventually(lambda: received == b"again", what="data after reopen")
            await link.write(b"back")
            assert await asyncio.to_thread(second.read, 4) == b"back"
    finally:
        if second is not None:
            second.close()
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert sum("unavailable" in m for m in messages) == 1
    assert sum("recovered" in m for m in messages) == 1


async def test_missing_port_at_start_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "later"
    received = bytearray()
    link = SerialLink(str(path), timing=FAST)
    pty: Pty | None = None
    try:
        async with running(link, received):
            assert not link.is_open
            pty = Pty(path)
            await eventually(lambda: link.is_open, what="port open")
            assert link.reopen_count == 0
    finally:
        if pty is not None:
            pty.close()


async def test_cancel_stops_the_reader_thread_and_closes_the_port(tmp_path: Path) -> None:
    pty = Pty(tmp_path / "bus0")
    link = SerialLink(str(tmp_path / "bus0"), timing=LinkTiming(read_timeout_s=5.0))
    try:
        async with running(link, bytearray()):
            await eventually(lambda: link.is_open, what="port open")
            assert len(reader_threads()) == 1
        # Even with a 5 s read timeout, cancel_read wakes the thread at once.
        assert reader_threads() == []
        assert not link.is_open
    finally:
        pty.close()


async def test_run_is_not_reentrant(tmp_path: Path) -> None:
    link = SerialLink(str(tmp_path / "none"), timing=FAST)
    first = asyncio.create_task(link.run(lambda _: None))
    second = asyncio.create_task(link.run(lambda _: None))  # tasks start in order
    with pytest.raises(RuntimeError, match="already running"):
        await second
    first.cancel()
    with suppress(asyncio.CancelledError):
        await first


def test_backoff_is_jittered_and_capped() -> None:
    timing = LinkTiming(backoff_initial_s=0.2, backoff_max_s=5.0)
    for attempt, cap in [(0, 0.2), (1, 0.4), (3, 1.6), (5, 5.0), (60, 5.0)]:
        delays = [timing.backoff_s(attempt) for _ in range(50)]
        assert all(cap / 2 <= d <= cap for d in delays)
    with pytest.raises(ValueError, match="positive"):
        LinkTiming(read_timeout_s=0)
    with pytest.raises(ValueError, match="at least"):
        LinkTiming(backoff_initial_s=1, backoff_max_s=0.5)
