"""The broker-cluster trial (issue #14, item 4): hub and edge on a three-node NATS cluster.

``make broker-cluster-trial`` / ``python -m bench.broker_cluster [--frames N --rate R]``.
Not a timed test and not in ``make test`` (a few minutes); it prints a verdict table and
exits non-zero when a check fails. Findings and figures: docs/scaling.md, "Broker cluster".

What runs, all real processes: three ``nats-server`` nodes (MQTT on, JetStream on, cluster
routes, no anonymous access, per-account permissions translated from the hub's own
Mosquitto ACL rules), ``python -m hub`` on SQLite connected to node 1 with nodes 2 and 3
as ``broker.failover``, ``python -m edge`` connected to node 2 (then 3, then 1), and a
fleet of simulated CB-100 buttons on a pty (heartbeats, presence presses, SOS). Under
load each node in turn is killed with SIGKILL and started again, the hub process is killed
once too; then the fault tests' checker (``tests/faults/checker.py``) judges what the
buttons produced against the hub's events table: nothing acknowledged lost, nothing
duplicated, per-device order, nothing invented. Around that, probes with their own MQTT
clients check authentication, retained status on every node, a persistent session picked
up on another node, last will across nodes, and shared subscriptions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import secrets
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from bench.measure import percentile
from contract import Lane, topics
from hub.provisioning.mosquitto_files import edge_rules, hub_rules
from simulators.broker import free_port
from simulators.fleet import Fleet
from simulators.history import read_committed, read_edge_status, read_produced, sum_dropped
from simulators.nats_cluster import NatsCluster, NatsUser
from simulators.stack import REPO_ROOT, ManagedProcess, _child_env
from tests.faults.checker import Verdict, check

EDGE = "edge-cluster"
OTHER_EDGE = "edge-neighbour"  # an account that must not reach EDGE's topics
FIRST_SERIAL = 700_000
CLIENT_SETTINGS = {"keepalive_s": 5, "reconnect_max_s": 2}


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


class Probe:
    """A plain paho client (MQTT 3.1.1) for the checks around the system under test."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        *,
        client_id: str | None = None,
        clean: bool = True,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.suback: list[str] = []
        self.connack: str | None = None
        self.session_present: bool | None = None
        self._lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{secrets.token_hex(4)}",
            clean_session=clean,
            protocol=paho.MQTTv311,
        )
        self.client.reconnect_delay_set(1, 1)
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(will[0], will[1], 1, False)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, 5)
        self.client.loop_start()

    def _on_connect(self, _c: paho.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        self.connack = str(reason)
        self.session_present = bool(flags.session_present)

    def _on_subscribe(self, _c: paho.Client, _u: Any, _m: int, codes: Any, _p: Any) -> None:
        self.suback = [str(code) for code in codes]

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def wait_connack(self, timeout_s: float = 15.0) -> str:
        return str(wait_until(lambda: self.connack, timeout_s, "a CONNACK"))

    def subscribe(self, topic: str, timeout_s: float = 15.0) -> list[str]:
        self.suback = []
        self.client.subscribe(topic, 1)
        return list(wait_until(lambda: self.suback, timeout_s, f"a SUBACK for {topic}"))

    def received(self, topic_part: str = "") -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return [m for m in self.messages if topic_part in m[0]]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def kill(self) -> None:
        """Drop the TCP connection without DISCONNECT, as a crashed client does."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


@dataclass
class Trial:
    workdir: Path
    seed: int
    frames: int
    rate: float
    devices: int
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.passwords = {
            name: secrets.token_urlsafe(18) for name in ("hub", EDGE, OTHER_EDGE, "probe")
        }
        rules = {"hub": hub_rules(), EDGE: edge_rules(EDGE), OTHER_EDGE: edge_rules(OTHER_EDGE)}
        users = [
            NatsUser(
                name,
                self.passwords[name],
                publish=tuple(t for access, t in rule if access == "write"),
                subscribe=tuple(t for access, t in rule if access == "read"),
            )
            for name, rule in rules.items()
        ]
        users.append(NatsUser("probe", self.passwords["probe"]))  # the trial's own eyes
        self.cluster = NatsCluster(self.workdir / "nats", users)
        self.fleet = Fleet(
            self.workdir,
            "bus0",
            first_serial=FIRST_SERIAL,
            devices=self.devices,
            seed=self.seed,
            alarm_every=40,
            normal_every=25,
        )
        self.hub_port = free_port()
        self.hub: ManagedProcess | None = None
        self.edge: ManagedProcess | None = None
        self.parked_late: Probe | None = None

    # -- the system under test ---------------------------------------------------------------
    def broker(self, first: int, username: str) -> dict[str, Any]:
        nodes = self.cluster.mqtt_nodes(first)
        return {
            "host": nodes[0][0],
            "port": nodes[0][1],
            "failover": [{"host": h, "port": p} for h, p in nodes[1:]],
            "username": username,
            **CLIENT_SETTINGS,
        }

    @property
    def hub_db(self) -> Path:
        return self.workdir / "hub" / "hub.db"

    def start_hub(self) -> None:
        (self.workdir / "hub").mkdir(parents=True, exist_ok=True)
        config = {
            "database_url": f"sqlite+aiosqlite:///{self.hub_db}",
            "broker": self.broker(0, "hub"),
            "api": {
                "host": "127.0.0.1",
                "port": self.hub_port,
                "public_base_url": f"http://127.0.0.1:{self.hub_port}",
            },
        }
        path = self.workdir / "hub.yaml"
        path.write_text(yaml.safe_dump(config))
        env = _child_env(
            {
                "HUB__API__TOKEN": secrets.token_urlsafe(24),
                "HUB__BROKER__PASSWORD": self.passwords["hub"],
            }
        )
        argv = [sys.executable, "-m", "hub", "--config", str(path), "--seed-demo"]
        self.hub = ManagedProcess("hub", argv, env, self.workdir / "hub.log").start()
        self.wait_hub_ready()

    def wait_hub_ready(self, timeout_s: float = 90.0) -> None:
        import httpx

        def ready() -> bool:
            assert self.hub is not None
            if not self.hub.running:
                raise RuntimeError(f"hub exited:\n{self.hub.log_text()[-3000:]}")
            try:
                url = f"http://127.0.0.1:{self.hub_port}/readyz"
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout_s, "the hub ready (database and broker)")

    def start_edge(self) -> None:
        config = {
            "edge_id": EDGE,
            "data_dir": str(self.workdir / EDGE),
            "profiles_dir": str(REPO_ROOT / "device_profiles"),
            "broker": self.broker(1, EDGE),
            "serial_buses": [{"port": str(self.fleet.link), "profile": "cb-100"}],
            "uplink": {"ack_timeout_s": 5},
            "status_interval_s": 0.5,
        }
        path = self.workdir / f"{EDGE}.yaml"
        path.write_text(yaml.safe_dump(config))
        env = _child_env({"EDGE__BROKER__PASSWORD": self.passwords[EDGE]})
        argv = [sys.executable, "-m", "edge", "--config", str(path)]
        self.edge = ManagedProcess(EDGE, argv, env, self.workdir / f"{EDGE}.log").start()

    @contextlib.contextmanager
    def sql(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.hub_db, timeout=30, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def register_devices(self) -> None:
        with self.sql() as db:
            households = [int(r[0]) for r in db.execute("SELECT id FROM households ORDER BY id")]
            db.executemany(
                "INSERT OR IGNORE INTO devices (id, household_id, place, edge_id, profile, online) "
                "VALUES (?, ?, 'broker cluster trial', ?, 'cb100', 0)",
                [
                    (device, households[i % len(households)], EDGE)
                    for i, device in enumerate(self.fleet.device_ids)
                ],
            )

    def hub_events(self) -> int:
        with self.sql() as db:
            return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def edge_online(self) -> bool | None:
        with self.sql() as db:
            row = db.execute("SELECT online FROM edge_status WHERE edge_id = ?", (EDGE,)).fetchone()
        return None if row is None else bool(row[0])

    def outbox_depth(self) -> int:
        path = self.workdir / EDGE / "outbox.db"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        finally:
            db.close()

    def record(self, name: str, ok: bool, detail: str, *, finding: bool = False) -> None:
        """A check (fails the trial when not ok), or a ``finding`` to report either way."""
        self.checks.append(Check(name, ok, detail))
        mark = "note" if finding else "ok" if ok else "FAIL"
        print(f"  [{mark}] {name}: {detail}", flush=True)

    # -- probes ----------------------------------------------------------------------------------
    def probe(self, node: int, user: str | None = "probe", **options: Any) -> Probe:
        """A client on ``node`` as ``user`` (None: anonymous; unknown: a wrong password)."""
        port = self.cluster.nodes[node].mqtt_port
        password = None if user is None else self.passwords.get(user, "wrong")
        return Probe(port, user, password, **options)

    def check_auth(self) -> None:
        anonymous = self.probe(0, None)
        wrong = self.probe(1, "intruder")
        results = (anonymous.wait_connack(), wrong.wait_connack())
        anonymous.close()
        wrong.close()
        self.record(
            "no anonymous access",
            all(r == "Not authorized" for r in results),
            f"anonymous: {results[0]}; unknown user: {results[1]}",
        )
        neighbour = self.probe(2, OTHER_EDGE)
        neighbour.wait_connack()
        spy = neighbour.subscribe(topics.acks(EDGE))
        own = neighbour.subscribe(topics.acks(OTHER_EDGE))
        watcher = self.probe(0)
        watcher.wait_connack()
        watcher.subscribe(f"{topics.PREFIX}/edge/{EDGE}/events/#")
        info = neighbour.client.publish(topics.events(EDGE, Lane.ALARM), b"forged", 1)
        info.wait_for_publish(10)
        time.sleep(2)  # how long a forged message would take to arrive: the check is absence
        forged = [m for m in watcher.received() if m[1] == b"forged"]
        neighbour.close()
        watcher.close()
        self.record(
            "per-edge permissions",
            spy == ["Unspecified error"] and own == ["Granted QoS 1"] and not forged,
            f"another edge's acks: SUBACK {spy}; its own: {own}; a forged event on "
            f"another edge's topic: PUBACK'd (MQTT 3.1.1 has no refusal), "
            f"delivered {len(forged)} times",
        )

    def check_client_id_takeover(self) -> None:
        """Another edge's account connects with this edge's client id (Mosquitto's
        ``use_username_as_clientid`` makes that impossible; NATS has no such option)."""
        assert self.edge is not None
        edge = self.edge
        losses = edge.log_text().count("MQTT connection to")
        intruder = self.probe(0, OTHER_EDGE, client_id=f"edge-{EDGE}", clean=False)
        connack = intruder.wait_connack()
        kicked = False
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: edge.log_text().count("MQTT connection to") > losses, 10, "a kick")
            kicked = True
        intruder.close()
        wait_until(lambda: self.edge_online() is True, 60, "the edge back online")
        self.record(
            "client id taken over by another account",
            True,
            f"CONNACK {connack!r} for {OTHER_EDGE} with {EDGE}'s client id; the real edge "
            f"{'was' if kicked else 'was not'} disconnected (it reconnects; a hostile edge "
            "could repeat this). Needs one NATS account per edge, or a broker that binds "
            "client id to username",
            finding=True,
        )

    def check_shared_subscription(self) -> None:
        member = self.probe(2)
        member.wait_connack()
        suback = member.subscribe("$share/hubs/trial/shared")
        publisher = self.probe(0)
        publisher.wait_connack()
        publisher.client.publish("trial/shared", b"one", 1).wait_for_publish(10)
        time.sleep(3)  # the check is absence: a shared subscription would have it by now
        got = member.received("shared")
        member.close()
        publisher.close()
        self.figures["shared_subscription"] = {"suback": suback, "received": len(got)}
        self.record(
            "shared subscriptions ($share/…) [expected: not supported]",
            not got,
            f"SUBACK {suback}, messages received {len(got)}: no shared subscriptions over "
            "MQTT here; hub replicas cannot split ingest this way on NATS",
        )

    def park_session(self, node: int) -> None:
        """A persistent session on ``node``, left with nobody connected, messages queued."""
        parked = self.probe(node, client_id="trial-parked", clean=False)
        parked.wait_connack()
        parked.subscribe("trial/parked")
        parked.close()
        sender = self.probe(1)
        sender.wait_connack()
        for number in range(5):
            sender.client.publish("trial/parked", f"m{number}".encode(), 1).wait_for_publish(10)
        sender.close()

    def check_parked_session(self, node: int) -> None:
        """After the parked session's node died: the same client id on ``node`` gets the
        session and its queue. If the queue does not come, the client stays connected to
        see whether it comes later (:meth:`check_parked_late`)."""
        resumed = self.probe(node, client_id="trial-parked", clean=False)
        with contextlib.suppress(TimeoutError):
            resumed.wait_connack(60)
            wait_until(lambda: len(resumed.received("parked")) >= 5, 60, "the parked messages")
        payloads = sorted({m[1] for m in resumed.received("parked")})
        if len(payloads) < 5:
            self.parked_late = resumed
        else:
            resumed.close()
        self.record(
            "persistent session resumed on another node",
            bool(resumed.session_present) and payloads == [f"m{i}".encode() for i in range(5)],
            f"session_present={resumed.session_present}, queued QoS 1 messages delivered: "
            f"{len(payloads)}/5 (the node that held the session was killed meanwhile)",
        )

    def check_parked_late(self) -> None:
        late = self.parked_late
        if late is None:
            return
        payloads = {m[1] for m in late.received("parked")}
        late.close()
        self.record(
            "the parked session's queue, minutes later",
            True,
            f"{len(payloads)}/5 delivered by the end of the run (still connected since)",
            finding=True,
        )

    def check_retained_everywhere(self) -> None:
        seen = []
        for index, node in enumerate(self.cluster.nodes):
            probe = self.probe(index)
            probe.wait_connack()
            probe.subscribe(topics.HUB_STATUS)
            probe.subscribe(topics.HUB_STATUS_SUBSCRIPTION)

            def both(p: Probe = probe) -> bool:
                return bool(p.received("hub/status")) and bool(p.received(f"{EDGE}/status"))

            with contextlib.suppress(TimeoutError):
                wait_until(both, 10, "retained statuses")
            hub = [json.loads(m[1]).get("online") for m in probe.received("hub/status") if m[2]]
            edge = [json.loads(m[1]).get("online") for m in probe.received("/status") if m[2]]
            probe.close()
            seen.append((node.name, hub[:1], edge[-1:]))
        self.record(
            "retained hub and edge status on every node",
            all(h == [True] and e == [True] for _, h, e in seen),
            "; ".join(f"{n}: hub {h}, edges {e}" for n, h, e in seen),
        )

    def check_last_will(self) -> None:
        """kill -9 of the edge process (its node lives): the will reaches the hub."""
        assert self.edge is not None
        self.edge.kill()
        started = time.monotonic()
        wait_until(lambda: self.edge_online() is False, 60, "the edge offline at the hub")
        offline_after = time.monotonic() - started
        self.edge.start()
        wait_until(lambda: self.edge_online() is True, 60, "the edge back online")
        self.record(
            "last will across nodes (edge on one node, hub on another)",
            True,
            f"edge process killed: the hub marked it offline after {offline_after:.1f} s "
            "(its node saw the socket close and published the will), online again after "
            "restart",
        )

    # -- load and faults -----------------------------------------------------------------------
    def wait_committed(self, share: float, timeout_s: float = 300.0) -> None:
        target = int(self.frames * share)
        wait_until(lambda: self.hub_events() >= target, timeout_s, f"{target:,} events")

    def node_of(self, process: ManagedProcess | None) -> int:
        """Index of the node ``process`` said it last connected to (0 if unknown)."""
        port = _last_node(process.log_text()) if process is not None else None
        ports = [n.mqtt_port for n in self.cluster.nodes]
        return ports.index(port) if port in ports else 0

    def kill_node(self, index: int, note: str) -> dict[str, Any]:
        node = self.cluster.nodes[index]
        clients = [p for p in (self.hub, self.edge) if p is not None]
        connects = {p.name: p.log_text().count("MQTT connected to") for p in clients}
        losses = {p.name: p.log_text().count("MQTT connection to") for p in clients}
        on_node = [p for p in clients if _last_node(p.log_text()) == node.mqtt_port]
        node.kill()
        killed = time.monotonic()
        before = self.hub_events()
        reconnect_s = {}
        for process in on_node:  # those that were on the dead node: back on another one

            def reconnected(p: ManagedProcess = process) -> bool:
                return p.log_text().count("MQTT connected to") > connects[p.name]

            wait_until(reconnected, 180, f"{process.name} reconnected elsewhere")
            reconnect_s[process.name] = round(time.monotonic() - killed, 1)
        more = min(before + 50, self.frames)  # the load may be nearly done
        wait_until(lambda: self.hub_events() >= more, 180, "ingest after the kill")
        resumed_s = time.monotonic() - killed
        time.sleep(self.rng.uniform(1, 4))  # how long the node stays dead: fault timing
        node.start()
        self.cluster.wait_healthy(120)
        back_s = time.monotonic() - killed
        # Clients on *other* nodes may be dropped too: a node closes an MQTT connection
        # whose JetStream request (storing a QoS 1 message, loading a session) times out
        # while the dead node's stream and consumer leaders are elected again.
        dropped = [
            p.name
            for p in clients
            if p not in on_node and p.log_text().count("MQTT connection to") > losses[p.name]
        ]
        print(
            f"  kill -9 {node.name} ({note}): reconnected elsewhere after {reconnect_s} s; "
            f"50 more events committed after {resumed_s:.1f} s; node back and current after "
            f"{back_s:.1f} s; clients on other nodes dropped meanwhile: {dropped}",
            flush=True,
        )
        return {
            "node": node.name,
            "note": note,
            "reconnect_s": reconnect_s,
            "ingest_resumed_s": round(resumed_s, 1),
            "node_back_s": round(back_s, 1),
            "dropped_elsewhere": dropped,
        }

    def kill_hub(self) -> dict[str, Any]:
        assert self.hub is not None
        self.hub.kill()
        killed = time.monotonic()
        time.sleep(self.rng.uniform(0.5, 2))  # fault timing
        self.hub.start()
        self.wait_hub_ready()
        back = time.monotonic() - killed
        print(f"  kill -9 hub process: ready again after {back:.1f} s", flush=True)
        return {"hub_ready_s": round(back, 1)}

    def sos_latencies_ms(self) -> list[float]:
        with self.sql() as db:
            rows = db.execute(
                "SELECT (julianday(received_at) - julianday(occurred_at)) * 86400000.0 "
                "FROM events WHERE kind = 'sos'"
            ).fetchall()
        return [float(r[0]) for r in rows]

    def quiesce(self, timeout_s: float = 300.0) -> None:
        wait_until(
            lambda: int(self.fleet.status().get("produced", 0)) >= self.frames,
            timeout_s,
            "all frames produced",
        )
        wait_until(
            lambda: self.fleet.status().get("pending") == 0 and self.outbox_depth() == 0,
            timeout_s,
            "every frame acked by the edge and every event acked by the hub",
        )

        def final_status() -> bool:
            depth = (read_edge_status(self.hub_db, EDGE) or {}).get("outbox_depth")
            return isinstance(depth, dict) and not any(depth.values())

        wait_until(final_status, 60, "an edge status with an empty outbox")

    def verdict(self) -> Verdict:
        self.fleet.stop()
        info = read_edge_status(self.hub_db, EDGE) or {}
        return check(
            read_produced([self.fleet.history_path]),
            read_committed(self.hub_db),
            sum_dropped([info]),
        )

    # -- the whole run ----------------------------------------------------------------------------
    def run(self) -> bool:
        started = time.monotonic()
        self.cluster.start()
        self.figures["cluster_up_s"] = round(time.monotonic() - started, 1)
        print(
            f"NATS cluster of 3 up and current in {self.figures['cluster_up_s']} s "
            f"(MQTT ports {[n.mqtt_port for n in self.cluster.nodes]})",
            flush=True,
        )
        self.check_auth()
        self.check_shared_subscription()
        self.start_hub()
        self.fleet.start()
        self.register_devices()
        self.start_edge()
        wait_until(lambda: self.edge_online() is True, 90, "the edge online at the hub")
        self.record("edge status reached the hub", True, "retained, through the hub's wildcard")
        self.check_client_id_takeover()

        print(
            f"load: {self.frames:,} frames at {self.rate:g}/s ({self.devices} buttons; "
            "every 40th an SOS, every 25th a presence press)",
            flush=True,
        )
        self.fleet.send(f"limit {self.frames}")
        self.fleet.send(f"rate {self.rate}")
        load_started = time.monotonic()
        faults = []
        # Each fault strikes once the hub has committed this share of the load.
        self.wait_committed(0.15)
        faults.append(self.kill_node(self.node_of(self.edge), "the edge's node"))
        parked = self.node_of(self.hub)
        self.park_session(parked)
        self.wait_committed(0.35)
        faults.append(self.kill_node(parked, "the hub's node, holding a parked session"))
        self.check_parked_session((parked + 1) % len(self.cluster.nodes))
        self.wait_committed(0.55)
        faults.append(self.kill_hub())
        self.wait_committed(0.7)
        used = {self.node_of(self.hub), self.node_of(self.edge)}
        spare = [i for i in range(len(self.cluster.nodes)) if i not in used]
        if spare:
            faults.append(self.kill_node(spare[0], "a node neither hub nor edge is on"))
        else:
            faults.append(self.kill_node(self.node_of(self.edge), "hub's and edge's node"))
        self.figures["faults"] = faults
        self.quiesce()
        self.figures["load_s"] = round(time.monotonic() - load_started, 1)

        latencies = self.sos_latencies_ms()
        self.figures["sos_ms"] = {
            "count": len(latencies),
            "p50": round(percentile(latencies, 0.5), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "max": round(max(latencies), 1),
            "over_1s": sum(1 for ms in latencies if ms > 1000),
        }
        self.check_parked_late()
        self.check_retained_everywhere()
        self.check_last_will()
        hub_log = self.hub.log_text() if self.hub else ""
        edge_log = self.edge.log_text() if self.edge else ""
        self.figures["reconnects"] = {
            "hub": hub_log.count("MQTT connected to"),
            "edge": edge_log.count("MQTT connected to"),
        }
        verdict = self.verdict()
        print(verdict.table(), flush=True)
        self.record(
            "every event committed exactly once, in order (tests/faults checker)",
            verdict.ok,
            f"produced {verdict.produced:,}, acked {verdict.acked:,}, committed "
            f"{verdict.committed:,} ({verdict.committed_distinct:,} distinct), lost "
            f"{verdict.unexplained_loss}, duplicates {verdict.duplicates}, order violations "
            f"{verdict.order_violations}, invented {verdict.phantoms}",
        )
        sos = self.figures["sos_ms"]
        self.record(
            "SOS through the kills",
            verdict.lost_alarms == 0 and sos["count"] > 0,
            f"{sos['count']} SOS committed, none lost; edge→hub latency p50 {sos['p50']} ms, "
            f"p99 {sos['p99']} ms, max {sos['max']} ms, {sos['over_1s']} over 1 s "
            "(2 cores under other engineers' load)",
        )
        feedback = int(self.fleet.status().get("feedback", 0))
        self.record(
            "SOS feedback back at the buttons (hub → cluster → edge → button)",
            feedback >= sos["count"],
            f"{feedback} feedback frames (0x81 received, …) reached the buttons for "
            f"{sos['count']} SOS presses",
        )
        self.record(
            "end-to-end acks returned",
            self.outbox_depth() == 0,
            "the edge's outbox drained to 0: the hub's acks reached it after every failover",
        )
        (self.workdir / "trial.json").write_text(
            json.dumps({"figures": self.figures, "checks": [c.__dict__ for c in self.checks]})
        )
        print(json.dumps(self.figures, indent=1), flush=True)
        return all(c.ok for c in self.checks)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.fleet.stop()
        for process in (self.edge, self.hub):
            if process is not None:
                process.stop()
        self.cluster.stop()


def _last_node(log: str) -> int | None:
    """The MQTT port a process last said it connected to (``contract.mqtt``'s log line)."""
    marker = "MQTT connected to 127.0.0.1:"
    at = log.rfind(marker)
    if at < 0:
        return None
    digits = log[at + len(marker) :].split(maxsplit=1)[0]
    return int(digits) if digits.isdigit() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--frames", type=int, default=40_000, help="frames the buttons produce")
    parser.add_argument("--rate", type=float, default=200.0, help="frames per second in all")
    parser.add_argument("--devices", type=int, default=40, help="simulated CB-100 buttons")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and files here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    print(f"broker-cluster trial, seed {seed} (replay: --seed {seed})", flush=True)
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        trial = Trial(workdir, seed, args.frames, args.rate, args.devices)
        try:
            ok = trial.run()
        finally:
            trial.close()
    print("TRIAL PASSED" if ok else "TRIAL FAILED: see the [FAIL] lines", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
