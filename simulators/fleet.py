"""A fleet of CB-100 call buttons on one pty, as a process of its own, recording its history.

Why another simulator beside :mod:`simulators.button`: the fault tests need load (up to a
million frames), buttons that behave like the firmware across a dead edge (retransmit every
``retransmit_s`` until the 0x80 link ack arrives, at most ``window`` unacknowledged frames
per button), and a record of every frame produced and acked (:mod:`simulators.history`)
that survives whatever is done to the edge, hub and broker. A separate process keeps that
work off the test's own event loop, and several fleets can feed one edge in parallel.

Frames are heartbeats (telemetry lane), with every ``alarm_every``-th an SOS (alarm lane)
and every ``normal_every``-th a presence press (normal lane). ``ack_loss`` makes a button
ignore that fraction of its link acks (the ack was lost on the line), so the edge must
recognise the retransmission of a frame it already stored.

Control: one command per line on stdin — ``rate N`` (frames/s, 0 pauses production;
retransmissions go on), ``limit N`` (stop producing after N frames in total),
``hold`` (stop producing: the limit becomes the count produced so far), ``ackloss P``,
``quit``. Progress is written as JSON to the status file (atomically, several
times a second); the history file is complete after ``quit``.

Usage: python -m simulators.fleet --link L --history H --status S [options]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import select
import subprocess
import sys
import time
import tty
from pathlib import Path
from typing import Any

from edge.codecs.cb100 import Frame, FrameDecoder, FrameType, encode
from simulators.history import HistoryWriter

MAX_LINE_BYTES = 65_536  # bytes queued for an edge that does not read; older frames drop
TICK_S = 0.005
STATUS_EVERY_S = 0.1
HISTORY_EVERY_S = 0.5
_LANES = {FrameType.SOS: "alarm", FrameType.PRESENCE: "normal", FrameType.HEARTBEAT: "telemetry"}
_KINDS = {FrameType.SOS: "sos", FrameType.PRESENCE: "presence", FrameType.HEARTBEAT: "heartbeat"}


class FleetProcess:
    """The buttons' side of the line. ``run()`` until ``quit`` or end of stdin."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)  # which acks get "lost": test noise, reproducible
        self.rate = float(args.rate)
        self.limit = int(args.limit)
        self.ack_loss = float(args.ack_loss)
        self.history = HistoryWriter(Path(args.history))
        self.status_path = Path(args.status)
        self.decoder = FrameDecoder()
        self.next_seq = [0] * args.devices
        self.outstanding = [0] * args.devices
        self.pending: dict[tuple[int, int], bytes] = {}  # (device index, seq) → frame
        self.due: collections.deque[tuple[float, int, int]] = collections.deque()
        self.line: collections.deque[bytes] = collections.deque()
        self.line_bytes = 0
        self.counts = collections.Counter[str]()
        self.cursor = 0  # round robin over devices
        self.credit = 0.0
        self.running = True

    # -- the line ---------------------------------------------------------------------
    def open_line(self) -> None:
        self.master, self.slave = os.openpty()  # the slave stays open: no EIO on the master
        tty.setraw(self.master)
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        link = Path(self.args.link)
        temporary = link.with_name(f".{link.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(os.ttyname(self.slave))
        temporary.replace(link)  # atomic: an edge never sees no link

    def put(self, data: bytes) -> None:
        self.line.append(data)
        self.line_bytes += len(data)
        while self.line_bytes > MAX_LINE_BYTES:
            self.line_bytes -= len(self.line.popleft())
            self.counts["lost_on_line"] += 1  # like a wire nobody listens to

    def flush_line(self) -> None:
        while self.line:
            chunk = b"".join(self.line)
            try:
                written = os.write(self.master, chunk)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                written = len(chunk)
            rest = chunk[written:]
            self.line.clear()
            self.line_bytes = len(rest)
            if rest:
                self.line.append(rest)
                return

    def read_line(self) -> None:
        try:
            data = os.read(self.master, 65_536)
        except (BlockingIOError, InterruptedError, OSError):
            return
        now = time.monotonic()
        for frame in self.decoder.feed(data):
            if frame.type != FrameType.LINK_ACK:
                self.counts["feedback"] += 1  # 0x81..0x83 for an SOS: shown on the LED
                continue
            index = frame.device_serial - self.args.first_serial
            key = (index, frame.seq)
            if key not in self.pending:
                self.counts["late_acks"] += 1  # an ack for a retransmission already acked
                continue
            if self.ack_loss and self.rng.random() < self.ack_loss:
                self.counts["acks_ignored"] += 1
                continue
            del self.pending[key]
            self.outstanding[index] -= 1
            self.counts["acked"] += 1
            self.history.acked(self.device_id(index), frame.seq, now)

    # -- producing ----------------------------------------------------------------------
    def device_id(self, index: int) -> str:
        return f"cb100-{self.args.first_serial + index}"

    def frame_type(self, number: int) -> FrameType:
        if self.args.alarm_every and number % self.args.alarm_every == self.args.alarm_every - 1:
            return FrameType.SOS
        if self.args.normal_every and number % self.args.normal_every == 1:
            return FrameType.PRESENCE
        return FrameType.HEARTBEAT

    def produce(self, now: float, elapsed: float) -> None:
        self.credit = min(self.credit + self.rate * elapsed, max(1.0, self.rate / 10))
        devices = self.args.devices
        while self.credit >= 1 and self.counts["produced"] < self.limit:
            for _ in range(devices):  # the next button with room in its window
                index = self.cursor
                self.cursor = (self.cursor + 1) % devices
                if self.outstanding[index] < self.args.window and self.next_seq[index] < 0x10000:
                    break
            else:
                self.credit = 0
                return  # every button waits for acks: the edge sets the pace
            seq = self.next_seq[index]
            self.next_seq[index] += 1  # never wraps: (device, seq) names a frame in the history
            frame_type = self.frame_type(self.counts["produced"])
            payload = bytes([80]) if frame_type == FrameType.HEARTBEAT else b""
            data = encode(Frame(self.args.first_serial + index, seq, frame_type, payload))
            self.pending[(index, seq)] = data
            self.outstanding[index] += 1
            self.due.append((now + self.args.retransmit_s, index, seq))
            self.history.produced(
                self.device_id(index), seq, _LANES[frame_type], _KINDS[frame_type], now
            )
            self.counts["produced"] += 1
            self.counts["transmissions"] += 1
            self.credit -= 1
            self.put(data)

    def retransmit(self, now: float) -> None:
        while self.due and self.due[0][0] <= now:
            _, index, seq = self.due.popleft()
            data = self.pending.get((index, seq))
            if data is None:
                continue  # acked meanwhile
            self.counts["transmissions"] += 1
            self.counts["retransmissions"] += 1
            self.due.append((now + self.args.retransmit_s, index, seq))
            self.put(data)

    # -- control and reporting ------------------------------------------------------------
    def command(self, line: str) -> None:
        words = line.split()
        if not words:
            return
        name, value = words[0], words[1] if len(words) > 1 else "0"
        if name == "rate":
            self.rate = float(value)
        elif name == "limit":
            self.limit = int(value)
        elif name == "hold":  # stop producing for good: the limit becomes what was produced
            self.rate = 0.0
            self.limit = self.counts["produced"]
        elif name == "ackloss":
            self.ack_loss = float(value)
        elif name == "quit":
            self.running = False
        else:
            print(f"fleet: unknown command {line!r}", file=sys.stderr, flush=True)

    def status(self) -> dict[str, Any]:
        return {
            **self.counts,
            "pending": len(self.pending),
            "rate": self.rate,
            "limit": self.limit,
            "at": time.monotonic(),
        }

    def write_status(self) -> None:
        temporary = self.status_path.with_name(self.status_path.name + ".tmp")
        temporary.write_text(json.dumps(self.status()))
        temporary.replace(self.status_path)

    def run(self) -> None:
        self.open_line()
        self.write_status()
        print("ready", flush=True)
        stdin = sys.stdin.fileno()
        os.set_blocking(stdin, False)
        buffered = b""
        last = last_status = last_history = time.monotonic()
        while self.running:
            watch_out = [self.master] if self.line else []
            readable, writable, _ = select.select([self.master, stdin], watch_out, [], TICK_S)
            if self.master in readable:
                self.read_line()
            if stdin in readable:
                try:
                    chunk = os.read(stdin, 4096) or b"quit\n"  # EOF: the controller is gone
                except BlockingIOError:
                    chunk = b""
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for raw in lines:
                    self.command(raw.decode(errors="replace"))
            now = time.monotonic()
            self.produce(now, now - last)
            last = now
            self.retransmit(now)
            if self.line or self.master in writable:
                self.flush_line()
            if now - last_history >= HISTORY_EVERY_S:
                self.history.flush()
                last_history = now
            if now - last_status >= STATUS_EVERY_S:
                self.write_status()
                last_status = now
        self.history.close()
        self.write_status()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulators.fleet", description=__doc__)
    parser.add_argument("--link", required=True, help="symlink to create for the pty")
    parser.add_argument("--history", required=True, help="SQLite file of produced frames")
    parser.add_argument("--status", required=True, help="JSON progress file")
    parser.add_argument("--first-serial", type=int, default=500_000)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--rate", type=float, default=0.0, help="frames per second")
    parser.add_argument("--limit", type=int, default=0, help="frames in total")
    parser.add_argument("--window", type=int, default=4, help="unacked frames per button")
    parser.add_argument("--retransmit-s", type=float, default=1.0)
    parser.add_argument("--alarm-every", type=int, default=200)
    parser.add_argument("--normal-every", type=int, default=50)
    parser.add_argument("--ack-loss", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    FleetProcess(parse_args(argv)).run()
    return 0


class Fleet:
    """The controlling side: starts ``python -m simulators.fleet`` and talks to it."""

    def __init__(
        self, workdir: Path, name: str, *, first_serial: int, devices: int, **options: Any
    ) -> None:
        self.name = name
        self.first_serial = first_serial
        self.devices = devices
        self.link = workdir / name
        self.history_path = workdir / f"{name}.history.db"
        self.status_path = workdir / f"{name}.status.json"
        self.log_path = workdir / f"{name}.log"
        argv = [
            sys.executable,
            "-m",
            "simulators.fleet",
            "--link",
            str(self.link),
            "--history",
            str(self.history_path),
            "--status",
            str(self.status_path),
            "--first-serial",
            str(first_serial),
            "--devices",
            str(devices),
        ]
        for key, value in options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        self._argv = argv
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def device_ids(self) -> list[str]:
        return [f"cb100-{self.first_serial + i}" for i in range(self.devices)]

    def start(self, timeout_s: float = 30.0) -> Fleet:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
            )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        line = self.process.stdout.readline().strip() if ready else b""
        if line != b"ready":
            self.process.kill()
            raise RuntimeError(f"fleet {self.name} did not start: {self.log_path.read_text()}")
        return self

    def send(self, command: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()

    def status(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def stop(self, timeout_s: float = 60.0) -> None:
        """Quit and wait until the history file is complete."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(BrokenPipeError):
                self.send("quit")
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
