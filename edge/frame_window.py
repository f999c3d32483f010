"""Which CB-100 frame sequence numbers a device has already used: the replay rule, pure.

Why: the CB-100 bus has only a CRC, so a frame recorded off the wire and played back later
is, byte for byte, a valid frame. The outbox's 60 s dedupe window (``recent_keys``)
recognises a button's own retransmissions; this window recognises old frames played back
after that, across edge restarts (the outbox stores it, see :class:`edge.outbox.Outbox`).

The rule, per device, on the 16-bit counter (arithmetic modulo 65536):

* ``top`` is the highest seq recorded (in modular order); ``seen`` is a bitmap of the
  ``WIDTH`` seqs ending at ``top`` (bit 0 is ``top`` itself), set for each seq recorded.
* A frame *ahead* of ``top`` (1 … 32767 steps, so 65535 → 0 is one step ahead) is **new**.
* A frame at most ``WIDTH - 1`` steps behind ``top`` is a **replay** if its bit is set,
  and **new** otherwise (a late or reordered frame).
* A frame that is not ahead and whose seq is below ``RESTART_BELOW``, or that is more
  than ``WIDTH - 1`` steps behind, is a **restart**: accepted (and flagged), and the
  window starts again at it. The protocol has no restart marker; a button that lost power
  (battery change) counts again from 0, and a frame far behind cannot be told from a
  restart, so it is taken: an SOS is never refused because a counter went back.

What is therefore caught: a replay of any of the last ``WIDTH`` frames of a device's
current run, however long after (the window survives restarts of the edge). What is not:
a replay of a frame from before the device's last ``WIDTH`` frames, or of one with a seq
below ``RESTART_BELOW``; each is taken as a restart, counted and flagged on the event
(``seq_restart``). A restart gives up the remembered seqs (a restarted button reuses
them), so after it every frame up to 32,767 steps ahead is new again, replays included.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

SEQ_MOD = 1 << 16
HALF = SEQ_MOD // 2
#: Frames remembered per device (about 4 h of a button's 60 s heartbeats).
WIDTH = 256
#: A frame with a seq below this that is not ahead of the window is a device restart.
RESTART_BELOW = 16
_MASK = (1 << WIDTH) - 1


class Verdict(StrEnum):
    NEW = "new"  # ahead of the window, or inside it and not seen
    REPLAY = "replay"  # inside the window and already recorded
    RESTART = "restart"  # far behind, or a seq a restarted device starts with: taken


@dataclass(frozen=True, slots=True)
class SeqWindow:
    top: int
    seen: int  # bit i: seq (top - i) mod 65536 was recorded

    def behind(self, seq: int) -> int:
        """Steps ``seq`` is behind ``top`` (0 for ``top``); negative when ahead."""
        ahead = (seq - self.top) % SEQ_MOD
        return -ahead if 0 < ahead < HALF else (self.top - seq) % SEQ_MOD

    def classify(self, seq: int) -> Verdict:
        back = self.behind(seq)
        if back < 0:
            return Verdict.NEW
        if seq < RESTART_BELOW or back >= WIDTH:
            return Verdict.RESTART
        return Verdict.REPLAY if self.has(seq) else Verdict.NEW

    def has(self, seq: int) -> bool:
        back = self.behind(seq)
        return 0 <= back < WIDTH and bool(self.seen >> back & 1)

    def mark(self, seq: int) -> SeqWindow:
        """The window after ``seq`` was recorded (a restart begins a new window)."""
        back = self.behind(seq)
        if back < 0:
            return SeqWindow(seq, ((self.seen << -back) | 1) & _MASK)
        if back >= WIDTH:
            return SeqWindow(seq, 1)
        return SeqWindow(self.top, self.seen | 1 << back)

    def accept(self, seq: int) -> SeqWindow:
        """:meth:`mark`, but a restart verdict starts the window again at ``seq``."""
        if self.classify(seq) is Verdict.RESTART:
            return SeqWindow(seq, 1)
        return self.mark(seq)

    def to_text(self) -> str:
        return f"{self.top}:{self.seen:x}"

    @classmethod
    def from_text(cls, text: str) -> SeqWindow:
        """Raises ValueError for text not written by :meth:`to_text`."""
        top, _, seen = text.partition(":")
        window = cls(int(top), int(seen, 16))
        if not 0 <= window.top < SEQ_MOD or not 0 <= window.seen <= _MASK:
            raise ValueError(f"frame window {text!r} out of range")
        return window


def first(seq: int) -> SeqWindow:
    """The window of a device heard for the first time."""
    return SeqWindow(seq, 1)


def classify(window: SeqWindow | None, seq: int) -> Verdict:
    return Verdict.NEW if window is None else window.classify(seq)


def accept(window: SeqWindow | None, seq: int) -> SeqWindow:
    return first(seq) if window is None else window.accept(seq)
