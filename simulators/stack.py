"""Start a whole system as real processes: private Mosquitto, hub, edge agents.

Used by ``make demo``, the integration and fault tests and the benchmarks, so all three
run the system the same way an operator would: ``python -m hub`` and ``python -m edge``
with YAML files and secrets in the environment. Each process logs to its own file in the
work directory.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from simulators.broker import MosquittoProcess, free_port

if TYPE_CHECKING:
    import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ManagedProcess:
    """A child process with its command line, so it can be killed and started again."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the crash the durability guarantees are about."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 10) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB__", "EDGE__"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _poller() -> httpx.Client:
    """One client for a wait loop's many probes: ``httpx.get`` makes a client, and with it
    an SSL context (about 25 ms of CPU), for every call, which every 50 ms is a third of a
    core taken from the process being waited for."""
    import httpx  # the hub extra; the edge-only install never starts a hub

    return httpx.Client(timeout=0.5)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class Stack:
    """Files and processes of one running system under ``workdir``."""

    workdir: Path
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    broker: MosquittoProcess | None = None
    hub: ManagedProcess | None = None
    edges: dict[str, ManagedProcess] = field(default_factory=dict)
    hub_port: int = 0
    hub_broker_password: str = ""  # set by start_with_broker_auth
    # Brokers on an edge's own network (doors, lockers), stopped after the edges.
    local_brokers: dict[str, MosquittoProcess] = field(default_factory=dict)
    # The hub's database: None for the SQLite file under ``workdir/hub``, else a URL
    # (``postgresql+asyncpg://…`` of an empty database; the hub migrates it at start-up).
    database_url: str | None = None
    # Hub replicas on one database and broker (issue #14), by replica id, and their ports.
    replicas: dict[str, ManagedProcess] = field(default_factory=dict)
    replica_ports: dict[str, int] = field(default_factory=dict)
    # Configuration every replica gets on top of its own (set by start_broker_for_replicas).
    replica_overrides: dict[str, Any] = field(default_factory=dict)

    def start_broker(self) -> MosquittoProcess:
        self.broker = MosquittoProcess(self.workdir / "broker").start()
        return self.broker

    @property
    def broker_port(self) -> int:
        assert self.broker is not None, "start_broker() first"
        return self.broker.port

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}"

    def write_hub_config(self, **overrides: Any) -> Path:
        self.hub_port = self.hub_port or free_port()
        config: dict[str, Any] = {
            "database_url": self.database_url
            or f"sqlite+aiosqlite:///{self.workdir / 'hub' / 'hub.db'}",
            "broker": {"host": "127.0.0.1", "port": self.broker_port},
            "api": {"host": "127.0.0.1", "port": self.hub_port, "public_base_url": self.hub_url},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        path = self.workdir / "hub.yaml"
        (self.workdir / "hub").mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
        return path

    def start_hub(
        self,
        *,
        seed_demo: bool = True,
        extra_env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> ManagedProcess:
        path = self.write_hub_config(**overrides)
        argv = [sys.executable, "-m", "hub", "--config", str(path)]
        if seed_demo:
            argv.append("--seed-demo")
        self.hub = ManagedProcess(
            "hub",
            argv,
            _child_env({"HUB__API__TOKEN": self.api_token, **(extra_env or {})}),
            self.workdir / "hub.log",
        ).start()
        self.wait_for_hub(60)
        return self.hub

    def start_with_broker_auth(self, *, seed_demo: bool = True, **overrides: Any) -> None:
        """The production arrangement: no anonymous MQTT client gets in.

        The hub runs with ``broker_auth`` and writes the broker's password and ACL files
        (its own account included, password from ``HUB__BROKER__PASSWORD``); then the
        broker starts on those files, and the hub reloads it (SIGHUP through the pid
        file) whenever an edge is provisioned, rotated or retired. Edges started after
        this need credentials from ``POST /api/v1/edges``.
        """
        broker, hub_settings = self._production_broker(self.workdir / "broker")
        self.start_hub(
            seed_demo=seed_demo,
            extra_env={"HUB__BROKER__PASSWORD": self.hub_broker_password},
            **_deep_merge(hub_settings, overrides),
        )
        broker.start()
        self.wait_for_hub(60, path="/readyz")  # connected to the broker with its account

    def _production_broker(
        self, broker_dir: Path, *, log_connections: bool = False
    ) -> tuple[MosquittoProcess, dict[str, Any]]:
        """A broker that lets no anonymous client in (``use_username_as_clientid``, the
        password and ACL files under ``mosquitto/``), not started yet, with a new password
        for the hub's account; and the hub settings that go with it."""
        files = self.workdir / "mosquitto"
        broker = self.broker = MosquittoProcess(
            broker_dir,
            password_file=files / "passwd",
            acl_file=files / "acl",
            pid_file=broker_dir / "mosquitto.pid",
            username_as_client_id=True,
            log_connections=log_connections,
        )
        self.hub_broker_password = secrets.token_urlsafe(24)
        return broker, {
            "broker": {"username": "hub", "reconnect_max_s": 1},
            "broker_auth": {
                "password_file": str(files / "passwd"),
                "acl_file": str(files / "acl"),
                "reload": {"pid_file": str(broker.pid_file)},
                "edge_broker": {"host": "127.0.0.1", "port": broker.port},
            },
        }

    def start_broker_for_replicas(
        self, replica_ids: Sequence[str], *, database_url: str | None = None
    ) -> MosquittoProcess:
        """The production broker for hub replicas (issue #14): no anonymous client,
        ``use_username_as_clientid``, and the password and ACL files written first by
        ``python -m hub broker-files`` (as the compose stack's hub-init does), with an
        account for each of ``replica_ids`` (``hub.<replica id>``) and the hub's ACL.

        Replicas started after this log in with their own accounts, rewrite the files at
        their start and for every edge provisioned, and reload the broker (SIGHUP through
        its pid file); edges then need credentials from ``POST /api/v1/edges``. The broker
        logs connections, so :meth:`MosquittoProcess.takeovers` can count session
        takeovers. A broker already started (the ``stack`` fixture's) is stopped.
        """
        if self.broker is not None:
            self.broker.stop()
        broker, settings = self._production_broker(
            self.workdir / "broker-auth", log_connections=True
        )
        settings["broker_auth"]["edge_broker"]["tls"] = False
        self.replica_overrides = {**settings, "cluster": {"replicas": list(replica_ids)}}
        path = self._write_replica_config(replica_ids[0], "all", database_url, {})
        done = subprocess.run(
            [sys.executable, "-m", "hub", "broker-files", "--config", str(path)],
            env=_child_env(self._replica_env(None)),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"python -m hub broker-files failed:\n{done.stderr[-3000:]}")
        return broker.start()

    def start_hub_replica(
        self,
        replica_id: str,
        *,
        role: str = "all",
        seed_demo: bool = False,
        database_url: str | None = None,
        extra_env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> ManagedProcess:
        """One of several hub processes on one database and broker (``cluster`` set;
        ``docs/scaling.md``, "Hub replicas"), with its own API port, config and log.

        Start the first one alone with ``seed_demo`` (it migrates and seeds), the others
        after it is up. ``database_url`` defaults to the stack's SQLite file. After
        :meth:`start_broker_for_replicas` each logs in with its own broker account.
        """
        path = self._write_replica_config(replica_id, role, database_url, overrides)
        argv = [sys.executable, "-m", "hub", "--config", str(path)]
        if seed_demo:
            argv.append("--seed-demo")
        replica = ManagedProcess(
            f"hub-{replica_id}",
            argv,
            _child_env(self._replica_env(extra_env)),
            self.workdir / f"hub-{replica_id}.log",
        ).start()
        self.replicas[replica_id] = replica
        self.wait_for_replica(replica_id, 90)
        return replica

    def _replica_env(self, extra_env: dict[str, str] | None) -> dict[str, str]:
        env = {"HUB__API__TOKEN": self.api_token}
        if "broker_auth" in self.replica_overrides:
            env["HUB__BROKER__PASSWORD"] = self.hub_broker_password
        return {**env, **(extra_env or {})}

    def _write_replica_config(
        self, replica_id: str, role: str, database_url: str | None, overrides: dict[str, Any]
    ) -> Path:
        port = self.replica_ports.get(replica_id) or free_port()
        self.replica_ports[replica_id] = port
        config: dict[str, Any] = {
            "database_url": database_url
            or f"sqlite+aiosqlite:///{self.workdir / 'hub' / 'hub.db'}",
            "broker": {"host": "127.0.0.1", "port": self.broker_port},
            "api": {
                "host": "127.0.0.1",
                "port": port,
                "public_base_url": f"http://127.0.0.1:{port}",
            },
            "cluster": {"replica_id": replica_id, "role": role},
        }
        config = _deep_merge(_deep_merge(config, self.replica_overrides), overrides)
        path = self.workdir / f"hub-{replica_id}.yaml"
        (self.workdir / "hub").mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
        return path

    def replica_url(self, replica_id: str) -> str:
        return f"http://127.0.0.1:{self.replica_ports[replica_id]}"

    def wait_for_replica(
        self, replica_id: str, timeout_s: float = 60.0, *, path: str = "/healthz"
    ) -> None:
        import httpx  # the hub extra

        replica = self.replicas[replica_id]
        deadline = time.monotonic() + timeout_s
        with _poller() as client:
            while time.monotonic() < deadline:
                if not replica.running:
                    raise RuntimeError(f"{replica.name} exited:\n{replica.log_text()[-3000:]}")
                try:
                    url = f"{self.replica_url(replica_id)}{path}"
                    if client.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(
            f"{replica.name} not up after {timeout_s} s:\n{replica.log_text()[-3000:]}"
        )

    def wait_for_hub(self, timeout_s: float = 30.0, *, path: str = "/healthz") -> None:
        import httpx  # the hub extra; the edge-only install never starts a hub

        assert self.hub is not None
        deadline = time.monotonic() + timeout_s
        with _poller() as client:
            while time.monotonic() < deadline:
                if not self.hub.running:
                    raise RuntimeError(f"hub exited:\n{self.hub.log_text()[-3000:]}")
                try:
                    if client.get(f"{self.hub_url}{path}").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"hub not healthy after {timeout_s} s:\n{self.hub.log_text()[-3000:]}")

    def start_edge(
        self,
        edge_id: str,
        serial_ports: list[str],
        *,
        extra_env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> ManagedProcess:
        """``extra_env`` is added to the edge's environment (the fault tests preload
        libfaketime through it to move the edge's wall clock)."""
        config: dict[str, Any] = {
            "edge_id": edge_id,
            "data_dir": str(self.workdir / edge_id),
            "profiles_dir": str(REPO_ROOT / "device_profiles"),
            "broker": {"host": "127.0.0.1", "port": self.broker_port},
            "serial_buses": [{"port": p, "profile": "cb-100"} for p in serial_ports],
        }
        config.update(overrides)
        path = self.workdir / f"{edge_id}.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
        edge = ManagedProcess(
            edge_id,
            [sys.executable, "-m", "edge", "--config", str(path)],
            _child_env(extra_env or {}),
            self.workdir / f"{edge_id}.log",
        ).start()
        self.edges[edge_id] = edge
        return edge

    def start_local_broker(
        self, name: str, *, password_file: Path, acl_file: Path, port: int | None = None
    ) -> MosquittoProcess:
        """A second Mosquitto, for the MQTT devices of an edge (``edge.local_broker``
        writes its per-device password file and ACL): no anonymous client gets in."""
        broker = MosquittoProcess(
            self.workdir / name, port, password_file=password_file, acl_file=acl_file
        ).start()
        self.local_brokers[name] = broker
        return broker

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}

    def stop(self) -> None:
        for edge in self.edges.values():
            edge.stop()
        for local in self.local_brokers.values():
            local.stop()
        if self.hub is not None:
            self.hub.stop()
        for replica in self.replicas.values():
            replica.stop()
        if self.broker is not None:
            self.broker.stop()
