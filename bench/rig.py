"""The running system the benchmarks measure, and the handles to drive it.

One private Mosquitto, ``python -m hub`` on SQLite and ``python -m edge`` are started as
real processes through :class:`simulators.stack.Stack`, exactly as tests and the demo do.
The edge serves one pty for the measured SOS button and ``LOAD_PTYS`` ptys fed by load
generator processes (``bench.load``), each with its own range of 200 registered buttons.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from simulators.stack import REPO_ROOT, Stack
from simulators.worker_phone import stream_events

EDGE_ID = "edge-demo"
SOS_BUTTON = 77626  # a demo device bound to a household (hub --seed-demo)
LOAD_PTYS = 4
LOAD_DEVICES = 200  # buttons per load pty
LOAD_BASE = 900_000  # serial of the first load button; pty k uses LOAD_BASE + 1000 k …
FOOTPRINT_BASE = 909_000  # the 200 buttons of the footprint edge
#: Hub escalation settings for most rows: nobody escalates during a latency measurement,
#: and every SOS opens its own case (so every press yields one notification).
QUIET_ESCALATION = {"grid_worker_s": 36000, "backup_worker_s": 36000, "dedupe_window_s": 0}


def device_ids(first_serial: int, count: int) -> list[str]:
    return [f"cb100-{first_serial + i}" for i in range(count)]


class LoadProcess:
    """A ``bench.load`` process: one pty, driven with ``run``/``stop`` commands."""

    def __init__(self, link: Path, first_serial: int, devices: int) -> None:
        self.link = link
        self.first_serial = first_serial
        self.devices = devices
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.load", str(link), str(first_serial), str(devices)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._running = False
        if self._line() != "ready":
            raise RuntimeError(f"load generator for {link} did not start")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def _send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def start(self, rate: float, count: int) -> None:
        """Begin sending ``count`` frames at ``rate``/s (0: as fast as the pty takes them)."""
        self._send(f"run {rate} {count}")
        self._running = True

    def stop(self) -> None:
        if self._running:
            self._send("stop")

    async def wait(self) -> int:
        """Frames sent by the current run, once it has ended."""
        line = await asyncio.to_thread(self._line)
        self._running = False
        if not line.startswith("done "):
            raise RuntimeError(f"load generator for {self.link}: unexpected {line!r}")
        return int(line.split()[1])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.stop()
            self._send("quit")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def run_loads(loads: list[LoadProcess], rate_each: float, count_each: int) -> int:
    for load in loads:
        load.start(rate_each, count_each)
    return sum(await asyncio.gather(*(load.wait() for load in loads)))


@dataclass
class Rig:
    """A running stack with the SOS button, load ptys and a worker's notification stream."""

    workdir: Path
    stack: Stack = field(init=False)
    loads: list[LoadProcess] = field(default_factory=list)
    hub_overrides: dict[str, Any] = field(default_factory=dict)
    hub_down: bool = False  # stopped on purpose

    def __post_init__(self) -> None:
        self.stack = Stack(self.workdir)

    def check(self) -> None:
        """Raise if a process of the stack died: a figure measured without it is void."""
        procs = list(self.stack.edges.values())
        if self.stack.hub is not None and not self.hub_down:
            procs.append(self.stack.hub)
        for proc in procs:
            if not proc.running:
                raise RuntimeError(f"bench: {proc.name} exited:\n{proc.log_text()[-3000:]}")

    @property
    def hub_db(self) -> Path:
        return self.workdir / "hub" / "hub.db"

    @property
    def outbox_db(self) -> Path:
        return self.workdir / EDGE_ID / "outbox.db"

    @property
    def sos_link(self) -> Path:
        return self.workdir / "bus-sos"

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self.stack.start_broker()
        self.start_hub(escalation=QUIET_ESCALATION)
        self.register_devices(LOAD_BASE, LOAD_PTYS, LOAD_DEVICES)
        self.loads = [
            LoadProcess(self.workdir / f"bus-load{k}", LOAD_BASE + 1000 * k, LOAD_DEVICES)
            for k in range(LOAD_PTYS)
        ]

    def start_edge(self) -> None:
        """Start the edge once the SOS pty exists (the button bus creates it)."""
        ports = [str(self.sos_link), *(str(load.link) for load in self.loads)]
        self.stack.start_edge(EDGE_ID, ports, status_interval_s=1, log_level="WARNING")

    def start_hub(self, **overrides: Any) -> None:
        self.hub_overrides = overrides
        self.stack.start_hub(log_level="WARNING", **overrides)
        self.hub_down = False

    def stop_hub(self) -> None:
        assert self.stack.hub is not None
        self.hub_down = True
        self.stack.hub.stop(timeout=60)

    def restart_hub(self, **overrides: Any) -> None:
        self.stop_hub()
        self.start_hub(**overrides)

    def close(self) -> None:
        for load in self.loads:
            load.close()
        self.stack.stop()

    # -- the hub's database (read from outside, as an operator's tool would) -----------
    @contextmanager
    def hub_sql(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.hub_db, timeout=60)
        try:
            with db:
                yield db
        finally:
            db.close()

    def register_devices(
        self, first_serial: int, groups: int, per_group: int, edge_id: str = EDGE_ID
    ) -> None:
        """Bind load buttons to the SOS button's household behind ``edge_id``, as an
        installer would (the hub acts only on events from a device's registered edge)."""
        ids = [
            device
            for g in range(groups)
            for device in device_ids(first_serial + 1000 * g, per_group)
        ]
        with self.hub_sql() as db:
            household = db.execute(
                "SELECT household_id FROM devices WHERE id = ?", (f"cb100-{SOS_BUTTON}",)
            ).fetchone()[0]
            db.executemany(
                "INSERT OR IGNORE INTO devices (id, household_id, place, edge_id, profile, online) "
                "VALUES (?, ?, 'bench', ?, 'cb100', 0)",
                [(device, household, edge_id) for device in ids],
            )
            db.executemany(
                "UPDATE devices SET edge_id = ? WHERE id = ?", [(edge_id, d) for d in ids]
            )

    def hub_events(self) -> int:
        """Events committed by the hub so far (``MAX(id)``: ids are commit order, never reused)."""
        with self.hub_sql() as db:
            return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

    def sos_edge_to_hub_ms(self, last: int) -> list[float]:
        """For the last ``last`` SOS events: hub insert time − edge outbox time, in ms."""
        with self.hub_sql() as db:
            rows = db.execute(
                "SELECT (julianday(received_at) - julianday(occurred_at)) * 86400000.0 "
                "FROM events WHERE kind = 'sos' ORDER BY id DESC LIMIT ?",
                (last,),
            ).fetchall()
        return [float(r[0]) for r in rows]

    def outbox_seq(self) -> int:
        """The edge outbox's last seq (AUTOINCREMENT), read without scanning the table."""
        db = sqlite3.connect(self.outbox_db, timeout=60)
        try:
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            return int(row[0]) if row else 0
        finally:
            db.close()

    def outbox_depth(self) -> int:
        db = sqlite3.connect(self.outbox_db, timeout=60)
        try:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        finally:
            db.close()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.stack.hub_url, headers=self.stack.headers(), timeout=60
        )

    async def wait_for(self, what: str, condition: Any, timeout_s: float) -> None:
        """Poll ``condition()`` until true; raise with ``what`` when ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while not await asyncio.to_thread(condition):
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"bench: gave up after {timeout_s:.0f} s waiting for {what}")
            await asyncio.sleep(0.2)

    async def wait_drained(self, timeout_s: float) -> None:
        """Until the edge's outbox is empty (everything it stored is committed at the hub)."""
        await self.wait_for("the edge outbox to drain", lambda: self.outbox_depth() == 0, timeout_s)


class Notifications:
    """A worker's phone: arrival times (``time.perf_counter``) of notifications."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def follow(self, client: httpx.AsyncClient, worker_id: int) -> None:
        """Start reading the stream in the background; returns once it is subscribed."""
        self.ready.clear()

        async def read() -> None:
            async for event, data in stream_events(client, worker_id):
                if event == "ready":
                    self.ready.set()
                elif event == "notification":
                    self.arrivals.append((time.perf_counter(), data))

        self._task = asyncio.create_task(read(), name=f"worker {worker_id} stream")
        await asyncio.wait_for(self.ready.wait(), 30)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


async def worker_id(client: httpx.AsyncClient, phone: str) -> int:
    """The id of the demo worker with this phone number."""
    for worker in (await client.get("/api/v1/workers")).json():
        if worker["phone"] == phone:
            return int(worker["id"])
    raise LookupError(f"no worker with phone {phone}")
