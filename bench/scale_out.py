"""Issue #14's bench rows: hub ingest on PostgreSQL with 1 and 2 replicas, SOS across them.

Each row runs only where the system can do it, and otherwise says why in one line
("not available: …") instead of failing the bench:

- **PostgreSQL**: Debian's server binaries (``/usr/lib/postgresql/<v>/bin``), the
  ``asyncpg`` driver in this Python, and a hub that starts and answers ``/healthz`` on a
  ``postgresql+asyncpg://`` URL (the first row tries it).
- **Replicas**: a hub that says it shares MQTT ingest between processes: a ``HubConfig``
  field named for replicas (``replica…``, ``instance_id``, ``cluster``), or a shared
  subscription (``$share/``) in the hub's code; ``BENCH_REPLICAS=1`` forces a try. Two hub
  processes without that would each take every message (idempotent, so no harm, but no
  scaling either, and the row would be meaningless).

The cluster is private to the run: ``initdb`` as the ``postgres`` user (the server refuses
to run as root) in the bench's work directory, trust authentication on 127.0.0.1 only, a
free port, stopped with the run. The hubs are ``python -m hub`` processes on that one
database and the stack's broker; the load is :mod:`bench.synthetic_edge` as in the SQLite
ingest row (same events, same window), so the rows compare directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import pwd
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.measure import CpuWindow
from bench.rig import LOAD_BASE, LOAD_DEVICES, LOAD_PTYS, SOS_BUTTON
from bench.sos_latency import Latencies, SosProbe
from simulators.broker import MosquittoProcess, free_port, wait_for_port
from simulators.button import SimulatedButtonBus
from simulators.stack import REPO_ROOT, ManagedProcess, Stack, _child_env

SYNTHETIC_EDGE = "edge-synthetic-pg"
PG_EDGE = "edge-pg"
REPLICA_FIELDS = ("replica", "instance_id", "cluster")


class NotAvailable(RuntimeError):
    """The row cannot run here; the message says why (printed as "not available: …")."""


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise NotAvailable("no PostgreSQL server here (Debian package postgresql)")
    return found[-1].parent


def check_postgres() -> Path:
    """The PostgreSQL binaries' folder, or NotAvailable with the reason."""
    binaries = postgres_bin()
    if importlib.util.find_spec("asyncpg") is None:
        raise NotAvailable("the asyncpg driver is not installed (the hub's PostgreSQL extra)")
    return binaries


def cluster_setting() -> bool:
    """Whether the hub's config has the replicas' ``cluster`` section (``replica_id``,
    ``role``): every hub process of these rows then gets one, the single one too."""
    from hub.config import HubConfig

    return "cluster" in HubConfig.model_fields


def replica_support() -> str | None:
    """Why the hub cannot run as replicas, or None when it says it can."""
    if os.environ.get("BENCH_REPLICAS") == "1":
        return None
    from hub.config import HubConfig

    for name in HubConfig.model_fields:
        if any(mark in name for mark in REPLICA_FIELDS):
            return None
    hub_dir = REPO_ROOT / "hub"
    for path in hub_dir.rglob("*.py"):
        if "$share/" in path.read_text(encoding="utf-8", errors="replace"):
            return None
    return (
        "the hub does not share MQTT ingest between processes yet (no replica setting in "
        "HubConfig, no $share/ subscription; BENCH_REPLICAS=1 forces a try)"
    )


class PrivatePostgres:
    """A PostgreSQL cluster of the bench's own, on 127.0.0.1 and a free port."""

    def __init__(self, workdir: Path, binaries: Path) -> None:
        self.dir = workdir / "pgdata"
        self.socket_dir = workdir / "pgsocket"
        self.bin = binaries
        self.port = free_port()
        self.log = workdir / "postgres.log"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *argv: str) -> None:
        cmd = [str(self.bin / argv[0]), *argv[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise NotAvailable(f"{argv[0]} failed: {(done.stderr or done.stdout).strip()[-300:]}")

    def start(self) -> PrivatePostgres:
        for folder in (self.dir, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            if self._as_postgres:
                user = pwd.getpwnam("postgres")
                os.chown(folder, user.pw_uid, user.pw_gid)
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            self.log.touch()
            os.chown(self.log, user.pw_uid, user.pw_gid)
            for folder in self.dir.parents:  # the postgres user must reach its folders
                mode = folder.stat().st_mode
                if not mode & 0o001:
                    os.chmod(folder, mode | 0o011)
        self._run("initdb", "-D", str(self.dir), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=on -c synchronous_commit=on"
        )
        self._run("pg_ctl", "-D", str(self.dir), "-l", str(self.log), "-o", options, "-w", "start")
        wait_for_port(self.port, 30)
        self.sql("CREATE DATABASE hub")
        return self

    def url(self, db: str = "hub") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{db}"

    def sql(self, statement: str, db: str = "postgres") -> str:
        done = subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", db, "-v", "ON_ERROR_STOP=1", "-At", "-c", statement],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql: {done.stderr.strip()[-300:]}")
        return done.stdout

    def stop(self) -> None:
        with contextlib.suppress(NotAvailable, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.dir), "-m", "fast", "-w", "stop")


@dataclass
class PgIngest:
    replicas: int
    events: int
    per_s: float
    cpu: dict[str, float]


class PgHubs:
    """``n`` hub processes on one PostgreSQL database and the stack's broker."""

    def __init__(self, workdir: Path, broker_port: int, url: str, token: str) -> None:
        self.workdir = workdir
        self.broker_port = broker_port
        self.url = url
        self.token = token
        self.hubs: list[tuple[ManagedProcess, int]] = []

    def start(self, index: int, *, seed: bool) -> tuple[ManagedProcess, int]:
        port = free_port()
        config: dict[str, Any] = {
            "hub_id": f"hub-{index}",
            "database_url": self.url,
            "broker": {"host": "127.0.0.1", "port": self.broker_port},
            "api": {
                "host": "127.0.0.1",
                "port": port,
                "public_base_url": f"http://127.0.0.1:{port}",
            },
            "escalation": {"grid_worker_s": 36000, "backup_worker_s": 36000, "dedupe_window_s": 0},
        }
        if cluster_setting():
            config["cluster"] = {"replica_id": f"r{index}", "role": "all"}
        path = self.workdir / f"hub-pg-{index}.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
        argv = [sys.executable, "-m", "hub", "--config", str(path)]
        if seed:
            argv.append("--seed-demo")
        proc = ManagedProcess(
            f"hub-pg-{index}",
            argv,
            _child_env({"HUB__API__TOKEN": self.token}),
            self.workdir / f"hub-pg-{index}.log",
        ).start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if not proc.running:
                raise NotAvailable(f"the hub did not start on PostgreSQL: {_cause(proc)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                    self.hubs.append((proc, port))
                    return proc, port
            time.sleep(0.1)
        proc.stop()
        raise NotAvailable("the hub on PostgreSQL was not healthy within 90 s")

    def stop(self) -> None:
        for proc, _port in self.hubs:
            proc.stop()
        self.hubs.clear()


def _cause(proc: ManagedProcess) -> str:
    """The line of the hub's log that says why it stopped: its last exception."""
    lines = [line.strip() for line in proc.log_text().splitlines() if line.strip()]
    for line in reversed(lines):
        if ("Error" in line or "Exception" in line) and "startup failed" not in line:
            return line[-300:]
    return lines[-1][-300:] if lines else "(no log)"


def register_load(pg: PrivatePostgres) -> None:
    """The load buttons, group g behind synthetic edge g, in the SOS button's household."""
    values = ",".join(
        f"('cb100-{LOAD_BASE + 1000 * g + i}', '{SYNTHETIC_EDGE}-{g:02d}')"
        for g in range(LOAD_PTYS)
        for i in range(LOAD_DEVICES)
    )
    pg.sql(
        "INSERT INTO devices (id, household_id, place, edge_id, profile, online) "
        "SELECT v.id, d.household_id, 'bench', v.edge, 'cb100', false FROM (VALUES "
        f"{values}) AS v(id, edge), devices d WHERE d.id = 'cb100-{SOS_BUTTON}' "
        "ON CONFLICT (id) DO UPDATE SET edge_id = EXCLUDED.edge_id",
        db="hub",
    )


def _start_synthetic(broker_port: int, events: int) -> subprocess.Popen[str]:
    """``LOAD_PTYS`` synthetic edges in one process, flat out: replicas own edges, so one
    edge would load one replica only."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.synthetic_edge", str(broker_port), SYNTHETIC_EDGE,
         str(events // LOAD_PTYS), "8", str(LOAD_BASE), "1", str(LOAD_DEVICES),
         "--edges", str(LOAD_PTYS), "--rate", "0", "--drain-s", "600"],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


async def synthetic_ingest(
    broker_port: int, events: int, pids: dict[str, int]
) -> tuple[int, float, dict[str, float]]:
    """Run bench.synthetic_edge against whatever hubs listen; (acked, events/s, CPU)."""
    proc = _start_synthetic(broker_port, events)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = await asyncio.to_thread(proc.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"bench.synthetic_edge: {line.strip()!r}")
        meters = {name: CpuWindow(pid).start() for name, pid in pids.items()}
        proc.stdin.write("go\n")
        proc.stdin.flush()
        words = (await asyncio.to_thread(proc.stdout.readline)).split()
        cpu = {name: meter.share() for name, meter in meters.items()}
    finally:
        if proc.poll() is None:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    if not words or words[0] != "done":
        raise RuntimeError(f"bench.synthetic_edge ended with {' '.join(words)!r}")
    acked, t0, t1 = int(words[1]), float(words[2]), float(words[3])
    return acked, acked / max(1e-9, t1 - t0), cpu


def _postgres_pids(pg: PrivatePostgres) -> dict[str, int]:
    """The postmaster and its backends, summed as "postgres" by the caller."""
    pid_file = pg.dir / "postmaster.pid"
    try:
        main = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    children = subprocess.run(
        ["pgrep", "-P", str(main)], capture_output=True, text=True, check=False
    ).stdout.split()
    return {"postgres": main, **{f"postgres {c}": int(c) for c in children}}


@dataclass
class ScaleOut:
    ingest: list[PgIngest] = field(default_factory=list)
    replicas_missing: str | None = None  # why the 2-replica rows did not run
    #: SOS with the worker's stream on each replica in turn: one of them is not the replica
    #: that owns the SOS edge, so its presses cross from one process to the other.
    sos: dict[str, Latencies] = field(default_factory=dict)


async def sos_across(
    workdir: Path,
    broker: MosquittoProcess,
    pg: PrivatePostgres,
    hub_urls: dict[str, str],
    token: str,
    samples: int,
) -> dict[str, Latencies]:
    """A real edge with the SOS button; the worker's stream on each replica in turn
    (``samples`` split between them), so the presses of one turn are ingested by the
    other replica and must cross to the stream (through the database and whatever
    wake-up channel the hub uses)."""
    stack = Stack(workdir / "pg-edge")
    stack.workdir.mkdir(parents=True, exist_ok=True)
    stack.broker = broker  # the stack's broker, not stopped here
    pg.sql(f"UPDATE devices SET edge_id = '{PG_EDGE}' WHERE id = 'cb100-{SOS_BUTTON}'", db="hub")
    link = stack.workdir / "bus-sos"
    headers = {"Authorization": f"Bearer {token}"}
    out: dict[str, Latencies] = {}
    try:
        async with SimulatedButtonBus([SOS_BUTTON], link_path=link, retransmit_s=5) as bus:
            edge = stack.start_edge(PG_EDGE, [str(link)], status_interval_s=1, log_level="WARNING")

            def check() -> None:
                if not edge.running:
                    raise RuntimeError(f"bench: {PG_EDGE} exited:\n{edge.log_text()[-3000:]}")

            for name, url in hub_urls.items():
                async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
                    probe = SosProbe(bus, check)
                    await probe.connect(client)
                    try:
                        await probe.sample(3, timeout_s=30)  # warm-up, not counted
                        out[name] = await probe.sample(max(1, samples // len(hub_urls)))
                    finally:
                        await probe.close()
        return out
    finally:
        for proc in stack.edges.values():
            await asyncio.to_thread(proc.stop)


async def scale_out(
    workdir: Path, broker: MosquittoProcess, token: str, events: int, sos_samples: int
) -> ScaleOut:
    """Ingest on PostgreSQL with 1 replica, then 2 and SOS across them where the hub
    supports replicas. Raises NotAvailable when PostgreSQL itself cannot be used."""
    binaries = check_postgres()
    (workdir / "postgres").mkdir(parents=True, exist_ok=True)
    pg = PrivatePostgres(workdir / "postgres", binaries)
    hubs = PgHubs(workdir, broker.port, pg.url(), token)
    out = ScaleOut()
    try:
        await asyncio.to_thread(pg.start)
        await asyncio.to_thread(hubs.start, 1, seed=True)
        await asyncio.to_thread(register_load, pg)

        def pids() -> dict[str, int]:
            found = {
                f"hub {k}": proc.process.pid
                for k, (proc, _port) in enumerate(hubs.hubs, 1)
                if proc.process is not None
            }
            return {**found, **_postgres_pids(pg)}

        acked, rate, cpu = await synthetic_ingest(broker.port, events, pids())
        out.ingest.append(PgIngest(1, acked, rate, _fold(cpu)))
        out.replicas_missing = replica_support()
        if out.replicas_missing is None:
            await asyncio.to_thread(hubs.start, 2, seed=False)
            acked, rate, cpu = await synthetic_ingest(broker.port, events, pids())
            out.ingest.append(PgIngest(2, acked, rate, _fold(cpu)))
            urls = {
                f"replica {k}": f"http://127.0.0.1:{port}"
                for k, (_proc, port) in enumerate(hubs.hubs, 1)
            }
            out.sos = await sos_across(workdir, broker, pg, urls, token, sos_samples)
        return out
    finally:
        await asyncio.to_thread(hubs.stop)
        await asyncio.to_thread(pg.stop)


def _fold(cpu: dict[str, float]) -> dict[str, float]:
    """Backends summed into one "postgres" share."""
    out: dict[str, float] = {}
    for name, value in cpu.items():
        key = "postgres" if name.startswith("postgres") else name
        out[key] = out.get(key, 0.0) + value
    return out
