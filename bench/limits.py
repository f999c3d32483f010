"""The machine's own limits, measured in the same run as the system's figures.

Each is the bare library doing the one thing the system needs from it, with nothing of
ours in between, so a figure of the system can be read against what this machine allows:

- **paho QoS 1 publish → subscribe** through a Mosquitto started exactly as the stack's
  (:class:`simulators.broker.MosquittoProcess`), subscriber in its own process: messages/s
  for small messages and for real 250-event batches, and the one-way latency at low rate;
- **SQLite batch insert** into the hub's own ``events`` table with the hub's PRAGMAs
  (``hub.db.engine.SQLITE_PRAGMAS``: WAL, ``synchronous=FULL``, …) on the disk the hub
  uses: rows/s in 250-row transactions (one ``executemany`` between ``BEGIN IMMEDIATE``
  and ``COMMIT``), and the latency of one single-row commit (one fsync). The database is
  made by the hub's own Alembic migrations (``upgrade_to_head``), so the table has every
  index and trigger the hub's has, and the uids are made by the hub's ``event_uid``, so
  the unique index sees keys in the order the hub's would. It is a fresh file: the
  best case, as a hub's first minutes; a hub with millions of rows pays more per row.
- **pymodbus TCP read holding registers**: requests/s, one client against a server
  process (pymodbus 3.x), for the Modbus pollers.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.client import AsyncModbusTcpClient

from bench.measure import percentile
from contract import Event, EventBatch, Lane
from hub.db.engine import SQLITE_PRAGMAS
from hub.db.migrate import upgrade_to_head
from hub.ingest import event_uid
from simulators.broker import MosquittoProcess, free_port, wait_for_port
from simulators.stack import REPO_ROOT

BATCH_EVENTS = 250  # the edge's default uplink batch_size


@dataclass
class PahoLimit:
    small_msgs_per_s: float
    batch_msgs_per_s: float
    batch_bytes: int
    latency_p50_ms: float
    latency_p99_ms: float

    @property
    def batched_events_per_s(self) -> float:
        """What the broker path alone could carry in 250-event batches."""
        return self.batch_msgs_per_s * BATCH_EVENTS


@dataclass
class SqliteLimit:
    rows_per_s: float
    commit_p50_ms: float
    commit_p99_ms: float


def sample_batch(seq0: int = 1, edge_id: str = "edge-raw") -> bytes:
    """A real 250-heartbeat ``EventBatch`` as the edge sends it."""
    now = datetime.now(UTC)
    events = tuple(
        Event(
            seq0 + i,
            f"cb100-{900_000 + i % 200}",
            "heartbeat",
            Lane.TELEMETRY,
            now,
            {"battery_pct": 80, "frame_seq": i},
        )
        for i in range(BATCH_EVENTS)
    )
    return EventBatch(edge_id, "0123456789abcdef", events).encode()


def paho_limit(workdir: Path, *, small: int, batches: int, pings: int) -> PahoLimit:
    topic = "bench/raw"
    with MosquittoProcess(workdir / "broker-raw") as broker:
        sink = subprocess.Popen(
            [sys.executable, "-m", "bench.paho_sink", str(broker.port), topic],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert sink.stdout is not None
            if sink.stdout.readline().strip() != "ready":
                raise RuntimeError("bench.paho_sink did not subscribe")
            client = paho.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id="bench-pub",
                protocol=paho.MQTTv311,
            )
            client.max_inflight_messages_set(100)  # as contract.mqtt sets it for edge and hub
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            try:
                body = sample_batch()
                starts = {}

                def publish(phase: str, count: int, pad: bytes, gap_s: float = 0.0) -> None:
                    starts[phase] = time.monotonic()
                    info = None
                    for i in range(count):
                        head = f"{phase} {i} {time.monotonic():.6f} ".encode()
                        info = client.publish(topic, head + pad, qos=1)
                        if gap_s:
                            time.sleep(gap_s)
                    if info is not None:
                        info.wait_for_publish(120)

                publish("small", small, b"x" * 200)
                publish("batch", batches, body)
                publish("lat", pings, b"x" * 200, gap_s=0.01)
                client.publish(topic, b"end 0 0 ", qos=1).wait_for_publish(30)
            finally:
                client.disconnect()
                client.loop_stop()
            line = sink.stdout.readline()
            sink.wait(30)
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.wait(10)
    result = json.loads(line)
    phases, latencies = result["phases"], result["latencies"]

    def rate(phase: str) -> float:
        count, _first, last = phases[phase]
        return float(count) / max(1e-9, float(last) - starts[phase])

    return PahoLimit(
        small_msgs_per_s=rate("small"),
        batch_msgs_per_s=rate("batch"),
        batch_bytes=len(body),
        latency_p50_ms=percentile(latencies, 0.5) * 1000,
        latency_p99_ms=percentile(latencies, 0.99) * 1000,
    )


def sqlite_limit(workdir: Path, *, rows: int, commits: int) -> SqliteLimit:
    path = workdir / "raw-sqlite.db"
    upgrade_to_head(f"sqlite+aiosqlite:///{path}")  # the hub's schema: indexes, triggers
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in SQLITE_PRAGMAS:
            db.execute(pragma)
        stamp = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
        data = '{"battery_pct":80,"frame_seq":1}'
        sql = (
            "INSERT INTO events (uid, edge_id, device_id, kind, lane, occurred_at, received_at, "
            "data) VALUES (?, 'edge-raw', ?, 'heartbeat', 'telemetry', ?, ?, ?)"
        )

        def row(i: int) -> tuple[str, str, str, str, str]:
            device = f"cb100-{900_000 + i % 200}"
            return (event_uid("edge-raw", "0123456789abcdef", i), device, stamp, stamp, data)

        t0 = time.perf_counter()
        for start in range(0, rows, BATCH_EVENTS):
            db.execute("BEGIN IMMEDIATE")
            db.executemany(sql, [row(i) for i in range(start, start + BATCH_EVENTS)])
            db.execute("COMMIT")
        rows_per_s = rows / (time.perf_counter() - t0)
        latencies = []
        for i in range(rows, rows + commits):
            t = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute(sql, row(i))
            db.execute("COMMIT")
            latencies.append(time.perf_counter() - t)
    finally:
        db.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return SqliteLimit(
        rows_per_s=rows_per_s,
        commit_p50_ms=percentile(latencies, 0.5) * 1000,
        commit_p99_ms=percentile(latencies, 0.99) * 1000,
    )


async def _modbus_reads(port: int, seconds: float) -> float:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5)
    if not await client.connect():
        raise RuntimeError("pymodbus client could not connect to the bench server")
    try:
        done = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            reply = await client.read_holding_registers(0, count=10, device_id=1)
            if reply.isError():
                raise RuntimeError(f"pymodbus read failed: {reply}")
            done += 1
        return done / (time.perf_counter() - t0)
    finally:
        client.close()


def _start_modbus_server(port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # pymodbus 3.x prints deprecation notes for v4 at start
        return subprocess.Popen(
            [sys.executable, "-m", "bench.modbus_server", str(port)],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def modbus_limit(workdir: Path, *, seconds: float) -> float:
    port = free_port()
    server = _start_modbus_server(port, workdir / "modbus-server.log")
    try:
        await asyncio.to_thread(wait_for_port, port, 30)
        return await _modbus_reads(port, seconds)
    finally:
        server.terminate()
        server.wait(10)
