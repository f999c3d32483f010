"""Modbus links (RTU on a serial port, TCP to host:port) over pymodbus's async clients.

Why a wrapper and not the pymodbus client as it is: the drivers need every way a
request can fail to be *one typed error with a reason* the bus scheduler can count
(``timeout``, ``bad_crc``, ``exception_2``, ``link_down``, ``bad_reply``), and they need
it within their own deadline. pymodbus reports these differently (an exception response
is a normal return value, a reply with a bad CRC is silently dropped and looks like a
timeout after the client's own timeout, a lost connection is a ``ConnectionException``
and, left to itself, a background reconnect loop). So here:

* pymodbus's own retries and auto-reconnect are off (``retries=0``,
  ``reconnect_delay=0``); the bus scheduler decides about retries per device, and the link
  reconnects on demand with capped exponential backoff, so a dead port or host costs one
  fast failure per attempt, not a stalled request;
* every request runs under the caller's ``timeout_s`` (:class:`ModbusTimeout`); a link
  that times out a few requests in a row with no reply from any unit in between is
  closed and opened afresh (a half-open TCP connection; a serial adapter that was
  unplugged and came back under the same name);
* on RTU, a reply for the asked unit and function whose CRC is wrong ends the request at
  once as :class:`BadCrc` (the frame is complete: waiting out the timeout tells nothing
  more), found by watching the received bytes;
* an exception response becomes :class:`ModbusExceptionReply` with its code.

pymodbus logs every failed request at ERROR with a frame dump; the drivers count failures
and log them at most once a minute, so the ``pymodbus`` logger is quietened unless the
installation configured it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.framer.rtu import FramerRTU
from pymodbus.pdu import ModbusPDU

from edge.errors import DeviceError, TransportError
from edge.transports.serial_port import LineSettings, SerialLine

log = logging.getLogger(__name__)

Table = Literal["holding", "input"]

DEFAULT_LINE = LineSettings()
_PARITY = {"none": "N", "even": "E", "odd": "O", "mark": "M", "space": "S"}
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class ModbusTimeout(TimeoutError):
    """No (valid) reply within the request's deadline."""

    reason = "timeout"


class LinkDown(TransportError):
    """The serial port cannot be opened or the TCP connection is not there (backing off)."""

    reason = "link_down"


class ModbusExceptionReply(DeviceError):
    """The device answered with a Modbus exception response."""

    def __init__(self, unit: int, function_code: int, code: int) -> None:
        self.code = code
        self.reason = f"exception_{code}"
        name = EXCEPTION_NAMES.get(code, "unknown")
        super().__init__(
            f"unit {unit}: Modbus exception {code} ({name}) to function {function_code}"
        )


class BadCrc(DeviceError):
    """An RTU reply arrived whole but its CRC is wrong (noise, a second master)."""

    reason = "bad_crc"


class BadReply(DeviceError):
    """A reply that does not answer the request (wrong register count, undecodable)."""

    reason = "bad_reply"


class ModbusLink(Protocol):
    """What the drivers need from a link; :class:`RtuLink`, :class:`TcpLink` or a fake."""

    name: str

    async def read(
        self, unit: int, table: Table, start: int, count: int, timeout_s: float
    ) -> list[int]: ...

    async def write(self, unit: int, address: int, registers: list[int], timeout_s: float) -> None:
        """Function 6 for one register, 16 for more."""
        ...

    def close(self) -> None: ...


def _quieten_pymodbus() -> None:
    logger = logging.getLogger("pymodbus")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.CRITICAL)


def rtu_reply_size(frame: bytes) -> int | None:
    """Length of the RTU reply starting ``frame`` (address, function, …, CRC), or None
    while too few bytes are there to tell or for functions the drivers do not use."""
    if len(frame) < 2:
        return None
    function = frame[1]
    if function & 0x80:
        return 5
    if function in (3, 4):
        return 5 + frame[2] if len(frame) >= 3 else None
    if function in (6, 16):
        return 8
    return None


def rtu_crc_ok(frame: bytes) -> bool:
    """Whether the last two bytes of ``frame`` are the Modbus CRC of the rest."""
    received = (frame[-2] << 8) | frame[-1]
    return bool(FramerRTU.compute_CRC(frame[:-2]) == received)


class _PymodbusLink:
    """Shared by RTU and TCP: connect on demand with backoff, typed errors, deadlines."""

    def __init__(
        self,
        name: str,
        client: ModbusBaseClient,
        *,
        connect_timeout_s: float,
        backoff_s: float,
        backoff_max_s: float,
        clock: Callable[[], float],
        reconnect_after_timeouts: int | None = None,
    ) -> None:
        _quieten_pymodbus()
        self._reconnect_after_timeouts = reconnect_after_timeouts
        self._timeouts_in_row = 0
        self.name = name
        self._client = client
        self._connect_timeout_s = connect_timeout_s
        self._backoff_initial_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._clock = clock
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self._down_reason = ""
        self._connecting = asyncio.Lock()
        self.connects = 0
        self.connect_failures = 0
        self.reconnects_after_timeouts = 0

    @property
    def is_open(self) -> bool:
        return bool(self._client.connected)

    def close(self) -> None:
        self._client.close()

    async def _ensure_connected(self) -> None:
        if self._client.connected:
            return
        async with self._connecting:
            if self._client.connected:
                return
            now = self._clock()
            if now < self._retry_at:
                raise LinkDown(
                    f"{self.name}: unavailable ({self._down_reason}); "
                    f"next attempt in {self._retry_at - now:.1f} s"
                )
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    connected = await self._client.connect()
            except (TimeoutError, OSError, ModbusException) as err:
                connected, reason = False, f"{type(err).__name__}: {err}"
            else:
                reason = "cannot connect"
            if not connected:
                self.connect_failures += 1
                self._client.close()
                self._backoff_s = min(
                    self._backoff_max_s,
                    self._backoff_s * 2 if self._backoff_s else self._backoff_initial_s,
                )
                self._retry_at = self._clock() + self._backoff_s
                if not self._down_reason:
                    log.warning(
                        "%s: unavailable (%s); retrying with backoff up to %.0f s",
                        self.name,
                        reason,
                        self._backoff_max_s,
                    )
                self._down_reason = reason
                raise LinkDown(f"{self.name}: {reason}")
            self.connects += 1
            if self._down_reason:
                log.info("%s: connected again", self.name)
            self._down_reason = ""
            self._backoff_s = 0.0
            self._retry_at = 0.0

    async def read(
        self, unit: int, table: Table, start: int, count: int, timeout_s: float
    ) -> list[int]:
        if table == "holding":
            function = 3

            def call() -> Awaitable[ModbusPDU]:
                return self._client.read_holding_registers(start, count=count, device_id=unit)
        else:
            function = 4

            def call() -> Awaitable[ModbusPDU]:
                return self._client.read_input_registers(start, count=count, device_id=unit)

        reply = await self._request(unit, function, call, timeout_s)
        registers = list(reply.registers)
        if len(registers) != count:
            raise BadReply(
                f"unit {unit}: asked for {count} registers at {start}, got {len(registers)}"
            )
        return registers

    async def write(self, unit: int, address: int, registers: list[int], timeout_s: float) -> None:
        if len(registers) == 1:
            await self._request(
                unit,
                6,
                lambda: self._client.write_register(address, registers[0], device_id=unit),
                timeout_s,
            )
        else:
            await self._request(
                unit,
                16,
                lambda: self._client.write_registers(address, registers, device_id=unit),
                timeout_s,
            )

    async def _request(
        self,
        unit: int,
        function: int,
        call: Callable[[], Awaitable[ModbusPDU]],
        timeout_s: float,
    ) -> ModbusPDU:
        deadline = self._clock() + timeout_s
        await self._ensure_connected()
        try:
            async with asyncio.timeout(max(0.0, deadline - self._clock())):
                reply = await self._exchange(unit, function, call)
        except TimeoutError:
            self._timed_out()
            raise ModbusTimeout(
                f"unit {unit}: no reply to function {function} within {timeout_s * 1000:.0f} ms"
            ) from None
        except ConnectionException as err:
            self._client.close()
            raise LinkDown(f"{self.name}: {err}") from None
        except ModbusException as err:
            # pymodbus's own "no response" (its timeout is set longer than ours) or a
            # frame it could not decode
            if "No response" in str(err):
                self._timed_out()
                raise ModbusTimeout(f"unit {unit}: no reply to function {function}") from None
            raise BadReply(f"unit {unit}: {err}") from None
        self._timeouts_in_row = 0
        if reply.isError():
            raise ModbusExceptionReply(
                unit, function, int(getattr(reply, "exception_code", 0) or 0)
            )
        return reply

    def _timed_out(self) -> None:
        """A connection that no longer answers anybody may be half-open (the peer lost
        power, a NAT forgot it): after a few timeouts in a row, with no reply from any unit
        in between, drop it so that the next request connects afresh."""
        self._timeouts_in_row += 1
        limit = self._reconnect_after_timeouts
        if limit is not None and self._timeouts_in_row >= limit:
            self._timeouts_in_row = 0
            self.reconnects_after_timeouts += 1
            self._client.close()

    async def _exchange(
        self, unit: int, function: int, call: Callable[[], Awaitable[ModbusPDU]]
    ) -> ModbusPDU:
        return await call()


class RtuLink(_PymodbusLink):
    """Modbus RTU master on one serial port (an RS-485 adapter, or a pty in tests)."""

    def __init__(
        self,
        port: str,
        line: SerialLine = DEFAULT_LINE,
        *,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        reconnect_after_timeouts: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port = port
        self._expect: tuple[int, int] | None = None  # unit, function of the request
        self._crc_failed: asyncio.Event | None = None
        client = AsyncModbusSerialClient(
            port,
            baudrate=line.baudrate,
            bytesize=line.bytesize,
            parity=_PARITY[line.parity],
            stopbits=int(line.stopbits) if line.stopbits != 1.5 else 1,
            # our deadlines govern; pymodbus's only has to be longer (it also bounds
            # opening the port)
            timeout=10.0,
            retries=0,
            reconnect_delay=0,
            name=f"modbus-rtu {port}",
            trace_packet=self._watch,
        )
        super().__init__(
            f"modbus-rtu {port}",
            client,
            connect_timeout_s=5.0,
            backoff_s=backoff_s,
            backoff_max_s=backoff_max_s,
            clock=clock,
            reconnect_after_timeouts=reconnect_after_timeouts,
        )
        self.bad_crc = 0

    def _watch(self, sending: bool, data: bytes) -> bytes:
        """Sees every byte buffer sent and received; flags a whole reply with a bad CRC."""
        if sending or self._expect is None or self._crc_failed is None:
            return data
        unit, function = self._expect
        if len(data) >= 2 and data[0] == unit and data[1] in (function, function | 0x80):
            size = rtu_reply_size(data)
            if size is not None and len(data) >= size and not rtu_crc_ok(data[:size]):
                self.bad_crc += 1
                self._crc_failed.set()
        return data

    async def _exchange(
        self, unit: int, function: int, call: Callable[[], Awaitable[ModbusPDU]]
    ) -> ModbusPDU:
        crc_failed = asyncio.Event()
        self._expect, self._crc_failed = (unit, function), crc_failed
        request = asyncio.ensure_future(call())
        watch = asyncio.ensure_future(crc_failed.wait())
        try:
            await asyncio.wait({request, watch}, return_when=asyncio.FIRST_COMPLETED)
            if request.done():
                return request.result()
            raise BadCrc(f"unit {unit}: reply to function {function} with a bad CRC")
        finally:
            self._expect = self._crc_failed = None
            for task in (request, watch):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task


class TcpLink(_PymodbusLink):
    """One Modbus TCP connection to ``host:port``, shared by every unit id behind it."""

    def __init__(
        self,
        host: str,
        port: int = 502,
        *,
        connect_timeout_s: float = 2.0,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        reconnect_after_timeouts: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        client = AsyncModbusTcpClient(
            host,
            port=port,
            timeout=max(10.0, connect_timeout_s),
            retries=0,
            reconnect_delay=0,
            name=f"modbus-tcp {host}:{port}",
        )
        super().__init__(
            f"modbus-tcp {host}:{port}",
            client,
            connect_timeout_s=connect_timeout_s,
            backoff_s=backoff_s,
            backoff_max_s=backoff_max_s,
            clock=clock,
            reconnect_after_timeouts=reconnect_after_timeouts,
        )
