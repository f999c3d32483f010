"""Face-recognition doors for the fully loaded edge: ``python -m bench.doors CONFIG.json``.

Its own process (the doors' paho threads must not share the bench's GIL while it times
SOS presses). ``CONFIG.json``: ``{"port": <local broker>, "every_s": <seconds between two
passes of one door>, "doors": [{"address", "username", "password"}, …]}``. Every door is
a :class:`simulators.door.SimulatedDoor` with its own account on the edge's local broker,
sending a ``face_pass`` every ``every_s`` (phase-shifted, so the doors do not fire
together) and heartbeats every 30 s. Prints ``ready`` once every door is connected, then
``sent <events>`` and exits when stdin closes or says ``quit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

from simulators.door import SimulatedDoor

HEARTBEAT_S = 30.0


async def run(config: dict[str, object]) -> int:
    port = int(str(config["port"]))
    every_s = float(str(config["every_s"]))
    entries = config["doors"]
    assert isinstance(entries, list)
    doors = [
        SimulatedDoor(
            "127.0.0.1",
            port,
            address=str(e["address"]),
            username=str(e["username"]),
            password=str(e["password"]),
            heartbeat_s=HEARTBEAT_S,
        )
        for e in entries
    ]
    for door in doors:
        await door.start()
    sent = 0

    async def passes(k: int, door: SimulatedDoor) -> None:
        nonlocal sent
        await asyncio.sleep(every_s * k / max(1, len(doors)))  # phase shift, not sync
        while True:
            await door.face_pass(f"P{k:04d}")
            sent += 1
            await asyncio.sleep(every_s)  # the offered rate, not synchronisation

    tasks = [asyncio.create_task(passes(k, d)) for k, d in enumerate(doors)]
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "quit":
            break
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for door in doors:
        with contextlib.suppress(Exception):
            await door.stop()
    print(f"sent {sent}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    return asyncio.run(run(json.loads(Path(argv[0]).read_text())))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
