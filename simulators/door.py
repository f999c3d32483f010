"""A simulated face-recognition door controller (profile ``fr-door``) on the local broker.

``python -m simulators.door --host 127.0.0.1 --port 1884 --username door-gate-3
--password-env DOOR_PASSWORD --address gate-3 [--scenario forced]`` connects with the
door's own credentials and plays a scenario; tests and the community simulator use
:class:`SimulatedDoor` directly (``await door.start()``, ``await door.face_pass(…)``).

What it publishes on ``devices/<address>/events`` (JSON, QoS 1; every event has a fresh
``event_id`` the edge dedupes by and the door's clock as ``ts``)::

    {"type": "face_pass", "person_id": "P-1001", "similarity": 0.93, …}
    {"type": "face_unknown", "similarity": 0.41, …}
    {"type": "card_pass", "card_id": "C-7788", …}
    {"type": "door_forced", …}
    {"type": "door_held_open", "seconds": 120, …}
    {"type": "heartbeat", …}

Commands it obeys on ``devices/<address>/commands`` (the profile's payload templates):
``{"cmd": "open_door", "duration_s": 1..60, "command_id": …}`` and ``{"cmd": "set_mode",
"mode": "normal"|"locked"|"open", "command_id": …}``; it answers each with a
``command_result``.
A door in ``locked`` mode refuses ``open_door`` (status ``error``), as real controllers do
during a lockdown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
from typing import Any

from simulators.mqtt_device import JsonMqttDevice, password_from_env

MODES = ("normal", "locked", "open")
SCENARIOS = ("normal", "forced", "quiet")


class SimulatedDoor(JsonMqttDevice):
    """A door controller: face and card passes, alarms, heartbeats, remote open."""

    def __init__(self, host: str, port: int, *, address: str, **kwargs: Any) -> None:
        super().__init__(host, port, address=address, **kwargs)
        self.mode = "normal"
        self.opened: list[int] = []  # duration_s of every remote open carried out

    # -- events -----------------------------------------------------------------------------
    async def face_pass(self, person_id: str, similarity: float = 0.93) -> dict[str, Any]:
        return await self.event("face_pass", person_id=person_id, similarity=similarity)

    async def face_unknown(self, similarity: float = 0.42) -> dict[str, Any]:
        return await self.event("face_unknown", similarity=similarity)

    async def card_pass(self, card_id: str) -> dict[str, Any]:
        return await self.event("card_pass", card_id=card_id)

    async def door_forced(self) -> dict[str, Any]:
        return await self.event("door_forced")

    async def door_held_open(self, seconds: int) -> dict[str, Any]:
        return await self.event("door_held_open", seconds=seconds)

    # -- commands ---------------------------------------------------------------------------
    def on_command(self, name: str, command: dict[str, Any]) -> tuple[bool, str]:
        if name == "open_door":
            duration = command.get("duration_s")
            if not isinstance(duration, int) or isinstance(duration, bool):
                return False, "duration_s must be an integer"
            if not 1 <= duration <= 60:
                return False, f"duration_s {duration} is outside 1..60"
            if self.mode == "locked":
                return False, "door is locked / 门处于锁定状态"
            self.opened.append(duration)
            self.changed(f"opened for {duration} s / 门已打开 {duration} 秒")
            return True, f"opened for {duration} s"
        if name == "set_mode":
            mode = command.get("mode")
            if mode not in MODES:
                return False, f"unknown mode {mode!r}"
            self.mode = str(mode)
            self.changed(f"mode {self.mode}")
            return True, f"mode {self.mode}"
        return super().on_command(name, command)


async def play(door: SimulatedDoor, scenario: str, interval_s: float, count: int | None) -> None:
    """Events of a scenario every ``interval_s`` (``count`` of them, or until cancelled)."""
    rng = random.Random()
    done = 0
    while count is None or done < count:
        if scenario == "normal":
            pick = rng.random()
            if pick < 0.6:
                await door.face_pass(f"P-{rng.randint(1000, 1099)}", round(rng.uniform(0.8, 1), 3))
            elif pick < 0.8:
                await door.card_pass(f"C-{rng.randint(1000, 9999)}")
            else:
                await door.face_unknown(round(rng.uniform(0.2, 0.6), 3))
        elif scenario == "forced":
            await door.door_forced() if done % 2 == 0 else await door.door_held_open(120)
        done += 1
        await asyncio.sleep(interval_s)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1884)
    parser.add_argument("--username", default=None, help="the door's account (its device id)")
    parser.add_argument("--password-env", default=None, help="environment variable with it")
    parser.add_argument("--address", required=True, help="the door's address, e.g. gate-3")
    parser.add_argument("--scenario", choices=SCENARIOS, default="normal")
    parser.add_argument("--interval-s", type=float, default=5.0, help="time between events")
    parser.add_argument("--count", type=int, default=None, help="stop after this many events")
    parser.add_argument("--heartbeat-s", type=float, default=30.0, help="0: no heartbeats")
    parser.add_argument("--event-topic", default=None, help="template with {address}")
    parser.add_argument("--command-topic", default=None, help="template with {address}")


async def run(args: argparse.Namespace) -> int:
    door = SimulatedDoor(
        args.host,
        args.port,
        address=args.address,
        username=args.username,
        password=password_from_env(args.password_env),
        event_topic=args.event_topic,
        command_topic=args.command_topic,
        heartbeat_s=args.heartbeat_s or None,
    )
    door.on_change = print
    await door.start()
    print(f"door {args.address} connected to {args.host}:{args.port}", flush=True)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        if task is not None:
            loop.add_signal_handler(sig, task.cancel)
    try:
        await play(door, args.scenario, args.interval_s, args.count)
    except asyncio.CancelledError:
        pass
    finally:
        await door.stop()
    return 0


def main(args: argparse.Namespace) -> int:
    """Entry point with parsed arguments (the ``python -m simulators`` convention)."""
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(args))
    return 130


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.door",
        description="A simulated face-recognition door controller on an MQTT broker.",
    )
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
