"""Telemetry load on a pty: CB-100 heartbeat frames at a steady rate from many devices.

Runs as its own process (``python -m bench.load``) so that producing the load does not
share an event loop with the latency measurement. It drains the edge's link acks from the
pty (an unread pty would block the edge's writes) but does not retransmit: the edge acks
every frame it has stored, and the bench counts frames at the hub instead.

Usage: python -m bench.load LINK RATE SECONDS [FIRST_SERIAL] [DEVICES]
"""

from __future__ import annotations

import os
import sys
import time
import tty
from pathlib import Path

from edge.codecs.cb100 import Frame, FrameType, encode


def main(argv: list[str]) -> int:
    link, rate, seconds = Path(argv[0]), float(argv[1]), float(argv[2])
    first = int(argv[3]) if len(argv) > 3 else 900_000
    devices = int(argv[4]) if len(argv) > 4 else 200
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    os.set_blocking(master, False)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.ttyname(slave))
    print("ready", flush=True)
    seqs = [0] * devices
    start = time.monotonic()
    sent = 0
    chunk = max(1, int(rate / 100))  # 100 bursts a second
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate)
        burst = bytearray()
        while sent < due and len(burst) < chunk * 14:
            index = sent % devices
            seqs[index] = (seqs[index] + 1) & 0xFFFF
            burst += encode(Frame(first + index, seqs[index], FrameType.HEARTBEAT, bytes([80])))
            sent += 1
        view = memoryview(bytes(burst))
        while view:
            try:
                written = os.write(master, view)
                view = view[written:]
            except BlockingIOError:
                time.sleep(0.001)
            _drain(master)
        _drain(master)
        time.sleep(0.005)
    print(f"sent {sent}", flush=True)
    _drain(master)
    time.sleep(1.0)  # let the edge read the tail before the pty goes away
    return 0


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except (BlockingIOError, OSError):
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
