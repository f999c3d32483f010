"""``python -m simulators button``: call buttons on a pty, driven by lines on stdin.

Why a line protocol on stdin: a person can type ``sos 77626`` in a terminal, and a demo
script or a test can drive the same process through a pipe. Every LED change is printed in
Chinese and English, as the resident would read it.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import suppress

from edge.codecs.cb100 import Frame, FrameType
from simulators.button import LED_TEXT, LedState, SimulatedButton, SimulatedButtonBus

COMMANDS_HELP = """commands (one per line):
  sos SERIAL              SOS key (一键求助)
  service SERIAL CAT      service request, category 1-11 (便民服务)
  cancel SERIAL           cancel the last call (取消)
  presence SERIAL         grid worker on site (到场)
  fall SERIAL             fall detected (跌倒)
  checkin SERIAL          daily check-in (报平安)
  heartbeat SERIAL PCT    heartbeat with battery %
  lowbattery SERIAL PCT   low battery warning
  garbage COUNT           COUNT noise bytes on the line
  crc SERIAL              a frame with a wrong checksum
  help | quit"""

_ACTIONS: dict[str, tuple[int, Callable[..., Frame]]] = {
    "sos": (0, SimulatedButton.press_sos),
    "service": (1, SimulatedButton.request_service),
    "cancel": (0, SimulatedButton.cancel),
    "presence": (0, SimulatedButton.presence),
    "fall": (0, SimulatedButton.fall),
    "checkin": (0, SimulatedButton.check_in),
    "heartbeat": (1, SimulatedButton.heartbeat),
    "lowbattery": (1, SimulatedButton.low_battery),
}


class CommandLineError(ValueError):
    """A control line that cannot be executed; the text says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Simulated CB-100 call buttons on a pseudo-terminal."
    parser.epilog = COMMANDS_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--serial", type=int, action="append", required=True, help="button serial (repeatable)"
    )
    parser.add_argument("--link", help="create this symlink to the pty (e.g. var/bus0)")
    parser.add_argument("--heartbeat-s", type=float, default=None, help="heartbeat interval")
    parser.add_argument("--retransmit-s", type=float, default=5.0, help="resend unacked frames")


def _number(text: str, low: int, high: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise CommandLineError(f"{what} must be a number, not {text!r}") from None
    if not low <= value <= high:
        raise CommandLineError(f"{what} must be {low}..{high}")
    return value


def execute(bus: SimulatedButtonBus, line: str) -> bool:
    """Run one control line. Returns True for ``quit``; raises CommandLineError."""
    words = line.split()
    if not words:
        return False
    name, params = words[0].lower(), words[1:]
    if name in ("quit", "exit"):
        return True
    if name == "help":
        print(COMMANDS_HELP, flush=True)
        return False
    if name == "garbage":
        if len(params) != 1:
            raise CommandLineError("usage: garbage COUNT")
        bus.inject_garbage(_number(params[0], 1, 100_000, "COUNT"))
        return False
    if name != "crc" and name not in _ACTIONS:
        raise CommandLineError(f"unknown command {name!r} (try 'help')")
    extra = 0 if name == "crc" else _ACTIONS[name][0]
    if len(params) != 1 + extra:
        raise CommandLineError(f"{name} takes {1 + extra} argument(s); try 'help'")
    serial = _number(params[0], 0, 0xFFFFFFFF, "SERIAL")
    if serial not in bus.buttons:
        known = ", ".join(str(s) for s in bus.buttons)
        raise CommandLineError(f"unknown button {serial} (this bus has {known})")
    if name == "crc":
        bus.inject_crc_error(serial)
        return False
    args = [_number(p, 0, 255, "value") for p in params[1:]]
    frame = _ACTIONS[name][1](bus.button(serial), *args)
    print(f"[{serial}] sent {FrameType(frame.type).name.lower()} seq {frame.seq}", flush=True)
    return False


def print_led_change(button: SimulatedButton, state: LedState) -> None:
    chinese, english = LED_TEXT[state]
    print(f"[{button.serial}] {chinese} / {english}", flush=True)


def _read_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """Daemon thread: stdin may be a terminal, a pipe or a file; none blocks the loop."""
    with suppress(RuntimeError):  # the loop has closed
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)


async def _serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(target=_read_stdin, args=(loop, lines), daemon=True).start()
    async with SimulatedButtonBus(
        args.serial,
        link_path=args.link,
        retransmit_s=args.retransmit_s,
        heartbeat_s=args.heartbeat_s,
        on_led_change=print_led_change,
    ) as bus:
        link = f" (link {args.link})" if args.link else ""
        print(f"buttons {', '.join(map(str, args.serial))} on {bus.slave_path}{link}", flush=True)
        stopping = asyncio.create_task(stop.wait())
        while True:
            reading = asyncio.create_task(lines.get())
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                reading.cancel()
                break
            line = reading.result()
            if line is None:  # stdin closed: keep serving until a signal
                await stopping
                break
            try:
                if execute(bus, line):
                    break
            except CommandLineError as err:
                print(f"error: {err}", file=sys.stderr, flush=True)
        stopping.cancel()
    return 0


def main(args: argparse.Namespace) -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(encoding="utf-8")  # LED texts are Chinese
    return asyncio.run(_serve(args))
