"""Hub ingest on PostgreSQL next to SQLite (issue #14): ``python -m bench.pg_ingest``.

Two figures per back end, each measured here and now on this machine:

1. **The hub's ingest rate**: a real ``python -m hub`` (demo community seeded, escalation
   quiet), a private Mosquitto, and ``bench.synthetic_edge`` publishing N telemetry
   heartbeats in pre-encoded 250-event batches with the uplink's window (8), each batch
   retired on the hub's end-to-end ack; events/s = events ÷ (last ack − first publish),
   with the hub's CPU per event.
2. **The fast path alone** (``hub.db.bulk.bulk_execute``): 250-row batches of event rows,
   one transaction each, through SQLAlchemy's ordinary executemany and through the fast
   path (on PostgreSQL: asyncpg's pipelined executemany, and COPY, which the fast path takes
   for a plain insert of ``COPY_FROM_ROWS`` rows or more); rows/s of the insert call alone
   (the durable commit, the same for all ways, is left out).

PostgreSQL is a private cluster (``simulators.postgres``) **on disk** with PostgreSQL's
defaults: ``fsync=on``, ``synchronous_commit=on`` — what production runs; the tests' cluster
(fsync off, in memory) would flatter it. SQLite is the hub's file with ``synchronous=FULL``.

    python -m bench.pg_ingest                   # 100,000 events per back end
    python -m bench.pg_ingest --events 20000    # quicker

To put the rows in ``python -m bench``: call :func:`pg_ingest_rows` with the report and a
work directory (see its docstring).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.measure import machine_load
from bench.report import Report, Row, num
from hub.db import bulk
from hub.db.bulk import bulk_execute
from hub.db.engine import create_engine
from hub.db.schema import devices, events
from simulators.postgres import PostgresCluster
from simulators.stack import REPO_ROOT, Stack

EDGE = "edge-synthetic"
SOS_BUTTON = "cb100-77626"  # a seeded demo button: the load buttons join its household
FIRST_SERIAL, GROUPS, PER_GROUP = 900_000, 4, 200
QUIET_ESCALATION = {"grid_worker_s": 36000, "backup_worker_s": 36000, "dedupe_window_s": 0}
BATCH = 250


@dataclass(frozen=True)
class IngestFigure:
    backend: str
    events: int
    per_s: float
    hub_cpu_s: float


@dataclass(frozen=True)
class FastPathFigure:
    backend: str
    way: str  # "SQLAlchemy executemany" | "fast path" | …
    rows: int
    per_s: float


# -- the hub's ingest rate ----------------------------------------------------------------


def _device_ids() -> list[str]:
    return [f"cb100-{FIRST_SERIAL + 1000 * g + i}" for g in range(GROUPS) for i in range(PER_GROUP)]


async def register_devices(url: str) -> None:
    """Bind the synthetic edge's buttons to a seeded household, as an installer would."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            household = (
                await conn.execute(
                    sa.select(devices.c.household_id).where(devices.c.id == SOS_BUTTON)
                )
            ).scalar_one()
            known = set((await conn.execute(sa.select(devices.c.id))).scalars())
            fresh = [d for d in _device_ids() if d not in known]
            if fresh:
                await conn.execute(
                    sa.insert(devices),
                    [
                        {
                            "id": d,
                            "household_id": household,
                            "place": "bench",
                            "edge_id": EDGE,
                            "profile": "cb100",
                            "online": False,
                        }
                        for d in fresh
                    ],
                )
    finally:
        await engine.dispose()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / 100.0  # USER_HZ is 100 on Linux


def _start_synthetic_edge(port: int, events_n: int) -> subprocess.Popen[str]:
    argv = [str(port), EDGE, str(events_n), "8", str(FIRST_SERIAL), str(GROUPS), str(PER_GROUP)]
    return subprocess.Popen(
        [sys.executable, "-m", "bench.synthetic_edge", *argv],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


async def hub_ingest(workdir: Path, backend: str, url: str | None, events_n: int) -> IngestFigure:
    stack = Stack(workdir, database_url=url)
    stack.start_broker()
    try:
        stack.start_hub(log_level="WARNING", escalation=QUIET_ESCALATION)
        await register_devices(url or f"sqlite+aiosqlite:///{workdir / 'hub' / 'hub.db'}")
        proc = _start_synthetic_edge(stack.broker_port, events_n)
        assert proc.stdout is not None and stack.hub is not None
        assert stack.hub.process is not None
        try:
            line = await asyncio.to_thread(proc.stdout.readline)
            if line.strip() != "ready":
                raise RuntimeError(f"bench.synthetic_edge: {line.strip()}")
            cpu0 = _cpu_seconds(stack.hub.process.pid)
            words = (await asyncio.to_thread(proc.stdout.readline)).split()
            cpu = _cpu_seconds(stack.hub.process.pid) - cpu0
        finally:
            if proc.poll() is None:
                proc.wait(60)
        if not words or words[0] != "done":
            raise RuntimeError(f"bench.synthetic_edge ended with {' '.join(words)!r}")
        acked, t0, t1 = int(words[1]), float(words[2]), float(words[3])
        return IngestFigure(backend, acked, acked / max(1e-9, t1 - t0), cpu)
    finally:
        stack.stop()


# -- the fast path alone ------------------------------------------------------------------


def _rows(start: int, count: int, now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "uid": f"bench:{start + i}",
            "edge_id": EDGE,
            "device_id": f"cb100-{FIRST_SERIAL + i % PER_GROUP}",
            "kind": "heartbeat",
            "lane": "telemetry",
            "occurred_at": now,
            "received_at": now,
            "data": {"battery_pct": 80},
        }
        for i in range(count)
    ]


async def fast_path(backend: str, url: str, batches: int) -> list[FastPathFigure]:
    """Rows/s of the insert call alone for 250-row batches, each in its own transaction.

    The commit is left out of the clock: with fsync on it costs the same whichever way
    the rows went, and would hide the difference. The ways take turns batch by batch, so
    a change in the machine's load falls on all of them alike.
    """
    from hub.db.migrate import upgrade_to_head

    await asyncio.to_thread(upgrade_to_head, url)
    engine = create_engine(url)
    insert = sa.insert(events)
    now = datetime.now(UTC)
    ways = ["SQLAlchemy executemany", "fast path"]
    if backend == "PostgreSQL":
        ways = ["SQLAlchemy executemany", "fast path, asyncpg executemany", "fast path, COPY"]
    spent = dict.fromkeys(ways, 0.0)
    seq = 0
    copy_from = bulk.COPY_FROM_ROWS
    try:
        for n in range(batches * len(ways)):
            way = ways[n % len(ways)]
            bulk.COPY_FROM_ROWS = BATCH if way.endswith("COPY") else BATCH + 1
            rows = _rows(seq, BATCH, now)
            seq += BATCH
            async with engine.begin() as conn:
                await conn.exec_driver_sql("SELECT 1")  # the transaction has begun
                t = time.perf_counter()
                if way.startswith("SQLAlchemy"):
                    await conn.execute(insert, rows)
                else:
                    await bulk_execute(conn, insert, rows)
                spent[way] += time.perf_counter() - t
    finally:
        bulk.COPY_FROM_ROWS = copy_from
        await engine.dispose()
    rows_n = batches * BATCH
    return [FastPathFigure(backend, way, rows_n, rows_n / spent[way]) for way in ways]


# -- both back ends -----------------------------------------------------------------------


async def measure(
    work: Path, events_n: int, batches: int
) -> tuple[list[IngestFigure], list[FastPathFigure]]:
    cluster = PostgresCluster(work / "pg", durable=True).start()
    try:
        ingest = [
            await hub_ingest(work / "sqlite", "SQLite", None, events_n),
            await hub_ingest(
                work / "postgres",
                "PostgreSQL",
                await cluster.create_database("hub_ingest"),
                events_n,
            ),
        ]
        fast = [
            *await fast_path("SQLite", f"sqlite+aiosqlite:///{work / 'fast' / 'hub.db'}", batches),
            *await fast_path("PostgreSQL", await cluster.create_database("fast_path"), batches),
        ]
    finally:
        cluster.stop()
    return ingest, fast


async def pg_ingest_rows(report: Report, work: Path, events_n: int = 100_000) -> None:
    """Add this module's rows to ``python -m bench``'s report (for the lead to wire in:
    ``if "ingest-pg" in rows: await pg_ingest_rows(report, work, plan.ingest_events)``)."""
    work.mkdir(parents=True, exist_ok=True)
    ingest, fast = await measure(work, events_n, batches=max(20, events_n // 2500))
    for figure in ingest:
        report.add(
            Row(
                f"hub ingest on {figure.backend}, events/s (1 hub)",
                f"{num(figure.per_s)}/s",
                how=(
                    f"bench.pg_ingest: bench.synthetic_edge, {num(figure.events)} heartbeats in "
                    "250-event batches, window 8, retired on end-to-end acks; hub CPU "
                    f"{figure.hub_cpu_s / max(1, figure.events) * 1e6:.0f} µs per event. "
                    "PostgreSQL: private cluster on disk, fsync and synchronous_commit on."
                ),
            )
        )
    for f in fast:
        report.add(
            Row(
                f"insert of 250-row batches on {f.backend}, {f.way}, rows/s",
                f"{num(f.per_s)}/s",
                how="bench.pg_ingest: the insert call alone, one transaction per batch, the "
                "ways taking turns (hub.db.bulk).",
            )
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_ingest")
    parser.add_argument("--events", type=int, default=100_000, help="events per back end")
    parser.add_argument("--batches", type=int, default=200, help="fast-path batches per way")
    args = parser.parse_args(argv)
    print(f"load before: {machine_load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # the cluster runs as the postgres user when we are root
        ingest, fast = asyncio.run(measure(work, args.events, args.batches))
    print(f"load after: {machine_load()}")
    print("| back end | hub ingest, events/s | hub CPU per event |")
    print("|---|---|---|")
    for i in ingest:
        print(f"| {i.backend} | {num(i.per_s)} | {i.hub_cpu_s / max(1, i.events) * 1e6:.0f} µs |")
    print()
    print("| back end | 250-row batches through | rows/s |")
    print("|---|---|---|")
    for f in fast:
        print(f"| {f.backend} | {f.way} | {num(f.per_s)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
