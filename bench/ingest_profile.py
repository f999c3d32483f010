"""The hub's ingest in one process: CPU µs per event, by stage, on a real SQLite file.

Why in process: the full-stack figures (``bench.throughput``) mix the broker, paho's
thread and the API into the hub's CPU; this drives :meth:`hub.ingest.Ingest.handle` with
pre-encoded 250-event batches (as ``bench.synthetic_edge`` sends) against a migrated,
seeded database file with the hub's own PRAGMAs and the configured device handlers, so the
time of each stage of the bulk path shows, and a change to one stage can be measured
before and after. CPU is the process's (``time.process_time``: the loop's thread and
aiosqlite's), taken around each stage while nothing else runs, so it is attributable.

    python -m bench.ingest_profile --events 50000 [--kind heartbeat|reading] [--rows N]

``--rows`` pre-fills ``events`` with that many older rows first (the index depth of a hub
that has run for a while). Also counts the SQL statements of one SOS (``sos_statements``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import Event, EventBatch, Lane, topics
from contract.mqtt import Message
from hub.config import HubConfig
from hub.db import schema
from hub.db.engine import create_engine
from hub.db.migrate import upgrade_to_head
from hub.domain.effects import Effects
from hub.domain.escalation import EscalationPolicy
from hub.handlers.features import device_handlers
from hub.handlers.router import DeviceEventRouter
from hub.ingest import Ingest
from hub.services.cases import CaseService
from hub.services.org import seed_demo_community

BATCH = 250
EDGE = "edge-demo"  # the demo community's edge; its button cb100-77626 is in a household
BUTTON = "cb100-77626"
DEVICES = 200
NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


@dataclass
class Stages:
    """CPU seconds per stage; nested stages are subtracted from their parent."""

    cpu: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _stack: list[list[float]] = field(default_factory=list)

    @contextlib.contextmanager
    def measure(self, name: str) -> Iterator[None]:
        started = time.process_time()
        self._stack.append([0.0])
        try:
            yield
        finally:
            spent = time.process_time() - started
            inner = self._stack.pop()[0]
            self.cpu[name] += spent - inner
            if self._stack:
                self._stack[-1][0] += spent


def _wrap_async(stages: Stages, name: str, fn: Callable[..., Awaitable[Any]]) -> Any:
    @functools.wraps(fn)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        with stages.measure(name):
            return await fn(*args, **kwargs)

    return wrapped


def _wrap_sync(stages: Stages, name: str, fn: Callable[..., Any]) -> Any:
    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with stages.measure(name):
            return fn(*args, **kwargs)

    return wrapped


#: (module or class, attribute, stage, is async); missing attributes are skipped, so the
#: same script measures the tree before and after a change of structure.
def _probes() -> list[tuple[Any, str, str, bool]]:
    import aiosqlite

    import contract.envelope
    import hub.ingest

    probes: list[tuple[Any, str, str, bool]] = [
        (hub.ingest.Ingest, "_insert_new", "dedupe + insert events", True),
        (hub.ingest, "place", "place (devices, trust, last seen)", True),
        (CaseService, "on_events", "place (devices, trust, last seen)", True),  # before #13
        (DeviceEventRouter, "route", "device handlers", True),
        (DeviceEventRouter, "on_events", "device handlers", True),
        (aiosqlite.Connection, "commit", "commit (fsync)", True),
        (contract.envelope.Ack, "encode", "ack", False),
    ]
    return probes


def _install(stages: Stages) -> Callable[[], None]:
    undo: list[Callable[[], None]] = []
    for owner, attr, name, is_async in _probes():
        original = owner.__dict__.get(attr)
        if original is None:
            continue
        wrap = _wrap_async if is_async else _wrap_sync
        setattr(owner, attr, wrap(stages, name, original))
        undo.append(functools.partial(setattr, owner, attr, original))
    # EventBatch.decode is a classmethod: wrap the bound function
    decode = EventBatch.__dict__["decode"]
    EventBatch.decode = classmethod(  # type: ignore[method-assign,assignment]
        _wrap_sync(stages, "decode", decode.__func__)
    )
    undo.append(functools.partial(setattr, EventBatch, "decode", decode))

    def restore() -> None:
        for step in undo:
            step()

    return restore


class _Broker:
    connected = True

    def __init__(self) -> None:
        self.acked = 0

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        return True

    def ack(self, message: Message) -> None:
        self.acked += 1


class _NoEffects:
    async def dispatch(self, effects: Effects) -> None:
        pass


def _device_ids() -> list[str]:
    return [f"cb100-{90000 + i}" for i in range(DEVICES)]


async def _prepare(path: Path) -> AsyncEngine:
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade_to_head, url)
    engine = create_engine(url)
    async with engine.begin() as conn:
        await seed_demo_community(conn, NOW - timedelta(days=1))
        await conn.execute(
            sa.insert(schema.devices),
            [{"id": d, "edge_id": EDGE, "profile": "cb-100", "place": ""} for d in _device_ids()],
        )
    return engine


def _batches(kind: str, total: int, incarnation: str, first_seq: int = 1) -> list[Message]:
    devices = _device_ids()
    lane = Lane.TELEMETRY
    messages = []
    for start in range(first_seq, first_seq + total, BATCH):
        seqs = range(start, min(first_seq + total, start + BATCH))
        if kind == "heartbeat":
            events = tuple(
                Event(s, devices[s % DEVICES], "heartbeat", lane, NOW, {"battery_pct": 80})
                for s in seqs
            )
        else:
            events = tuple(
                Event(
                    s,
                    devices[s % DEVICES],
                    "reading",
                    lane,
                    NOW + timedelta(milliseconds=s),
                    {"voltage": 220.1 + s % 7, "current": 1.25, "energy_kwh": 1234.5 + s},
                )
                for s in seqs
            )
        payload = EventBatch(EDGE, incarnation, events, follows=start - 1).encode()
        messages.append(Message(topics.events(EDGE, lane), payload, 1, start, False))
    return messages


def _ingest(engine: AsyncEngine, broker: _Broker) -> Ingest:
    config = HubConfig.model_validate({"api": {"token": "bench-" + "x" * 24}})
    service = CaseService(EscalationPolicy(), ZoneInfo(config.timezone))
    handlers = device_handlers(config)
    try:
        router = DeviceEventRouter(handlers, service=service)  # type: ignore[call-arg]
    except TypeError:
        router = DeviceEventRouter(handlers)
    return Ingest(engine, service, broker, _NoEffects(), lambda: NOW, router)  # type: ignore[arg-type]


async def _prefill(engine: AsyncEngine, rows: int) -> None:
    """Older events from another incarnation, written as ingest would (index depth)."""
    broker = _Broker()
    ingest = _ingest(engine, broker)
    for message in _batches("heartbeat", rows, "prefill" + uuid.uuid4().hex[:8]):
        await ingest.handle(message)


async def count_sos_statements(engine: AsyncEngine) -> tuple[int, list[str]]:
    """SQL statements SQLite runs for one SOS from a registered button (a new case).

    Counted by SQLite's own trace callback on every connection, so statements sent to the
    driver directly (``hub.db.bulk``) count too; BEGIN and COMMIT are included, the
    programs of triggers (the live feed's) are not, and an executemany counts once per row.
    """
    traced: list[str] = []

    def trace(sql: str) -> None:
        text = " ".join(sql.split())[:70]
        if not traced or traced[-1] != text:  # a trigger's program is traced as its statement
            traced.append(text)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.run_async(lambda driver: driver.set_trace_callback(trace))

    await engine.dispose()  # new connections, each traced
    sa.event.listen(engine.sync_engine, "connect", on_connect)
    try:
        broker = _Broker()
        ingest = _ingest(engine, broker)
        sos = Event(1, BUTTON, "sos", Lane.ALARM, NOW, {"frame_seq": 7})
        payload = EventBatch(EDGE, "sos-" + uuid.uuid4().hex[:8], (sos,)).encode()
        message = Message(topics.events(EDGE, Lane.ALARM), payload, 1, 1, False)
        async with engine.connect():
            pass  # the pool's connection is opened (and its PRAGMAs run) before counting
        traced.clear()
        await ingest.handle(message)
        return len(traced), list(traced)
    finally:
        sa.event.remove(engine.sync_engine, "connect", on_connect)
        await engine.dispose()


async def run(events: int, kind: str, rows: int) -> tuple[dict[str, float], float, int]:
    with tempfile.TemporaryDirectory(prefix="ingest-profile-") as tmp:
        engine = await _prepare(Path(tmp) / "hub.db")
        try:
            if rows:
                await _prefill(engine, rows)
            sos, _ = await count_sos_statements(engine)
            messages = _batches(kind, events, "bench" + uuid.uuid4().hex[:8])
            broker = _Broker()
            ingest = _ingest(engine, broker)
            await ingest.handle(messages[0])  # warm caches and compiled statements
            stages = Stages()
            undo = _install(stages)
            started = time.process_time()
            wall = time.perf_counter()
            try:
                for message in messages[1:]:
                    await ingest.handle(message)
            finally:
                undo()
            total = time.process_time() - started
            wall = time.perf_counter() - wall
            measured = events - BATCH
            per_event = {k: v / measured * 1e6 for k, v in stages.cpu.items()}
            per_event["other (loop, bookkeeping)"] = total / measured * 1e6 - sum(
                per_event.values()
            )
            per_event["total"] = total / measured * 1e6
            return per_event, measured / wall, sos
        finally:
            await engine.dispose()


def compare_decoders(kind: str, rounds: int = 200) -> dict[str, float]:
    """CPU µs per event to decode a 250-event batch: the checked ``json`` path, the same
    checks over ``orjson.loads`` (when installed), and msgspec's typed path (what
    ``EventBatch.decode`` uses)."""
    import json

    [message] = _batches(kind, BATCH, "decode")
    raw = message.payload

    def timed(decode: Callable[[bytes], object]) -> float:
        decode(raw)
        started = time.process_time()
        for _ in range(rounds):
            decode(raw)
        return (time.process_time() - started) / rounds / BATCH * 1e6

    results = {"json + hand-written checks": timed(EventBatch._decode_checked)}
    try:
        import orjson
    except ImportError:
        pass
    else:
        original = json.loads  # the module contract.envelope parses with
        json.loads = orjson.loads  # type: ignore[assignment]
        try:
            results["orjson + hand-written checks"] = timed(EventBatch._decode_checked)
        finally:
            json.loads = original
    results["msgspec typed (EventBatch.decode)"] = timed(EventBatch.decode)
    results["json.loads alone (no checks)"] = timed(json.loads)
    return results


def _undo_steps(steps: set[str]) -> None:
    """Put back what a step of issue #13 changed, to measure it alone (same tree)."""
    import hub.db.engine
    import hub.ingest

    unknown = steps - {"cache", "uid", "insert"}
    if unknown:
        raise SystemExit(f"unknown steps {sorted(unknown)}")
    if "cache" in steps:
        hub.db.engine.SQLITE_PRAGMAS = tuple(  # type: ignore[assignment]
            p for p in hub.db.engine.SQLITE_PRAGMAS if "cache_size" not in p and "mmap" not in p
        )
    if "uid" in steps:

        def plain_uid(edge_id: str, incarnation: str, seq: int) -> str:
            return f"{edge_id}:{incarnation}:{seq}"

        hub.ingest.event_uid = plain_uid
    if "insert" in steps:

        async def statements(*_args: Any) -> None:
            return None

        hub.ingest._insert_new_sqlite = statements  # type: ignore[assignment]


async def _print_sos() -> None:
    with tempfile.TemporaryDirectory(prefix="ingest-profile-") as tmp:
        engine = await _prepare(Path(tmp) / "hub.db")
        try:
            count, statements = await count_sos_statements(engine)
        finally:
            await engine.dispose()
    print(f"one SOS (a new case): {count} statements")
    for sql in statements:
        print("  ", sql)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--kind", choices=("heartbeat", "reading"), default="heartbeat")
    parser.add_argument("--rows", type=int, default=0, help="older events stored first")
    parser.add_argument("--sos", action="store_true", help="list the SOS path's statements")
    parser.add_argument(
        "--without",
        default="",
        help="comma-separated steps of issue #13 to undo for a before/after: cache (SQLite's "
        "default page cache, no mmap), uid (unpadded uids), insert (SELECT + executemany)",
    )
    parser.add_argument("--decoders", action="store_true", help="compare batch decoders")
    args = parser.parse_args()
    if args.decoders:
        for name, us in compare_decoders(args.kind).items():
            print(f"  {name:<36} {us:8.2f} µs CPU/event ({args.kind}, {BATCH}-event batch)")
        return
    if args.sos:
        asyncio.run(_print_sos())
        return
    _undo_steps({step for step in args.without.split(",") if step})
    per_event, rate, sos = asyncio.run(run(args.events, args.kind, args.rows))
    print(
        f"{args.events:,} {args.kind} events in {BATCH}-event batches, {args.rows:,} older rows"
        + (f", without {args.without}" if args.without else "")
    )
    for stage, us in per_event.items():
        print(f"  {stage:<36} {us:8.1f} µs CPU/event")
    print(f"  wall rate {rate:,.0f} events/s; one SOS: {sos} SQL statements")


if __name__ == "__main__":
    main()
