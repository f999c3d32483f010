"""Telemetry load on one pty: CB-100 heartbeat frames from many devices, on command.

Runs as its own process (``python -m bench.load LINK FIRST_SERIAL DEVICES``) so producing
the load does not share an event loop (or the GIL) with the measurements. It creates the
pty once and keeps it for the whole run, so the edge opens the port once and never waits
for a reopen backoff between benchmarks; device sequence numbers continue across runs, so
the edge never mistakes a new frame for a retransmission (its dedupe keys are
``device:seq`` for 60 s).

Commands, one per line on stdin; each ``run`` is answered with ``done <frames sent>``:

- ``run RATE COUNT`` — send COUNT frames at RATE frames/s (0: as fast as the pty takes
  them; a full pty blocks the writer, so the edge's reading sets the pace);
- ``stop`` — end the current ``run`` early;
- ``quit``.

It drains the edge's link acks (an unread pty would block the edge's writes) but never
retransmits: the bench counts what the edge stored and the hub committed instead.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
import tty
from pathlib import Path

from edge.codecs.cb100 import Frame, FrameType, encode

BURSTS_PER_S = 100


class Generator:
    def __init__(self, link: Path, first_serial: int, devices: int) -> None:
        self.first = first_serial
        self.devices = devices
        self.seqs = [0] * devices
        self.next_device = 0
        self.master, slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(slave)
        os.set_blocking(self.master, False)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.ttyname(slave))
        self._slave = slave  # kept open: the pty lives as long as this process

    def frames(self, count: int) -> bytes:
        out = bytearray()
        for _ in range(count):
            index = self.next_device
            self.next_device = (index + 1) % self.devices
            seq = self.seqs[index] = (self.seqs[index] + 1) & 0xFFFF
            out += encode(Frame(self.first + index, seq, FrameType.HEARTBEAT, bytes([80])))
        return bytes(out)

    def run(self, rate: float, count: int, stop: threading.Event) -> int:
        start = time.monotonic()
        sent = 0
        burst = max(1, int(rate / BURSTS_PER_S)) if rate > 0 else 500
        while sent < count and not stop.is_set():
            due = count if rate <= 0 else min(count, int((time.monotonic() - start) * rate) + 1)
            while sent < due and not stop.is_set():
                n = min(burst, due - sent)
                self.write(self.frames(n), stop)
                sent += n
            self.drain()
            if rate > 0:
                time.sleep(1 / BURSTS_PER_S / 2)
        return sent

    def write(self, data: bytes, stop: threading.Event) -> None:
        view = memoryview(data)
        while view and not stop.is_set():
            try:
                view = view[os.write(self.master, view) :]
            except BlockingIOError:
                self.drain()
                time.sleep(0.001)

    def drain(self) -> None:
        try:
            while os.read(self.master, 65536):
                pass
        except (BlockingIOError, OSError):
            pass


def main(argv: list[str]) -> int:
    link, first, devices = Path(argv[0]), int(argv[1]), int(argv[2])
    generator = Generator(link, first, devices)
    commands: queue.Queue[str] = queue.Queue()
    stop = threading.Event()

    def read_commands() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                stop.set()
            else:
                commands.put(line.strip())
        commands.put("quit")

    threading.Thread(target=read_commands, daemon=True).start()
    print("ready", flush=True)
    while True:
        try:
            command = commands.get(timeout=0.05)
        except queue.Empty:
            generator.drain()
            continue
        words = command.split()
        if not words or words[0] == "quit":
            return 0
        if words[0] == "run":
            stop.clear()
            sent = generator.run(float(words[1]), int(words[2]), stop)
            print(f"done {sent}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
