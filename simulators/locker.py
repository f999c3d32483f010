"""A simulated smart parcel locker (profile ``parcel-locker``) on the local broker.

``python -m simulators.locker --host 127.0.0.1 --port 1884 --username locker-b7
--password-env LOCKER_PASSWORD --address b7`` connects with the locker's own credentials
and plays deliveries and pick-ups; tests and the community simulator use
:class:`SimulatedLocker` directly (``await locker.start()``, ``await locker.deposit(…)``).

What it publishes on ``lockers/<address>/events`` (JSON, QoS 1, fresh ``event_id`` and
``ts`` on each)::

    {"type": "parcel_deposited", "compartment": 4, "household_id": 1203, "parcel_id": "SF…"}
    {"type": "parcel_picked_up", "compartment": 4, "parcel_id": "SF…"}
    {"type": "door_left_open", "compartment": 4}
    {"type": "heartbeat"}

Command it obeys on ``lockers/<address>/commands`` (the profile's ``open_compartment``
template): ``{"cmd": "open", "compartment": N, "command_id": …}`` (a courier or resident
who lost the code), answered with a ``command_result``; a compartment the locker does not
have is an ``error``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import secrets
import signal
import sys
from typing import Any

from simulators.mqtt_device import JsonMqttDevice, password_from_env


class SimulatedLocker(JsonMqttDevice):
    """A parcel locker with ``compartments`` numbered 1..N."""

    EVENT_TOPIC = "lockers/{address}/events"
    COMMAND_TOPIC = "lockers/{address}/commands"
    #: The ``type`` of a pick-up event (the profile's ``match.equals`` for parcel_picked_up).
    PICKED_UP_TYPE = "parcel_picked_up"
    #: What the profile's ``open_compartment`` template puts under ``cmd``.
    OPEN_COMMAND = "open"

    def __init__(
        self, host: str, port: int, *, address: str, compartments: int = 48, **kwargs: Any
    ) -> None:
        super().__init__(host, port, address=address, **kwargs)
        self.compartments = compartments
        self.parcels: dict[int, tuple[str, int]] = {}  # compartment → (parcel id, household)
        self.opened: list[int] = []  # compartments opened by command

    # -- events -----------------------------------------------------------------------------
    async def deposit(
        self, compartment: int, household_id: int, parcel_id: str | None = None
    ) -> dict[str, Any]:
        """A courier put a parcel for ``household_id`` into ``compartment``."""
        parcel = parcel_id or f"SF{secrets.randbelow(10**10):010d}"
        self.parcels[compartment] = (parcel, household_id)
        return await self.event(
            "parcel_deposited", compartment=compartment, household_id=household_id, parcel_id=parcel
        )

    async def pick_up(self, compartment: int, parcel_id: str | None = None) -> dict[str, Any]:
        """The resident took the parcel out of ``compartment``."""
        stored = self.parcels.pop(compartment, None)
        parcel = parcel_id or (stored[0] if stored else f"SF{secrets.randbelow(10**10):010d}")
        return await self.event(self.PICKED_UP_TYPE, compartment=compartment, parcel_id=parcel)

    async def door_left_open(self, compartment: int) -> dict[str, Any]:
        return await self.event("door_left_open", compartment=compartment)

    # -- commands ---------------------------------------------------------------------------
    def on_command(self, name: str, command: dict[str, Any]) -> tuple[bool, str]:
        if name in (self.OPEN_COMMAND, "open_compartment"):
            number = command.get("compartment")
            if not isinstance(number, int) or isinstance(number, bool):
                return False, "compartment must be an integer"
            if not 1 <= number <= self.compartments:
                return False, f"no compartment {number} (1..{self.compartments}) / 没有该格口"
            self.opened.append(number)
            self.changed(f"compartment {number} opened / 格口 {number} 已打开")
            return True, f"compartment {number} opened"
        return super().on_command(name, command)


async def play(locker: SimulatedLocker, interval_s: float, count: int | None) -> None:
    """Deliveries and pick-ups every ``interval_s``; now and then a door left open.
    ``count``: events in all, a door left open included."""
    rng = random.Random()
    done = 0
    while count is None or done < count:
        free = [c for c in range(1, locker.compartments + 1) if c not in locker.parcels]
        if locker.parcels and (not free or rng.random() < 0.4):
            compartment = rng.choice(sorted(locker.parcels))
            await locker.pick_up(compartment)
            done += 1
            if rng.random() < 0.1 and (count is None or done < count):
                await locker.door_left_open(compartment)
                done += 1
        else:
            await locker.deposit(rng.choice(free), rng.randint(1, 400))
            done += 1
        await asyncio.sleep(interval_s)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1884)
    parser.add_argument("--username", default=None, help="the locker's account (its device id)")
    parser.add_argument("--password-env", default=None, help="environment variable with it")
    parser.add_argument("--address", required=True, help="the locker's address, e.g. b7")
    parser.add_argument("--compartments", type=int, default=48)
    parser.add_argument("--interval-s", type=float, default=5.0, help="time between events")
    parser.add_argument("--count", type=int, default=None, help="stop after this many events")
    parser.add_argument("--heartbeat-s", type=float, default=30.0, help="0: no heartbeats")
    parser.add_argument("--event-topic", default=None, help="template with {address}")
    parser.add_argument("--command-topic", default=None, help="template with {address}")


async def run(args: argparse.Namespace) -> int:
    locker = SimulatedLocker(
        args.host,
        args.port,
        address=args.address,
        compartments=args.compartments,
        username=args.username,
        password=password_from_env(args.password_env),
        event_topic=args.event_topic,
        command_topic=args.command_topic,
        heartbeat_s=args.heartbeat_s or None,
    )
    locker.on_change = print
    await locker.start()
    print(f"locker {args.address} connected to {args.host}:{args.port}", flush=True)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        if task is not None:
            loop.add_signal_handler(sig, task.cancel)
    try:
        await play(locker, args.interval_s, args.count)
    except asyncio.CancelledError:
        pass
    finally:
        await locker.stop()
    return 0


def main(args: argparse.Namespace) -> int:
    """Entry point with parsed arguments (the ``python -m simulators`` convention)."""
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(args))
    return 130


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.locker",
        description="A simulated smart parcel locker on an MQTT broker.",
    )
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
