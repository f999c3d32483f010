"""A pymodbus TCP server for the raw Modbus limit: ``python -m bench.modbus_server PORT``.

Its own process, like a real PLC or meter on the network would be: 100 holding registers
for unit 1, served until the process is terminated (pymodbus 3.x API).
"""

from __future__ import annotations

import asyncio
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusTcpServer


async def serve(port: int) -> None:
    # pymodbus 3.16's block is 1-based: address 1 here is register 0 on the wire.
    registers = ModbusSequentialDataBlock(1, list(range(100)))  # type: ignore[no-untyped-call]
    context = ModbusServerContext(devices=ModbusDeviceContext(hr=registers), single=True)
    server = ModbusTcpServer(context, address=("127.0.0.1", port))
    await server.serve_forever()


def main(argv: list[str]) -> int:
    asyncio.run(serve(int(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
