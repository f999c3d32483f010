"""The fault tests' judge: a pure function over the recorded histories.

Inputs: every distinct frame the simulated devices produced (:class:`ProducedFrame`, with
whether and when the device heeded its link ack), every row the hub committed
(:class:`CommittedEvent`, in commit order), and the edge's buffer-policy drop counters per
lane (missing counters are zero). The rules:

1. **No acknowledged alarm lost.** Every alarm-lane frame whose link ack the device heeded
   is committed at the hub.
2. **No telemetry lost unless dropped and counted.** For the normal and telemetry lanes, the
   acked frames missing at the hub are at most what the edge counted as dropped in that
   lane (the drop policy telemetry → normal → never alarms).
3. **No duplicate in the hub database.** A (device, frame seq) is committed at most once.
4. **Per-device order, within a lane.** The uplink serves the alarm lane first, so order is
   promised per device *within a lane* only, and from what the device can know:
   (a) *device order*: if frame A's link ack reached the device before the device first
   sent frame B (same device, same lane), A is committed before B — by then A was in the
   outbox, so anything the edge accepts later must not overtake it;
   (b) *edge order*: events of one device and lane from one edge outbox (same incarnation)
   are committed in outbox seq order, the order in which the edge accepted them.
   Frames sent while an earlier one was still unacknowledged may legitimately swap: a
   frame lost on the line comes back as a retransmission behind a newer frame.
5. **Nothing invented.** Every committed event is a frame some device produced.

Unacked frames that never reached the hub are not losses: the device still holds them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from simulators.history import LANES, CommittedEvent, ProducedFrame

EXAMPLES = 5  # per rule, in the verdict's problem list


@dataclass
class Verdict:
    produced: int = 0
    acked: int = 0
    committed: int = 0  # rows in the hub's events table
    committed_distinct: int = 0  # distinct (device, frame seq) among them
    unacked_not_committed: int = 0  # still with the devices: not a loss
    lost: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LANES, 0))
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LANES, 0))
    duplicates: int = 0  # extra rows for a frame already committed
    device_order_violations: int = 0
    edge_order_violations: int = 0
    phantoms: int = 0  # committed rows no device produced
    problems: list[str] = field(default_factory=list)

    @property
    def lost_alarms(self) -> int:
        return self.lost["alarm"]

    @property
    def unexplained_loss(self) -> dict[str, int]:
        """Acked frames missing at the hub beyond what the edge counted as dropped."""
        return {
            lane: self.lost[lane]
            if lane == "alarm"
            else max(0, self.lost[lane] - self.dropped[lane])
            for lane in LANES
        }

    @property
    def order_violations(self) -> int:
        return self.device_order_violations + self.edge_order_violations

    @property
    def ok(self) -> bool:
        return (
            not any(self.unexplained_loss.values())
            and self.duplicates == 0
            and self.order_violations == 0
            and self.phantoms == 0
        )

    def table(self) -> str:
        """A compact summary for the end of a run."""
        rows = [
            ("verdict", "PASS" if self.ok else "FAIL"),
            ("produced (distinct frames)", f"{self.produced:,}"),
            ("acked by the edge (link ack heeded)", f"{self.acked:,}"),
            ("committed at the hub (rows)", f"{self.committed:,}"),
            ("committed, distinct frames", f"{self.committed_distinct:,}"),
            ("unacked, not committed (with the devices)", f"{self.unacked_not_committed:,}"),
            ("lost alarms", f"{self.lost['alarm']:,}"),
            (
                "lost normal / dropped (counted)",
                f"{self.lost['normal']:,} / {self.dropped['normal']:,}",
            ),
            (
                "lost telemetry / dropped (counted)",
                f"{self.lost['telemetry']:,} / {self.dropped['telemetry']:,}",
            ),
            ("duplicates at the hub", f"{self.duplicates:,}"),
            (
                "order violations (device / edge)",
                f"{self.device_order_violations:,} / {self.edge_order_violations:,}",
            ),
            ("committed but never produced", f"{self.phantoms:,}"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value}" for name, value in rows]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def check(
    produced: Iterable[ProducedFrame],
    committed: Iterable[CommittedEvent],
    dropped: Mapping[str, int] | None = None,
) -> Verdict:
    verdict = Verdict()
    for lane in LANES:
        verdict.dropped[lane] = int((dropped or {}).get(lane, 0))
    frames = {(f.device_id, f.frame_seq): f for f in produced}
    verdict.produced = len(frames)
    verdict.acked = sum(1 for f in frames.values() if f.acked)

    first_commit: dict[tuple[str, int], int] = {}
    rows = Counter[tuple[str, int]]()
    examples: dict[str, list[str]] = defaultdict(list)

    def note(rule: str, text: str) -> None:
        if len(examples[rule]) < EXAMPLES:
            examples[rule].append(f"{rule}: {text}")

    last_outbox_seq: dict[tuple[str, str, str, str], tuple[int, int]] = {}
    for event in sorted(committed, key=lambda e: e.commit_id):
        verdict.committed += 1
        if event.frame_seq is None or (event.device_id, event.frame_seq) not in frames:
            verdict.phantoms += 1
            note("phantom", f"commit {event.commit_id} {event.device_id} seq {event.frame_seq}")
            continue
        key = (event.device_id, event.frame_seq)
        rows[key] += 1
        if rows[key] > 1:
            verdict.duplicates += 1
            note("duplicate", f"{key[0]} frame {key[1]} again at commit {event.commit_id}")
            continue
        first_commit[key] = event.commit_id
        stream = (event.edge_id, event.incarnation, event.device_id, event.lane)
        previous = last_outbox_seq.get(stream)
        if previous is not None and event.outbox_seq < previous[0]:
            verdict.edge_order_violations += 1
            note(
                "edge order",
                f"{event.device_id} {event.lane}: outbox seq {event.outbox_seq} committed "
                f"(id {event.commit_id}) after outbox seq {previous[0]} (id {previous[1]})",
            )
        else:
            last_outbox_seq[stream] = (event.outbox_seq, event.commit_id)
    verdict.committed_distinct = len(first_commit)

    missing: dict[str, list[str]] = defaultdict(list)
    for key, frame in frames.items():
        if key in first_commit:
            continue
        if frame.acked:
            verdict.lost[frame.lane] += 1
            if len(missing[frame.lane]) < EXAMPLES:
                missing[frame.lane].append(f"{frame.device_id} frame {frame.frame_seq} was acked")
        else:
            verdict.unacked_not_committed += 1
    for lane, excess in verdict.unexplained_loss.items():
        if excess:  # losses the drop counters explain are not problems
            if lane != "alarm":
                note(f"lost {lane}", f"{excess} more than the {verdict.dropped[lane]} counted")
            for text in missing[lane]:
                note(f"lost {lane}", text)

    verdict.device_order_violations = _device_order(frames.values(), first_commit, note)
    verdict.problems = [text for texts in examples.values() for text in texts]
    return verdict


def _device_order(
    frames: Iterable[ProducedFrame],
    first_commit: Mapping[tuple[str, int], int],
    note: Callable[[str, str], None],
) -> int:
    """Rule 4a. Per (device, lane), sweep frames by first send; every committed frame must
    come after each frame that was acked before it was sent. O(n log n)."""
    streams: dict[tuple[str, str], list[ProducedFrame]] = defaultdict(list)
    for frame in frames:
        if (frame.device_id, frame.frame_seq) in first_commit:
            streams[(frame.device_id, frame.lane)].append(frame)
    violations = 0
    for (device_id, lane), stream in streams.items():
        stream.sort(key=lambda f: f.first_sent)
        acked = sorted(
            (f.acked_at, first_commit[(f.device_id, f.frame_seq)], f.frame_seq)
            for f in stream
            if f.acked_at is not None
        )
        position = 0
        latest: tuple[int, int] | None = None  # (commit id, frame seq) of acked-before frames
        for frame in stream:
            while position < len(acked) and acked[position][0] < frame.first_sent:
                _, commit_id, seq = acked[position]
                if latest is None or commit_id > latest[0]:
                    latest = (commit_id, seq)
                position += 1
            commit_id = first_commit[(frame.device_id, frame.frame_seq)]
            if latest is not None and commit_id < latest[0]:
                violations += 1
                note(
                    "device order",
                    f"{device_id} {lane}: frame {frame.frame_seq} (commit {commit_id}) "
                    f"overtook frame {latest[1]} (commit {latest[0]}), acked before it was sent",
                )
    return violations
