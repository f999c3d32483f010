"""The fault rig: real broker, hub and edge processes, device fleets on ptys, a TCP proxy
between the edge and the broker, and the faults the tests inject into them.

Everything is a real process except the proxy (a thread of the test process). The fleets
(``simulators/fleet.py``) record what the devices produced and which link acks they got;
the hub's SQLite file records what was committed; ``tests/faults/checker.py`` judges the
two. Fault moments are drawn from a seeded RNG; the seed is printed, and ``FAULTS_SEED``
replays a run.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from simulators.fleet import Fleet
from simulators.history import read_committed, read_edge_status, read_produced, sum_dropped
from simulators.proxy import ProxyThread
from simulators.stack import Stack
from tests.conftest import MigratedSchema, wait_until_sync
from tests.faults.checker import Verdict, check

EDGE = "edge-faults"
FIRST_SERIAL = 500_000
WALL_CLOCK_SHIM = Path(__file__).parent / "wallclock"  # its sitecustomize moves time.time
#: Short keepalives so that a dead peer or a partition is noticed in seconds, not minutes.
BROKER_SETTINGS = {"host": "127.0.0.1", "keepalive_s": 5, "reconnect_max_s": 2}


def seed_from_env(default: int | None = None) -> int:
    value = os.environ.get("FAULTS_SEED")
    if value:
        return int(value)
    return default if default is not None else random.SystemRandom().randrange(1, 1_000_000)


@dataclass
class Rig:
    """One system under test and the means to break it."""

    workdir: Path
    seed: int
    stack: Stack = field(init=False)
    proxy: ProxyThread = field(init=False)
    fleets: list[Fleet] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    clock_file: Path | None = None
    limits: list[int] = field(default_factory=list)  # per fleet: frames it is to produce
    #: The hub's database starts as a copy of this migrated one (tests/conftest.py).
    schema: MigratedSchema | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.stack = Stack(self.workdir)

    # -- building it ---------------------------------------------------------------------
    def start(
        self,
        *,
        buses: int = 1,
        devices: int = 40,
        fake_clock: bool = False,
        status_interval_s: float = 0.5,
        hub_options: dict[str, Any] | None = None,
        **fleet_options: Any,
    ) -> Rig:
        stack = self.stack
        if self.schema is not None:
            self.schema.sqlite_copy(self.workdir / "hub" / "hub.db")
        stack.start_broker()
        self.proxy = ProxyThread("127.0.0.1", stack.broker_port).start()
        stack.start_hub(
            broker={**BROKER_SETTINGS, "port": stack.broker_port}, **(hub_options or {})
        )
        for index in range(buses):
            fleet = Fleet(
                self.workdir,
                f"bus{index}",
                first_serial=FIRST_SERIAL + index * 10_000,
                devices=devices,
                seed=self.seed + index,
                **fleet_options,
            )
            self.fleets.append(fleet.start())
            self.limits.append(0)
        self.register_devices()
        extra_env: dict[str, str] = {}
        if fake_clock:
            self.clock_file = self.workdir / "edge-clock"
            self.clock_file.write_text("+0\n")
            extra_env = {
                "PYTHONPATH": str(WALL_CLOCK_SHIM),
                "FAULTS_WALL_CLOCK_FILE": str(self.clock_file),
            }
        stack.start_edge(
            EDGE,
            [str(f.link) for f in self.fleets],
            extra_env=extra_env,
            broker={**BROKER_SETTINGS, "port": self.proxy.port},
            uplink={"ack_timeout_s": 5},
            status_interval_s=status_interval_s,
        )
        self.wait_edge_online()
        return self

    def register_devices(self) -> None:
        """The fleets' buttons, bound to the demo households (so SOS open real cases)."""
        with self.hub_db() as db:
            households = [int(r[0]) for r in db.execute("SELECT id FROM households ORDER BY id")]
            db.executemany(
                "INSERT OR IGNORE INTO devices (id, household_id, place, edge_id, profile, online) "
                "VALUES (?, ?, 'fault rig', ?, 'cb100', 0)",
                [
                    (device, households[i % len(households)], EDGE)
                    for fleet in self.fleets
                    for i, device in enumerate(fleet.device_ids)
                ],
            )

    def hub_db(self) -> contextlib.closing[sqlite3.Connection]:
        """A connection that commits and closes at the end of its ``with`` block."""
        return contextlib.closing(
            sqlite3.connect(self.workdir / "hub" / "hub.db", timeout=30, isolation_level=None)
        )

    def stop(self) -> None:
        self.resume_hub()
        for fleet in self.fleets:
            fleet.stop()
        self.stack.stop()
        if hasattr(self, "proxy"):
            self.proxy.stop()

    # -- load ------------------------------------------------------------------------------
    def produce(self, count: int, rate: float) -> None:
        """Let the fleets produce ``count`` more frames in all, at ``rate`` frames/s in all."""
        share = -(-count // len(self.fleets))
        for index, fleet in enumerate(self.fleets):
            self.limits[index] += share
            fleet.send(f"limit {self.limits[index]}")
            fleet.send(f"rate {rate / len(self.fleets)}")

    def hold(self) -> None:
        """Stop producing now; what was produced so far is what is to be produced."""
        for fleet in self.fleets:
            fleet.send("hold")

        def held() -> bool:
            statuses = [f.status() for f in self.fleets]
            if any(s.get("rate") != 0 or s.get("limit") != s.get("produced") for s in statuses):
                return False
            self.limits = [int(s["limit"]) for s in statuses]
            return True

        wait_until_sync(held, 30, 0.1, "the fleets to hold")

    def set_ack_loss(self, fraction: float) -> None:
        for fleet in self.fleets:
            fleet.send(f"ackloss {fraction}")

    def total(self, name: str) -> int:
        return sum(int(f.status().get(name, 0)) for f in self.fleets)

    def wait_produced(self, timeout: float = 120.0) -> None:
        wait_until_sync(
            lambda: all(
                int(f.status().get("produced", 0)) >= limit
                for f, limit in zip(self.fleets, self.limits, strict=True)
            ),
            timeout,
            0.1,
            f"the fleets to produce {sum(self.limits):,} frames",
        )

    # -- faults ----------------------------------------------------------------------------
    def kill(self, target: str) -> None:
        """``kill -9`` of edge, hub or broker, and a restart after a random short outage."""
        self.faults[f"kill -9 {target}"] += 1
        stack = self.stack
        if target == "edge":
            edge = stack.edges[EDGE]
            edge.kill()
            self.pause(0, 1.0)
            edge.start()
        elif target == "hub":
            assert stack.hub is not None
            stack.hub.kill()
            self.pause(0, 1.0)
            stack.hub.start()
            stack.wait_for_hub(60)
        elif target == "broker":
            assert stack.broker is not None
            stack.broker.kill()
            self.pause(0, 1.0)
            stack.broker.start()
        else:
            raise ValueError(target)

    def restart_broker(self) -> None:
        """A clean broker restart (SIGTERM): it forgets every session and queued message."""
        self.faults["broker restart"] += 1
        assert self.stack.broker is not None
        self.stack.broker.stop()
        self.stack.broker.start()

    def suspend_hub(self) -> None:
        assert self.stack.hub is not None and self.stack.hub.process is not None
        self.faults["hub SIGSTOP"] += 1
        self.stack.hub.process.send_signal(signal.SIGSTOP)

    def resume_hub(self) -> None:
        hub = self.stack.hub
        if hub is not None and hub.process is not None and hub.process.poll() is None:
            hub.process.send_signal(signal.SIGCONT)

    def lock_hub_db(self, seconds: float) -> None:
        """Another writer (a backup, an admin's shell) holds the hub database's write lock
        for ``seconds``, longer than the hub's busy timeout (5 s)."""
        self.faults[f"hub database locked {seconds:g} s"] += 1
        with self.hub_db() as db:
            db.execute("BEGIN IMMEDIATE")
            time.sleep(seconds)  # the length of the fault, not synchronisation
            db.execute("ROLLBACK")

    def set_edge_clock(self, offset: str) -> None:
        """Move the edge's wall clock, e.g. ``+7200`` or ``-10800`` seconds from real time."""
        assert self.clock_file is not None, "start(fake_clock=True) first"
        self.faults[f"edge clock {offset}"] += 1
        self.clock_file.write_text(f"{offset}\n")

    def pause(self, low: float, high: float) -> None:
        """Wait a random while: *when* the next fault strikes, not synchronisation."""
        time.sleep(self.rng.uniform(low, high))

    def network_faults(self) -> None:
        """Between edge and broker: a partition TCP survives (bytes held, delivered on heal
        unless a keepalive gave up first), one it does not (bytes and closes vanish), all
        connections cut, and a slow link."""
        self.faults["partition (stall)"] += 1
        self.proxy.partition("stall")
        self.pause(4, 8)
        self.proxy.heal()
        self.wait_more_committed(500)

        edge = self.stack.edges[EDGE]
        losses = edge.log_text().count("lost")
        self.faults["partition (blackhole)"] += 1
        self.proxy.partition("blackhole")
        wait_until_sync(
            lambda: edge.log_text().count("lost") > losses, 60, 0.1, "the edge to see the partition"
        )
        self.pause(0, 3)
        self.proxy.heal()
        self.wait_more_committed(500)

        self.faults["connections cut"] += 1
        self.proxy.cut()
        self.faults["link delay 300 ms"] += 1
        self.proxy.delay(0.3)
        self.wait_more_committed(300)
        self.proxy.delay(0)

    def slow_hub(self) -> None:
        """A hub that stops answering: a short stall, then one longer than its keepalive,
        so the broker declares it gone and the edge holds back until it is back."""
        for low, high in ((1, 3), (9, 11)):
            self.suspend_hub()
            self.pause(low, high)
            self.resume_hub()

    # -- observing ---------------------------------------------------------------------------
    def wait_more_committed(self, more: int, timeout: float = 120.0) -> None:
        """Wait until the hub committed ``more`` events beyond what it has now."""
        target = self.hub_events() + more
        wait_until_sync(
            lambda: self.hub_events() >= target, timeout, 0.1, f"{target:,} events at the hub"
        )

    def outbox_depth(self) -> int:
        path = self.workdir / EDGE / "outbox.db"
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            try:
                return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            finally:
                db.close()
        except sqlite3.Error:
            return -1

    def hub_events(self) -> int:
        with self.hub_db() as db:
            return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def wait_edge_online(self, timeout: float = 60.0) -> None:
        def online() -> bool:
            with self.hub_db() as db:
                cursor = db.execute("SELECT online FROM edge_status WHERE edge_id = ?", (EDGE,))
                row: tuple[int] | None = cursor.fetchone()
                return row == (1,)

        wait_until_sync(online, timeout, 0.1, "the edge online at the hub")

    def quiesce(self, timeout: float = 180.0) -> None:
        """Wait until everything produced was acked and the edge forwarded all of it, then
        for a status report that saw the empty outbox (its drop counters are final)."""
        self.wait_produced(timeout)

        def settled() -> bool:
            return self.total("pending") == 0 and self.outbox_depth() == 0

        wait_until_sync(settled, timeout, 0.2, f"all acked and forwarded: {self.describe()}")

        def final_status() -> bool:
            info = read_edge_status(self.workdir / "hub" / "hub.db", EDGE) or {}
            depth = info.get("outbox_depth")
            return isinstance(depth, dict) and not any(depth.values())

        wait_until_sync(final_status, 30, 0.2, "an edge status report with an empty outbox")

    def describe(self) -> str:
        status = {k: self.total(k) for k in ("produced", "acked", "pending", "retransmissions")}
        return f"fleets {status}, outbox {self.outbox_depth()}, hub {self.hub_events():,}"

    def verdict(self) -> Verdict:
        hub_db = self.workdir / "hub" / "hub.db"
        for fleet in self.fleets:
            fleet.stop()  # completes the history files
        info = read_edge_status(hub_db, EDGE) or {}
        return check(
            read_produced(f.history_path for f in self.fleets),
            read_committed(hub_db),
            sum_dropped([info]),
        )

    def report(self, verdict: Verdict) -> str:
        faults = ", ".join(f"{name} ×{n}" for name, n in sorted(self.faults.items()))
        return f"seed {self.seed}; faults: {faults or 'none'}\n{verdict.table()}"


@pytest.fixture
def rig(tmp_path: Path, migrated_schema: MigratedSchema) -> Iterator[Rig]:
    seed = seed_from_env()
    print(f"fault rig seed {seed} (replay with FAULTS_SEED={seed})")
    r = Rig(tmp_path, seed, schema=migrated_schema)
    try:
        yield r
    finally:
        r.stop()
        for name, proc in [("hub", r.stack.hub), *r.stack.edges.items()]:
            if proc is not None and "Traceback" in proc.log_text():
                print(f"--- {name} log ---\n{proc.log_text()[-4000:]}")
