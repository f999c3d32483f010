"""A serial port as an asyncio byte stream that survives the port vanishing.

Why a reader thread: pyserial is blocking, and an SOS must reach the outbox within a few
milliseconds of its last byte. A dedicated thread blocks in ``read`` (short timeout, so it
can stop promptly) and hands every chunk to the event loop through
``loop.call_soon_threadsafe`` — the one bridge between the thread and asyncio, in
:meth:`SerialLink._read_loop`. Writes run in a worker thread, serialised by a lock.

When the port fails (USB adapter unplugged, pty closed) the link closes it, logs
"unavailable" once, reopens with jittered, capped exponential backoff and logs "recovered"
once. pyserial's exceptions become :class:`edge.errors.TransportError` here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import serial

from edge.errors import TransportError

log = logging.getLogger(__name__)

_PARITY = {"none": "N", "even": "E", "odd": "O", "mark": "M", "space": "S"}


class SerialLine(Protocol):
    """Line settings; a profile's ``transport`` section satisfies this as it is."""

    @property
    def baudrate(self) -> int: ...
    @property
    def bytesize(self) -> Literal[5, 6, 7, 8]: ...
    @property
    def parity(self) -> Literal["none", "even", "odd", "mark", "space"]: ...
    @property
    def stopbits(self) -> float: ...


@dataclass(frozen=True, slots=True)
class LineSettings:
    baudrate: int = 9600
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["none", "even", "odd", "mark", "space"] = "none"
    stopbits: float = 1


@dataclass(frozen=True, slots=True)
class LinkTiming:
    read_timeout_s: float = 0.05  # how long the reader blocks before checking for stop
    write_timeout_s: float = 1.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0

    def __post_init__(self) -> None:
        if min(self.read_timeout_s, self.write_timeout_s, self.backoff_initial_s) <= 0:
            raise ValueError("serial timeouts and backoff must be positive")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")

    def backoff_s(self, attempt: int) -> float:
        """Delay before reopen attempt ``attempt`` (0-based): capped, halved-range jitter."""
        cap = min(self.backoff_max_s, self.backoff_initial_s * 2 ** min(attempt, 30))
        return random.uniform(cap / 2, cap)  # jitter, not cryptography


class SerialLink:
    """One serial port. ``run`` owns the port; ``write`` may be called while it runs."""

    def __init__(
        self, port: str, line: SerialLine = LineSettings(), *, timing: LinkTiming = LinkTiming()
    ) -> None:
        self.port = port  # /dev/ttyUSB0, a pty slave, or a symlink to either
        self.line = line
        self.timing = timing
        self._serial: serial.Serial | None = None
        self._write_lock = asyncio.Lock()
        self._io_lock = threading.Lock()  # a write in a worker thread vs. close
        self._running = False
        self._opened_once = False
        self._unavailable_since: float | None = None
        self.reopen_count = 0

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    async def run(
        self, on_data: Callable[[Any], None], decode: Callable[[bytes], Any] | None = None
    ) -> None:
        """Read until cancelled, calling ``on_data`` on the event loop for every chunk.

        With ``decode``, the reader thread calls it on each chunk and ``on_data`` gets what
        it returned (issue #13: frame decoding and CRC checks off the event loop; one
        hand-over per chunk, whatever number of frames it holds). ``decode`` runs in one
        thread at a time, in chunk order. ``on_data`` must not raise. Port failures are
        handled here and never escape.
        """
        if self._running:
            raise RuntimeError(f"{self.port}: SerialLink.run is already running")
        self._running = True
        attempt = 0
        try:
            while True:
                try:
                    port = self._open()
                except TransportError as err:
                    self._mark_unavailable(err)
                    await asyncio.sleep(self.timing.backoff_s(attempt))
                    attempt += 1
                    continue
                self._mark_open()
                attempt = 0
                try:
                    await self._pump(port, on_data, decode)
                except TransportError as err:
                    self._mark_unavailable(err)
                await asyncio.sleep(self.timing.backoff_s(attempt))
                attempt += 1
        finally:
            self._running = False

    async def write(self, data: bytes) -> None:
        """Write all of ``data``. Raises TransportError if the port is not open or fails."""
        async with self._write_lock:
            port = self._serial
            if port is None:
                raise TransportError(f"{self.port}: serial port is not open")
            try:
                await asyncio.to_thread(self._write_blocking, port, data)
            except (serial.SerialException, OSError) as err:
                raise TransportError(f"{self.port}: write failed: {err}") from err

    def _write_blocking(self, port: serial.Serial, data: bytes) -> None:
        with self._io_lock:
            port.write(data)

    def _open(self) -> serial.Serial:
        # Opening a tty is a handful of non-blocking syscalls, so it runs on the loop:
        # a worker thread could not be cancelled without leaking the port it opens.
        try:
            return serial.Serial(
                port=self.port,
                baudrate=self.line.baudrate,
                bytesize=self.line.bytesize,
                parity=_PARITY[self.line.parity],
                stopbits=self.line.stopbits,
                timeout=self.timing.read_timeout_s,
                write_timeout=self.timing.write_timeout_s,
            )
        except (serial.SerialException, OSError, ValueError) as err:
            raise TransportError(f"{self.port}: cannot open: {err}") from err

    async def _pump(
        self,
        port: serial.Serial,
        on_data: Callable[[Any], None],
        decode: Callable[[bytes], Any] | None,
    ) -> None:
        """Run the reader thread until the port fails (TransportError) or we are cancelled."""
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[BaseException] = loop.create_future()
        stop = threading.Event()
        reader = threading.Thread(
            target=self._read_loop,
            args=(port, stop, loop, on_data, lost, decode),
            name=f"serial-reader {self.port}",
            daemon=True,
        )
        self._serial = port
        reader.start()
        try:
            err = await lost
            raise TransportError(f"{self.port}: {err}") from err
        finally:
            self._serial = None
            stop.set()
            with suppress(serial.SerialException, OSError):
                port.cancel_read()  # wakes the reader's select at once
            reader.join(timeout=self.timing.read_timeout_s * 4 + 1.0)
            with self._io_lock, suppress(serial.SerialException, OSError):
                port.close()

    @staticmethod
    def _read_loop(
        port: serial.Serial,
        stop: threading.Event,
        loop: asyncio.AbstractEventLoop,
        on_data: Callable[[Any], None],
        lost: asyncio.Future[BaseException],
        decode: Callable[[bytes], Any] | None = None,
    ) -> None:
        """Reader thread: the only code that runs off the event loop besides writes."""
        try:
            while not stop.is_set():
                try:
                    chunk = port.read(max(1, port.in_waiting))
                    if chunk and port.in_waiting:  # the rest of a frame that just began
                        chunk += port.read(port.in_waiting)
                except (serial.SerialException, OSError, TypeError) as err:
                    # TypeError: pyserial's read on a port closed under it; same meaning.
                    if not stop.is_set():
                        loop.call_soon_threadsafe(_resolve, lost, err)
                    return
                if chunk and not stop.is_set():
                    try:
                        item = chunk if decode is None else decode(chunk)
                    except Exception:  # a decoder bug must not end the reading
                        log.exception("%s: decoding a chunk failed; it is skipped", port.port)
                        continue
                    loop.call_soon_threadsafe(on_data, item)
        except RuntimeError:
            return  # the event loop is closed: nobody is listening any more

    def _mark_unavailable(self, err: BaseException) -> None:
        if self._unavailable_since is None:
            self._unavailable_since = time.monotonic()
            log.warning("%s: serial port unavailable: %s", self.port, err)
        else:
            log.debug("%s: still unavailable: %s", self.port, err)

    def _mark_open(self) -> None:
        if self._opened_once:
            self.reopen_count += 1
        self._opened_once = True
        if self._unavailable_since is not None:
            outage = time.monotonic() - self._unavailable_since
            self._unavailable_since = None
            log.info("%s: serial port recovered after %.1f s", self.port, outage)


def _resolve(future: asyncio.Future[BaseException], err: BaseException) -> None:
    if not future.done():
        future.set_result(err)
