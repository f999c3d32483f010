"""Simulated DL/T 645-2007 electricity meters on a real serial line, for tests and demos.

Why a pty (or any tty) rather than a fake transport: the edge opens it exactly like
``/dev/ttyUSB2``, so the real :class:`edge.transports.serial_port.SerialLink`, its reader
thread, pyserial's line settings and the driver's reply matching are exercised end to end.
Several meters share the line as they share an RS-485 pair: each answers only the read
requests addressed to it. The meters behave like real ones where it matters to a driver:

* replies start with 0 to 4 FE wake-up bytes (random unless fixed per meter);
* forward active energy only grows (``load_kw`` × elapsed time, ``time_scale`` to speed it
  up), phase voltages wander around 220 V;
* an unknown data identifier gets an abnormal reply (C = D1H) with "no such data";
* with ``byte_timing`` each byte leaves at the pace of the line (11 bits per character
  at 8E1: about 4.6 ms at 2400 baud), after ``reply_delay_s`` of meter turnaround.

Misbehaviour switches per meter, for tests: ``silent`` (never answers), ``error_byte``
(every read answered abnormally with that error byte), ``bad_checksum`` (replies with a
wrong checksum), ``preamble`` (noise or another meter's frame before each reply).

Usage::

    python -m simulators.dlt645_meter --meters 000012345678,000012345679 [--port /dev/pts/N]

Without ``--port`` a new pty is created and its path printed; with it, an existing tty (one
end of a ``socat`` pty pair, a USB RS-485 adapter) is opened and set to the line settings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from types import TracebackType

from edge.codecs import dlt645
from edge.codecs.dlt645 import Frame, FrameDecoder

BROADCAST = "999999999999"
ERROR_OTHER = 0x01
ERROR_NO_DATA = 0x02

#: Data identifiers the simulated meters answer: (BCD digits, decimals, signed).
DATA_FORMATS: dict[int, tuple[int, int, bool]] = {
    dlt645.DI_FORWARD_ACTIVE_ENERGY_TOTAL: (8, 2, False),  # XXXXXX.XX kWh
    dlt645.DI_PHASE_A_VOLTAGE: (4, 1, False),  # XXX.X V
    0x02010200: (4, 1, False),  # phase B voltage
    0x02010300: (4, 1, False),  # phase C voltage
    0x02020100: (6, 3, True),  # phase A current XXX.XXX A
    0x02800002: (4, 2, False),  # grid frequency XX.XX Hz
}
_VOLTAGES = (dlt645.DI_PHASE_A_VOLTAGE, 0x02010200, 0x02010300)

_TERMIOS_SPEED = {
    1200: termios.B1200,
    2400: termios.B2400,
    4800: termios.B4800,
    9600: termios.B9600,
    19200: termios.B19200,
}


def char_time_s(baudrate: int) -> float:
    """One character at 8E1: start, 8 data bits, parity, stop."""
    return 11 / baudrate


class SimulatedMeter:
    """One meter: its values, its misbehaviour switches and what it saw and said."""

    def __init__(
        self,
        address: str,
        *,
        energy_kwh: Decimal | str = "1234.56",
        load_kw: float = 1.2,
        time_scale: float = 1.0,
        wake_up: int | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        dlt645.address_bytes(address)  # raises CodecError for a bad address
        self.address = address
        self.load_kw = load_kw
        self.time_scale = time_scale
        self.wake_up = wake_up  # FE bytes before each reply; None: 0..4 at random
        self.silent = False
        self.error_byte: int | None = None
        self.bad_checksum = False
        self.preamble = b""  # put on the line before each reply: noise, a foreign frame
        self.fixed: dict[int, Decimal] = {}  # value overrides per data identifier
        self.requests: list[Frame] = []  # every request addressed to this meter
        self.replies: list[bytes] = []  # every reply put on the line, wake-up bytes included
        self._energy_base = Decimal(energy_kwh)
        self._clock = clock
        self._started = clock()
        self._rng = random.Random(seed)  # simulation, not cryptography
        self._voltage = {di: 220.0 + self._rng.uniform(-2, 2) for di in _VOLTAGES}

    def value(self, di: int) -> Decimal | None:
        """The present value of ``di``, or None for a data identifier the meter lacks."""
        if di in self.fixed:
            return self.fixed[di]
        if di == dlt645.DI_FORWARD_ACTIVE_ENERGY_TOTAL:
            hours = (self._clock() - self._started) * self.time_scale / 3600
            energy = self._energy_base + Decimal(str(self.load_kw * hours))
            return energy.quantize(Decimal("0.01"), rounding=ROUND_DOWN)
        if di in self._voltage:
            volts = self._voltage[di] + self._rng.gauss(0, 0.8)
            self._voltage[di] = min(235.0, max(205.0, 0.9 * volts + 0.1 * 220.0))
            return Decimal(f"{self._voltage[di]:.1f}")
        if di == 0x02020100:
            return Decimal(f"{self.load_kw * 1000 / 220:.3f}")
        if di == 0x02800002:
            return Decimal(f"{50 + self._rng.uniform(-0.05, 0.05):.2f}")
        return None

    def answer(self, request: Frame) -> bytes | None:
        """The bytes this meter puts on the line for ``request`` (None: it stays silent)."""
        self.requests.append(request)
        if self.silent:
            return None
        reply = self._reply_frame(request)
        raw = bytearray(dlt645.encode(reply, wake_up=self._wake_up_count()))
        if self.bad_checksum:
            raw[-2] ^= 0xFF
        self.replies.append(bytes(raw))
        return self.preamble + bytes(raw)

    def _reply_frame(self, request: Frame) -> Frame:
        function = request.function
        if function != dlt645.READ_DATA:
            return Frame(
                self.address, dlt645.REPLY | dlt645.ABNORMAL | function, bytes([ERROR_OTHER])
            )
        if self.error_byte is not None:
            return dlt645.error_reply(self.address, self.error_byte)
        if len(request.data) < 4:
            return dlt645.error_reply(self.address, ERROR_OTHER)
        di = int.from_bytes(request.data[:4], "little")
        value = self.value(di)
        digits, decimals, signed = DATA_FORMATS.get(di, (8, 2, False))
        if value is None:
            return dlt645.error_reply(self.address, ERROR_NO_DATA)
        raw = dlt645.bcd_encode(abs(value), digits=digits, decimals=decimals)
        if signed and value < 0:
            raw = raw[:-1] + bytes([raw[-1] | 0x80])
        return dlt645.read_reply(self.address, di, raw)

    def _wake_up_count(self) -> int:
        return self._rng.randint(0, 4) if self.wake_up is None else self.wake_up


def _matches(pattern: str, address: str) -> bool:
    """A request address with AA wildcard pairs against a meter's address."""
    return all(
        p.upper() == "AA" or p == a
        for p, a in zip(
            (pattern[i : i + 2] for i in range(0, 12, 2)),
            (address[i : i + 2] for i in range(0, 12, 2)),
            strict=True,
        )
    )


def set_line(fd: int, baudrate: int = 2400) -> None:
    """Raw mode and 8E1 at ``baudrate`` on a tty (a pty ignores the speed but keeps it)."""
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    speed = _TERMIOS_SPEED.get(baudrate, termios.B2400)
    attrs[2] &= ~(termios.CSIZE | termios.PARODD | termios.CSTOPB)
    attrs[2] |= termios.CS8 | termios.PARENB | termios.CREAD | termios.CLOCAL
    attrs[4] = attrs[5] = speed
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class SimulatedMeterBus:
    """A serial line with meters on it. Use ``async with``; see the module docstring."""

    def __init__(
        self,
        meters: Iterable[SimulatedMeter | str] = (),
        *,
        port: str | None = None,
        link_path: str | Path | None = None,
        baudrate: int = 2400,
        byte_timing: bool = False,
        reply_delay_s: float = 0.0,
    ) -> None:
        self.port = port  # an existing tty to open; None: create a pty
        self.link_path = Path(link_path) if link_path is not None else None
        self.baudrate = baudrate
        self.byte_timing = byte_timing
        self.reply_delay_s = reply_delay_s
        self.meters: dict[str, SimulatedMeter] = {}
        self.received = bytearray()  # every byte from the master, for exact-bytes tests
        self.requests: list[Frame] = []  # every frame from the master
        self.decoder = FrameDecoder()
        self.collisions = 0  # wildcard requests several meters would have answered
        self._fd = -1
        self._slave = -1
        self._replies: asyncio.Queue[bytes] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        for meter in meters:
            self.add_meter(meter)

    def add_meter(self, meter: SimulatedMeter | str) -> SimulatedMeter:
        if isinstance(meter, str):
            meter = SimulatedMeter(meter)
        self.meters[meter.address] = meter
        return meter

    def meter(self, address: str) -> SimulatedMeter:
        return self.meters[address]

    @property
    def path(self) -> str:
        """What the edge opens: the pty slave, or the tty given as ``port``."""
        if self._fd < 0:
            raise RuntimeError("the simulated meter bus is not started")
        return self.port if self.port is not None else os.ttyname(self._slave)

    async def __aenter__(self) -> SimulatedMeterBus:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self.port is None:
            self._fd, self._slave = os.openpty()  # the slave stays open: no EIO on the master
            tty.setraw(self._fd)
            set_line(self._slave, self.baudrate)
        else:
            self._fd = os.open(self.port, os.O_RDWR | os.O_NOCTTY)
            set_line(self._fd, self.baudrate)
        os.set_blocking(self._fd, False)
        loop = asyncio.get_running_loop()
        loop.add_reader(self._fd, self._on_readable)
        self._writer = asyncio.create_task(self._write_replies(), name="dlt645 meter replies")
        if self.link_path is not None:
            self.link_path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.link_path.with_name(f".{self.link_path.name}.{os.getpid()}")
            with suppress(FileNotFoundError):
                temporary.unlink()
            temporary.symlink_to(self.path)
            temporary.replace(self.link_path)  # atomic: the edge never sees no link

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        if self._fd >= 0:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._fd)
            loop.remove_writer(self._fd)
            os.close(self._fd)
            if self._slave >= 0:
                os.close(self._slave)
            self._fd = self._slave = -1
        if self.link_path is not None and self.link_path.is_symlink():
            self.link_path.unlink()

    def inject(self, data: bytes) -> None:
        """Put arbitrary bytes (noise, a foreign frame) on the line."""
        self._replies.put_nowait(data)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            asyncio.get_running_loop().remove_reader(self._fd)
            return
        self.received += data
        for frame in self.decoder.feed(data):
            if frame.is_reply:
                continue  # another meter's answer seen on the shared pair
            self.requests.append(frame)
            self._dispatch(frame)

    def _dispatch(self, request: Frame) -> None:
        if request.address == BROADCAST:
            return  # broadcasts (time sync) are never answered
        matching = [m for m in self.meters.values() if _matches(request.address, m.address)]
        if len(matching) > 1:
            self.collisions += 1  # on a real pair the answers would garble each other
            return
        for meter in matching:
            reply = meter.answer(request)
            if reply is not None:
                self._replies.put_nowait(reply)

    async def _write_replies(self) -> None:
        loop = asyncio.get_running_loop()
        char_s = char_time_s(self.baudrate)
        while True:
            data = await self._replies.get()
            if self.reply_delay_s > 0:
                await asyncio.sleep(self.reply_delay_s)
            if not self.byte_timing:
                await self._write_all(data)
                continue
            started = loop.time()
            for index in range(len(data)):
                # A byte reaches the other end once its last bit has been sent.
                await asyncio.sleep(max(0.0, started + (index + 1) * char_s - loop.time()))
                await self._write_all(data[index : index + 1])

    async def _write_all(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except (BlockingIOError, InterruptedError):
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_writer(self._fd, _set_done, ready)
                try:
                    await ready
                finally:
                    loop.remove_writer(self._fd)
                continue
            except OSError:
                return  # nobody on the line: the bytes are lost, as on a wire
            view = view[written:]


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# ---- command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Simulated DL/T 645-2007 electricity meters on a serial line."
    parser.add_argument("--meters", required=True, help="comma-separated 12-digit meter addresses")
    parser.add_argument("--port", help="an existing tty to answer on (default: a new pty)")
    parser.add_argument("--link", help="create this symlink to the line (e.g. var/meters)")
    parser.add_argument("--baudrate", type=int, default=2400)
    parser.add_argument(
        "--byte-timing", action="store_true", help="send each byte at the pace of the line"
    )
    parser.add_argument("--reply-delay-ms", type=float, default=20.0, help="meter turnaround")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="simulated seconds per real second"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--wake-up", type=int, choices=range(5), default=None, help="FE bytes (default: 0-4)"
    )
    parser.add_argument("--voltage", type=Decimal, default=None, help="fix the phase voltages")
    parser.add_argument("--energy", type=Decimal, default=None, help="fix the energy total")
    parser.add_argument("--silent", default="", help="comma-separated meters that never answer")
    parser.add_argument(
        "--error", default="", help="ADDRESS:ERRBYTE,…: meters that answer abnormally"
    )
    parser.add_argument("--bad-checksum", default="", help="meters that reply with a bad CS")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every request")


def _addresses(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def build_bus(args: argparse.Namespace) -> SimulatedMeterBus:
    """The bus described by the command line. Raises ValueError for a bad argument."""
    bus = SimulatedMeterBus(
        port=args.port,
        link_path=args.link,
        baudrate=args.baudrate,
        byte_timing=args.byte_timing,
        reply_delay_s=args.reply_delay_ms / 1000,
    )
    for index, address in enumerate(_addresses(args.meters)):
        seed = None if args.seed is None else args.seed + index
        meter = bus.add_meter(
            SimulatedMeter(address, time_scale=args.time_scale, wake_up=args.wake_up, seed=seed)
        )
        if args.voltage is not None:
            meter.fixed.update(dict.fromkeys(_VOLTAGES, args.voltage))
        if args.energy is not None:
            meter.fixed[dlt645.DI_FORWARD_ACTIVE_ENERGY_TOTAL] = args.energy
    for address in _addresses(args.silent):
        bus.meter(address).silent = True
    for address in _addresses(args.bad_checksum):
        bus.meter(address).bad_checksum = True
    for item in _addresses(args.error):
        address, _, error = item.partition(":")
        bus.meter(address).error_byte = int(error or "2", 0)
    return bus


async def _serve(bus: SimulatedMeterBus, verbose: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with bus:
        print(f"meters {', '.join(bus.meters)} on {bus.path}", flush=True)
        seen = 0
        while not stop.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
            if verbose:
                for frame in bus.requests[seen:]:
                    print(f"request {frame.address} C={frame.control:02X} {frame.data.hex(' ')}")
                seen = len(bus.requests)


def main(args: argparse.Namespace) -> int:
    try:
        bus = build_bus(args)
    except (ValueError, KeyError) as err:
        print(f"dlt645_meter: {err}", file=sys.stderr)
        return 2
    asyncio.run(_serve(bus, args.verbose))
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.dlt645_meter")
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
