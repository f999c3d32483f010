"""Modbus device simulators: water meters (RTU) and smart-bin sensors (TCP), on pymodbus.

Why real pymodbus servers with a model behind them: the edge must be tested against a
Modbus implementation that frames, checks CRCs and answers exceptions on its own, and the
hub's rules (a leak when the night flow never reaches zero, a collection task at 80 %
fill, a fire alert) need values that move like the real thing and can be pushed into
those states on demand. Each simulated device is a small model (:class:`WaterMeter`,
:class:`BinSensor`) whose registers are refreshed from the model on every read; writes to
its writable register go to the model (clamped as a real device would).

Register maps (big-endian words), matching ``device_profiles/water-meter.yaml`` and
``bin-sensor.yaml``. Holding and input registers are one map (as on many small devices),
so function 3 and 4 read the same values:

* water meter (input registers in its profile): 0-1 ``total_m3`` u32 × 0.001, 2
  ``flow_m3h`` u16 × 0.01;
* bin sensor: 0 ``fill_pct`` u16 × 0.1, 1 ``temperature_c`` i16 × 0.1, 2 ``tilt_deg`` u16 ×
  0.1, 3-9 reserved (read as 0, so one request can cover 0-10), 10 ``report_interval_s``
  u16 read/write (the device keeps it within 10..3600 s).

Registers outside the map answer exception 2 (illegal data address); writing a read-only
register does too. For tests a device can misbehave (:attr:`SimulatedDevice.fault`):
``silent`` (no reply at all), ``exception`` (every request answered with
:attr:`SimulatedDevice.exception_code`, e.g. 2 or 4), ``bad_crc`` (RTU replies with the
CRC's last byte flipped), and ``response_delay_s`` makes it slow.

Run one::

    python -m simulators.modbus_devices water-meter --port /dev/pts/N --units 1,2
    python -m simulators.modbus_devices bin --tcp-port 5020 --units 1

It prints ``READY <kind> units=… <where>`` once serving, then takes commands on stdin,
one per line: ``<unit> stuck on|off`` (water meter), ``<unit> full|fire|tilt|normal``
(bin), ``<unit> fault none|silent|bad_crc|exception <code>``, ``<unit> show``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import random
import struct
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Literal, cast

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

Fault = Literal["silent", "exception", "bad_crc"]
READ_FUNCTIONS = (3, 4)
WRITE_FUNCTIONS = (6, 16)


def _u16(value: float) -> int:
    return max(0, min(0xFFFF, round(value)))


def _i16(value: float) -> int:
    return struct.unpack(">H", struct.pack(">h", max(-0x8000, min(0x7FFF, round(value)))))[0]  # type: ignore[no-any-return]


def _u32(value: float) -> list[int]:
    raw = round(value) & 0xFFFFFFFF
    return [raw >> 16, raw & 0xFFFF]


@dataclass
class SimulatedDevice:
    """One unit id: its model, its register map, its misbehaviour and what it was asked."""

    unit: int
    fault: Fault | None = None
    exception_code: int = 4
    response_delay_s: float = 0.0
    #: requests received, by function code (reads: 3/4, writes: 6/16)
    requests: Counter[int] = field(default_factory=Counter)
    #: (function, address, count) of every read and write, in order
    log: list[tuple[int, int, int]] = field(default_factory=list)
    in_flight: int = 0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now().astimezone())

    kind: ClassVar[str] = "device"
    size: ClassVar[int] = 1  # registers of the map, from 0
    writable: ClassVar[tuple[int, ...]] = ()

    def simdata(self) -> list[SimData]:
        """The register map for pymodbus: read-only registers, then the writable ones."""
        data: list[SimData] = []
        start = 0
        for address in (*self.writable, self.size):
            if address > start:
                data.append(
                    SimData(
                        start,
                        count=address - start,
                        values=0,
                        datatype=DataType.REGISTERS,
                        readonly=True,
                    )
                )
            if address < self.size:
                data.append(SimData(address, values=0, datatype=DataType.REGISTERS))
            start = address + 1
        return data

    def registers(self) -> dict[int, int]:
        """The model's current register values (refreshed into the map on every read)."""
        raise NotImplementedError

    def written(self, address: int, values: list[int]) -> None:
        """Apply a write to the model; may change ``values`` (a device clamps settings)."""

    def set_fault(self, fault: Fault | None, exception_code: int = 4) -> None:
        self.fault = fault
        self.exception_code = exception_code

    def reads(self) -> int:
        return sum(self.requests[f] for f in READ_FUNCTIONS)

    async def action(
        self,
        function: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus calls this on every access, before it answers."""
        is_write = function in WRITE_FUNCTIONS and values is not None
        if function in READ_FUNCTIONS or is_write:
            self.requests[function] += 1
            self.log.append((function, address, count))
        self.in_flight += 1
        try:
            if self.response_delay_s > 0:
                await asyncio.sleep(self.response_delay_s)
        finally:
            self.in_flight -= 1
        if self.fault == "exception":
            return ExcCodes(self.exception_code)
        if is_write:
            assert values is not None
            words = [int(v) for v in values]
            self.written(address, words)
            cast("list[int]", values)[:] = words
        elif function in READ_FUNCTIONS:
            for register, value in self.registers().items():
                registers[register - start] = value
        return None


@dataclass
class WaterMeter(SimulatedDevice):
    """A household water meter: cumulative volume and the flow rate.

    Flow follows a day's pattern (morning and evening peaks, bursts in between) and is
    zero at night; ``stuck`` (a leaking toilet valve, a stuck meter) keeps it above zero
    round the clock, which is what the hub's night-leak rule looks for.
    """

    total_m3: float = 123.456
    stuck: bool = False
    leak_m3h: float = 0.08
    seed: int = 0
    _last: datetime | None = field(default=None, init=False, repr=False)
    _flow: float = field(default=0.0, init=False, repr=False)

    kind: ClassVar[str] = "water-meter"
    size: ClassVar[int] = 3

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed or self.unit)

    def flow_at(self, now: datetime) -> float:
        hour = now.hour + now.minute / 60
        if 0 <= hour < 5:
            usage = 0.0
        else:
            peaks = math.exp(-((hour - 7.5) ** 2) / 1.5) + 0.8 * math.exp(-((hour - 19.5) ** 2) / 2)
            usage = 1.2 * peaks if self._random.random() < 0.7 else 0.0
            if usage and self._random.random() < 0.3:
                usage += self._random.uniform(0.05, 0.6)
        if self.stuck:
            usage = max(usage, self.leak_m3h * self._random.uniform(0.8, 1.2))
        return round(usage, 2)

    def advance(self) -> None:
        now = self.clock()
        if self._last is not None:
            hours = max(0.0, (now - self._last).total_seconds() / 3600)
            self.total_m3 += self._flow * hours
        self._flow = self.flow_at(now)
        self._last = now

    @property
    def flow_m3h(self) -> float:
        return self._flow

    def registers(self) -> dict[int, int]:
        self.advance()
        high, low = _u32(self.total_m3 * 1000)
        return {0: high, 1: low, 2: _u16(self._flow * 100)}


@dataclass
class BinSensor(SimulatedDevice):
    """A smart-bin sensor: fill level rising through the day, lid temperature, tilt."""

    fill_pct: float = 20.0
    fill_rate_pct_h: float = 2.0
    temperature_c: float = 22.0
    tilt_deg: float = 1.0
    report_interval_s: int = 300
    on_fire: bool = False
    tilted: bool = False
    _last: datetime | None = field(default=None, init=False, repr=False)

    kind: ClassVar[str] = "bin"
    size: ClassVar[int] = 11
    writable: ClassVar[tuple[int, ...]] = (10,)
    INTERVAL_LIMITS: ClassVar[tuple[int, int]] = (10, 3600)

    def __post_init__(self) -> None:
        self._random = random.Random(self.unit)

    def advance(self) -> None:
        now = self.clock()
        if self._last is not None:
            hours = max(0.0, (now - self._last).total_seconds() / 3600)
            self.fill_pct = min(100.0, self.fill_pct + self.fill_rate_pct_h * hours)
        self._last = now
        ambient = 18 + 6 * math.sin((now.hour - 9) / 24 * 2 * math.pi)
        if self.on_fire:
            self.temperature_c = 72.5 + self._random.uniform(-1, 1)
        else:
            self.temperature_c = ambient + self._random.uniform(-0.5, 0.5)
        self.tilt_deg = 55.0 if self.tilted else 1.0 + self._random.uniform(-0.3, 0.3)

    def force(self, state: Literal["normal", "full", "fire", "tilt"]) -> None:
        """``full`` (fill ≥ 95 %), ``fire`` (≈ 72 °C), ``tilt`` (55°); ``normal`` ends the
        fire and the tilt and empties a bin that is 80 % full or more (collected)."""
        if state == "full":
            self.fill_pct = max(self.fill_pct, 95.0)
        elif state == "fire":
            self.on_fire = True
        elif state == "tilt":
            self.tilted = True
        else:
            self.on_fire = self.tilted = False
            if self.fill_pct >= 80:
                self.fill_pct = 5.0

    def registers(self) -> dict[int, int]:
        self.advance()
        return {
            0: _u16(self.fill_pct * 10),
            1: _i16(self.temperature_c * 10),
            2: _u16(self.tilt_deg * 10),
            10: self.report_interval_s,
        }

    def written(self, address: int, values: list[int]) -> None:
        if address <= 10 < address + len(values):
            low, high = self.INTERVAL_LIMITS
            at = 10 - address
            values[at] = max(low, min(high, values[at]))
            self.report_interval_s = values[at]


class DeviceServer:
    """One pymodbus server (a serial port or a TCP port) for a set of simulated units."""

    def __init__(self, devices: Sequence[SimulatedDevice]) -> None:
        self.devices = {d.unit: d for d in devices}
        self._sim = [SimDevice(id=d.unit, simdata=d.simdata(), action=d.action) for d in devices]
        self._server: ModbusSerialServer | ModbusTcpServer | None = None
        self._rtu = False
        self.where = ""
        self.tcp_port = 0
        self.replies_dropped = 0
        self.replies_corrupted = 0

    def _trace(self, sending: bool, data: bytes) -> bytes:
        """Sees each frame the server sends: where misbehaviour happens."""
        if not sending or not data:
            return data
        unit = data[0] if self._rtu else (data[6] if len(data) > 6 else -1)
        device = self.devices.get(unit)
        if device is None and self._rtu:
            self.replies_dropped += 1  # another unit on the bus; this one stays silent
            return b""
        if device is not None and device.fault == "silent":
            self.replies_dropped += 1
            return b""
        if device is not None and device.fault == "bad_crc" and self._rtu:
            self.replies_corrupted += 1
            return data[:-1] + bytes([data[-1] ^ 0x5A])
        return data

    async def start_rtu(
        self, port: str, *, baudrate: int = 9600, parity: str = "N", stopbits: int = 1
    ) -> None:
        self._rtu = True
        server = ModbusSerialServer(
            self._sim,
            port=port,
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
            trace_packet=self._trace,
        )
        await server.serve_forever(background=True)
        self._server = server
        self.where = f"port={port}"

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        server = ModbusTcpServer(self._sim, address=(host, port), trace_packet=self._trace)
        await server.serve_forever(background=True)
        self._server = server
        listener = server.transport
        sockets = getattr(listener, "sockets", None) or []
        self.tcp_port = sockets[0].getsockname()[1] if sockets else port
        self.where = f"tcp={host}:{self.tcp_port}"
        return self.tcp_port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None


# ---- command line ------------------------------------------------------------------------


def _make(kind: str, units: Sequence[int]) -> list[SimulatedDevice]:
    if kind == "water-meter":
        return [WaterMeter(unit) for unit in units]
    return [BinSensor(unit) for unit in units]


def apply_command(devices: dict[int, SimulatedDevice], line: str) -> str:
    """One stdin command (see the module docstring); returns the answer to print."""
    words = line.split()
    if len(words) < 2 or not words[0].isdigit() or int(words[0]) not in devices:
        return f"ERROR expected '<unit> <command>' for a unit in {sorted(devices)}: {line!r}"
    device, verb, rest = devices[int(words[0])], words[1], words[2:]
    if verb == "fault" and rest:
        if rest[0] == "none":
            device.set_fault(None)
        elif rest[0] in ("silent", "bad_crc"):
            device.set_fault(rest[0])  # type: ignore[arg-type]
        elif rest[0] == "exception" and len(rest) == 2 and rest[1].isdigit():
            device.set_fault("exception", int(rest[1]))
        else:
            return f"ERROR fault none|silent|bad_crc|exception <code>: {line!r}"
    elif verb == "stuck" and isinstance(device, WaterMeter) and rest in (["on"], ["off"]):
        device.stuck = rest[0] == "on"
    elif verb in ("full", "fire", "tilt", "normal") and isinstance(device, BinSensor):
        device.force(verb)  # type: ignore[arg-type]
    elif verb != "show":
        return f"ERROR unknown command for a {device.kind}: {line!r}"
    return f"OK {device.unit} {describe(device)}"


def describe(device: SimulatedDevice) -> str:
    fault = device.fault or "none"
    if isinstance(device, WaterMeter):
        return (
            f"total_m3={device.total_m3:.3f} flow_m3h={device.flow_m3h:.2f} "
            f"stuck={device.stuck} fault={fault}"
        )
    if isinstance(device, BinSensor):
        return (
            f"fill_pct={device.fill_pct:.1f} temperature_c={device.temperature_c:.1f} "
            f"tilt_deg={device.tilt_deg:.1f} report_interval_s={device.report_interval_s} "
            f"on_fire={device.on_fire} tilted={device.tilted} fault={fault}"
        )
    return f"fault={fault}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["water-meter", "bin"])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial port for Modbus RTU (a pty: /dev/pts/N)")
    where.add_argument("--tcp-port", type=int, help="TCP port for Modbus TCP (0: any free)")
    parser.add_argument("--host", default="127.0.0.1", help="TCP address to listen on")
    parser.add_argument("--units", default="1", help="unit ids, comma-separated (1,2,3)")
    parser.add_argument("--baudrate", type=int, default=9600)
    parser.add_argument("--parity", choices=["N", "E", "O"], default="N")


async def _serve(args: argparse.Namespace) -> int:
    try:
        units = [int(u) for u in str(args.units).split(",") if u.strip()]
    except ValueError:
        print(f"ERROR --units: comma-separated unit ids, not {args.units!r}", flush=True)
        return 2
    if not units or any(not 1 <= u <= 247 for u in units):
        print("ERROR --units: unit ids 1..247", flush=True)
        return 2
    # pymodbus logs a traceback for a request to a unit nobody simulates (another device
    # on the bus, in RTU): stdout is this simulator's command channel, keep it clean
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    devices = _make(args.kind, units)
    server = DeviceServer(devices)
    if args.port:
        await server.start_rtu(args.port, baudrate=args.baudrate, parity=args.parity)
    else:
        await server.start_tcp(args.host, args.tcp_port)
    print(f"READY {args.kind} units={','.join(map(str, units))} {server.where}", flush=True)
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:  # stdin closed: keep serving until killed
                await asyncio.Event().wait()
            if line.strip():
                print(apply_command(server.devices, line.strip()), flush=True)
    finally:
        await server.stop()


def main(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve(args))
    return 130


def cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.modbus_devices",
        description="Modbus water meters (RTU) and bin sensors (TCP) on pymodbus servers.",
    )
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
