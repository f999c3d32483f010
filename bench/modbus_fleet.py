"""Modbus servers for the polling benchmarks: ``python -m bench.modbus_fleet ...``.

Their own process, like PLCs and meters on the network would be. Every unit has 100
holding registers. Each request is stamped (``time.monotonic``, the same clock as every
process on the machine) in the server as it arrives, so schedule jitter is measured where
the device sees it, independently of the edge's own bookkeeping.

    python -m bench.modbus_fleet tcp --ports 10 --units 20     # 200 devices
    python -m bench.modbus_fleet rtu --port /dev/pts/N --units 1

It prints ``READY <port,port,…>`` once serving, then takes commands on stdin: ``mark``
forgets the stamps so far; ``report`` prints one JSON line ``{"<port>:<unit>": [t, …]}``;
``counts`` prints ``{"<port>": replies sent}`` since the start (what the exact Modbus
counting of ``bench.modbus_store`` compares with the hub's rows); ``stop`` stops serving
(every listener and connection closed) and then prints the same counts, so no reply can
be sent after the figure is taken.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections import defaultdict

from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

REGISTERS = 100


class Stamps:
    def __init__(self) -> None:
        self.times: defaultdict[str, list[float]] = defaultdict(list)
        self.replies: defaultdict[str, int] = defaultdict(int)

    def tracer(self, where: str, rtu: bool):  # type: ignore[no-untyped-def]
        def trace(sending: bool, data: bytes) -> bytes:
            if sending:
                if data:
                    self.replies[where] += 1
            elif data:
                unit = data[0] if rtu else (data[6] if len(data) > 6 else -1)
                self.times[f"{where}:{unit}"].append(time.monotonic())
            return data

        return trace


def devices(units: int) -> list[SimDevice]:
    return [
        SimDevice(
            id=unit,
            simdata=[SimData(0, count=REGISTERS, values=0, datatype=DataType.REGISTERS)],
        )
        for unit in range(1, units + 1)
    ]


async def serve(args: argparse.Namespace) -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    stamps = Stamps()
    where: list[str] = []
    servers: list[ModbusTcpServer | ModbusSerialServer] = []
    if args.mode == "tcp":
        for _ in range(args.ports):
            tcp = ModbusTcpServer(devices(args.units), address=("127.0.0.1", 0))
            await tcp.serve_forever(background=True)
            servers.append(tcp)
            port = tcp.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
            tcp.trace_packet = stamps.tracer(str(port), rtu=False)  # read per connection
            where.append(str(port))
    else:
        rtu = ModbusSerialServer(
            devices(args.units),
            port=args.port,
            baudrate=9600,
            trace_packet=stamps.tracer("rtu", rtu=True),
        )
        await rtu.serve_forever(background=True)
        servers.append(rtu)
        where.append("rtu")
    print("READY " + ",".join(where), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if not line:
            return
        if line == "mark":
            stamps.times.clear()
            print("OK", flush=True)
        elif line == "report":
            print(json.dumps(stamps.times), flush=True)
        elif line == "counts":
            print(json.dumps(stamps.replies), flush=True)
        elif line == "stop":
            for server in servers:
                await server.shutdown()  # type: ignore[no-untyped-call]
            print(json.dumps(stamps.replies), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.modbus_fleet")
    parser.add_argument("mode", choices=["tcp", "rtu"])
    parser.add_argument("--ports", type=int, default=10)
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--port", help="serial port (rtu)")
    asyncio.run(serve(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
