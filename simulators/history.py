"""The recorded history of a fault run: what the devices produced, what the hub committed.

Why a history at all: a fault test must not judge the system by the system's own counters.
The simulated devices (``simulators/fleet.py``) write down every distinct frame they
produced — device, frame seq, lane, when it was first sent and when (if ever) the device
heeded its CB-100 link ack — in a SQLite file of their own. The hub's ``events`` table is the
other half: its ``id`` is commit order and ``uid`` (``edge:incarnation:seq``) names the edge
outbox row it came from. ``tests/faults/checker.py`` compares the two.

Times are ``time.monotonic()`` seconds. On Linux that is CLOCK_MONOTONIC, one clock for the
whole machine, so the histories of several device processes can be compared, and a wall
clock jump on the edge (a fault we inject) never bends them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LANES = ("alarm", "normal", "telemetry")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    device_id TEXT NOT NULL,
    frame_seq INTEGER NOT NULL,
    lane TEXT NOT NULL,
    kind TEXT NOT NULL,
    first_sent REAL NOT NULL,
    acked_at REAL,
    PRIMARY KEY (device_id, frame_seq)
);
"""


@dataclass(frozen=True, slots=True)
class ProducedFrame:
    """One distinct frame a device produced (its retransmissions are the same frame)."""

    device_id: str
    frame_seq: int
    lane: str
    kind: str
    first_sent: float
    acked_at: float | None = None  # when the device heeded the first link ack for it

    @property
    def acked(self) -> bool:
        return self.acked_at is not None


@dataclass(frozen=True, slots=True)
class CommittedEvent:
    """One row of the hub's ``events`` table."""

    commit_id: int  # events.id: commit order
    device_id: str
    lane: str
    frame_seq: int | None  # None when the event carries no frame seq (not one of ours)
    edge_id: str
    incarnation: str
    outbox_seq: int  # the edge outbox's seq: the order in which the edge accepted it


class HistoryWriter:
    """Appends produced frames and link acks to a history file, in batches.

    The writer is used by one device process; the file is its record only, so commits are
    not fsynced (a crash of the *machine* is not a fault these tests inject).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.executescript(_SCHEMA)
        self._new: list[tuple[str, int, str, str, float]] = []
        self._acks: list[tuple[float, str, int]] = []

    def produced(self, device_id: str, frame_seq: int, lane: str, kind: str, at: float) -> None:
        self._new.append((device_id, frame_seq, lane, kind, at))

    def acked(self, device_id: str, frame_seq: int, at: float) -> None:
        self._acks.append((at, device_id, frame_seq))

    def flush(self) -> None:
        if not self._new and not self._acks:
            return
        new, self._new = self._new, []
        acks, self._acks = self._acks, []
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT INTO frames (device_id, frame_seq, lane, kind, first_sent) "
            "VALUES (?, ?, ?, ?, ?)",
            new,
        )
        self._db.executemany(
            "UPDATE frames SET acked_at = ? "
            "WHERE device_id = ? AND frame_seq = ? AND acked_at IS NULL",
            acks,
        )
        self._db.execute("COMMIT")

    def close(self) -> None:
        self.flush()
        self._db.close()


def read_produced(paths: Iterable[Path]) -> list[ProducedFrame]:
    """Every frame recorded in the history files of all device processes."""
    frames: list[ProducedFrame] = []
    for path in paths:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            rows = db.execute(
                "SELECT device_id, frame_seq, lane, kind, first_sent, acked_at FROM frames"
            ).fetchall()
        finally:
            db.close()
        frames.extend(
            ProducedFrame(
                str(d), int(s), str(lane), str(k), float(t), None if a is None else float(a)
            )
            for d, s, lane, k, t, a in rows
        )
    return frames


def parse_uid(uid: str) -> tuple[str, str, int]:
    """``edge:incarnation:seq`` → its parts (the hub's event identity, hub/ingest.py)."""
    edge_id, incarnation, seq = uid.rsplit(":", 2)
    return edge_id, incarnation, int(seq)


def read_committed(hub_db: Path) -> list[CommittedEvent]:
    """Every event the hub committed, in commit order."""
    db = sqlite3.connect(f"file:{hub_db}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute(
            "SELECT id, uid, device_id, lane, json_extract(data, '$.frame_seq') "
            "FROM events ORDER BY id"
        ).fetchall()
    finally:
        db.close()
    return committed_events(rows)


def committed_events(rows: Iterable[Sequence[Any]]) -> list[CommittedEvent]:
    """Rows of ``(id, uid, device_id, lane, frame_seq)`` from a hub's ``events`` table, on
    any back end, as the checker's :class:`CommittedEvent` (in the rows' order)."""
    events = []
    for commit_id, uid, device_id, lane, frame_seq in rows:
        edge_id, incarnation, outbox_seq = parse_uid(str(uid))
        events.append(
            CommittedEvent(
                int(commit_id),
                str(device_id),
                str(lane),
                None if frame_seq is None else int(frame_seq),
                edge_id,
                incarnation,
                outbox_seq,
            )
        )
    return events


def dropped_counts(info: dict[str, Any]) -> dict[str, int]:
    """The edge's buffer-policy drop counters from its status ``info``, per lane.

    ``info["dropped"]`` may be a number (taken as telemetry) or a mapping of lane → count;
    missing means nothing was dropped (an edge without a bounded outbox never drops).
    """
    raw = info.get("dropped")
    counts = dict.fromkeys(LANES, 0)
    if isinstance(raw, int) and not isinstance(raw, bool):
        counts["telemetry"] = raw
    elif isinstance(raw, dict):
        for lane, value in raw.items():
            if lane in counts and isinstance(value, int) and not isinstance(value, bool):
                counts[lane] = value
    return counts


def read_edge_status(hub_db: Path, edge_id: str) -> dict[str, Any] | None:
    """The last status ``info`` the hub stored for ``edge_id`` (None if never heard)."""
    db = sqlite3.connect(f"file:{hub_db}?mode=ro", uri=True, timeout=30)
    try:
        row = db.execute("SELECT info FROM edge_status WHERE edge_id = ?", (edge_id,)).fetchone()
    finally:
        db.close()
    if row is None:
        return None
    info = json.loads(row[0])
    return info if isinstance(info, dict) else None


def sum_dropped(infos: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Drop counters of several edges added up per lane."""
    total = dict.fromkeys(LANES, 0)
    for info in infos:
        for lane, count in dropped_counts(info).items():
            total[lane] += count
    return total
