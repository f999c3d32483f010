"""A TCP proxy under a test's control: pass, delay, partition (stall or blackhole), cut.

Put between the edge and the broker, it is the network the fault tests break:

- ``delay(s)``: every chunk is delivered ``s`` seconds after it was read, order kept;
- ``partition("stall")``: nothing gets through, as when packets are dropped and TCP keeps
  retransmitting; the bytes are held (and the reads stop, so the senders' buffers fill) and
  delivered on ``heal()`` — unless an endpoint gave up first (its keepalive), in which
  case the proxy closes the other side too;
- ``partition("blackhole")``: everything sent is discarded and closes are not passed on,
  as in a partition long enough for TCP itself to give up; on ``heal()`` every connection
  that lost bytes is cut, since its stream has a hole;
- ``cut()``: every open connection is reset at once (new ones are accepted).

New connections during a partition are accepted but not connected upstream until it heals.
The proxy runs in the caller's asyncio loop (:class:`TcpProxy`) or in a thread of its own
(:class:`ProxyThread`) for tests that block, e.g. while a restarted hub becomes healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from enum import StrEnum
from typing import Any, TypeVar

T = TypeVar("T")
CHUNK = 65_536
QUEUED_CHUNKS = 64  # per direction; beyond that the proxy stops reading (backpressure)


class Mode(StrEnum):
    PASS = "pass"
    STALL = "stall"
    BLACKHOLE = "blackhole"


class _Connection:
    """One client connection and its upstream twin."""

    def __init__(
        self, proxy: TcpProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.client = (reader, writer)
        self.writers: list[asyncio.StreamWriter] = [writer]
        self.holed = False  # bytes were discarded: the stream can never be whole again

    async def run(self) -> None:
        proxy = self.proxy
        client_reader, client_writer = self.client
        try:
            while proxy.mode is not Mode.PASS:
                if proxy.mode is Mode.BLACKHOLE:
                    await self._discard(client_reader)
                    return
                await proxy.healed.wait()
            try:
                up_reader, up_writer = await asyncio.open_connection(proxy.host, proxy.port)
            except OSError:
                proxy.stats["upstream_refused"] += 1
                return
            self.writers.append(up_writer)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._direction(client_reader, up_writer))
                group.create_task(self._direction(up_reader, client_writer))
        except (ConnectionError, OSError, ExceptionGroup):
            pass  # reset by a peer or by cut(): the connection is over either way
        finally:
            self.abort()
            proxy.connections.discard(self)

    async def _discard(self, reader: asyncio.StreamReader) -> None:
        """Blackhole a connection opened during the partition; heal() cuts it."""
        self.holed = True
        while data := await reader.read(CHUNK):
            self.proxy.stats["bytes_dropped"] += len(data)
        await self.proxy.healed.wait()

    async def _direction(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUED_CHUNKS)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._read(reader, queue))
            group.create_task(self._deliver(queue, writer))

    async def _read(
        self, reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes] | None]
    ) -> None:
        loop = asyncio.get_running_loop()
        while data := await reader.read(CHUNK):
            if self.proxy.mode is Mode.BLACKHOLE:
                self.holed = True
                self.proxy.stats["bytes_dropped"] += len(data)
                continue
            await queue.put((loop.time() + self.proxy.delay_s, data))
        if self.proxy.mode is Mode.BLACKHOLE:
            self.holed = True  # the close is lost in the partition too
            await self.proxy.healed.wait()
        await queue.put(None)

    async def _deliver(
        self, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        while (item := await queue.get()) is not None:
            due, data = item
            if due > loop.time():
                await asyncio.sleep(due - loop.time())  # the injected latency itself
            if self.proxy.mode is Mode.BLACKHOLE:
                self.holed = True
                self.proxy.stats["bytes_dropped"] += len(data)
                continue
            await self.proxy.healed.wait()
            writer.write(data)
            await writer.drain()
            self.proxy.stats["bytes_forwarded"] += len(data)
        if writer.can_write_eof():
            writer.write_eof()

    def abort(self) -> None:
        for writer in self.writers:
            transport = writer.transport
            if not transport.is_closing():
                transport.abort()


class TcpProxy:
    """Listens on 127.0.0.1:``listen_port`` (0: a free one) and forwards to host:port."""

    def __init__(self, host: str, port: int, listen_port: int = 0) -> None:
        self.host = host
        self.port = port
        self.listen_port = listen_port
        self.mode = Mode.PASS
        self.delay_s = 0.0
        self.healed = asyncio.Event()
        self.healed.set()
        self.connections: set[_Connection] = set()
        self.stats: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)
        self.listen_port = int(self._server.sockets[0].getsockname()[1])
        return self.listen_port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        connection = _Connection(self, reader, writer)
        self.connections.add(connection)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await connection.run()
        finally:
            if task is not None:
                self._tasks.discard(task)

    # -- faults (call in the proxy's loop) ---------------------------------------------------
    def delay(self, seconds: float) -> None:
        self.delay_s = seconds

    def partition(self, mode: Mode | str = Mode.STALL) -> None:
        self.mode = Mode(mode)
        if self.mode is not Mode.PASS:
            self.stats["partitions"] += 1
            self.healed.clear()

    def heal(self) -> None:
        self.mode = Mode.PASS
        for connection in list(self.connections):
            if connection.holed:
                connection.abort()
        self.healed.set()

    def cut(self) -> None:
        self.stats["cuts"] += 1
        for connection in list(self.connections):
            connection.abort()


class ProxyThread:
    """A :class:`TcpProxy` on an event loop in a daemon thread; every method is blocking
    and safe to call from any thread."""

    def __init__(self, host: str, port: int, listen_port: int = 0) -> None:
        self._target = (host, port, listen_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._proxy: TcpProxy | None = None
        self.port = 0

    def start(self) -> ProxyThread:
        self._thread.start()

        async def create() -> int:
            self._proxy = TcpProxy(*self._target)
            return await self._proxy.start()

        self.port = self._run(create())
        return self

    def _run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout_s)

    def _call(self, fn: Callable[[TcpProxy], T]) -> T:
        async def call() -> T:
            assert self._proxy is not None, "start() first"
            return fn(self._proxy)

        return self._run(call())

    def delay(self, seconds: float) -> None:
        self._call(lambda p: p.delay(seconds))

    def partition(self, mode: Mode | str = Mode.STALL) -> None:
        self._call(lambda p: p.partition(mode))

    def heal(self) -> None:
        self._call(lambda p: p.heal())

    def cut(self) -> None:
        self._call(lambda p: p.cut())

    @property
    def stats(self) -> dict[str, int]:
        return self._call(lambda p: {**p.stats, "open": len(p.connections)})

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._proxy is not None:
            with contextlib.suppress(TimeoutError):
                self._run(self._proxy.close(), timeout_s=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
