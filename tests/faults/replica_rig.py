"""The fault rig with two hub replicas on one PostgreSQL and one broker (issue #14).

It is the rig of ``tests/faults/conftest.py`` (same fleets on ptys, same edge behind the
same proxy, same checker) with the single hub replaced by replicas ``a`` and ``b`` on a
private, durable PostgreSQL cluster, and three more witnesses besides the checker's:

* every command the replicas publish, counted per command id by an MQTT client of our own
  on the broker (a button command published twice is a defect);
* the escalation trail (``case_audit``): every deadline fired once, within 1 s of it;
* the worker streams' notification rows (``live_feed``) against the notifications the
  case transactions recorded (``case_notifications``): none written twice.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from contract import Command
from simulators.fleet import Fleet
from simulators.history import CommittedEvent, committed_events, read_produced, sum_dropped
from simulators.hub_db import HubDatabase, json_value
from simulators.postgres import PostgresCluster, run_coroutine
from simulators.proxy import ProxyThread
from tests.conftest import wait_until_sync
from tests.faults.checker import Verdict, check
from tests.faults.conftest import BROKER_SETTINGS, EDGE, FIRST_SERIAL, Rig

REPLICAS = ("a", "b")
#: Every tier has this long to acknowledge: each deadline is the previous step + TIER_S.
TIER_S = 3.0
#: The promise checked: an escalation fires no later than this after its deadline.
LATENESS_LIMIT_S = 1.0
#: Steps that set a case's next deadline: the first dispatch, then every firing.
DEADLINE_STEPS = ("dispatch", "escalate", "renotify", "unreachable")


class CommandWitness:
    """Counts every command published on the broker, per command id."""

    def __init__(self, port: int) -> None:
        self.published = Counter[str]()
        self._lock = threading.Lock()
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"witness-{uuid.uuid4().hex[:8]}",
        )
        self._subscribed = threading.Event()
        self._client.on_connect = lambda c, *_: c.subscribe("community/v1/edge/+/commands", 1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("the command witness did not subscribe")

    def _on_message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        command = Command.decode(message.payload)
        with self._lock:
            self.published[command.command_id] += 1

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def twice(self) -> dict[str, int]:
        with self._lock:
            return {k: n for k, n in self.published.items() if n > 1}


@dataclass
class EscalationVerdict:
    cases: int = 0
    firings: int = 0
    double_fired: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    worst_lateness_s: float = 0.0
    lateness: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.double_fired or self.late or self.missed)

    def table(self) -> str:
        ordered = sorted(self.lateness) or [0.0]
        p50 = ordered[len(ordered) // 2]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        lines = [
            f"escalation verdict  {'PASS' if self.ok else 'FAIL'}",
            f"cases  {self.cases:,}",
            f"deadlines fired  {self.firings:,}",
            f"fired twice  {len(self.double_fired)}",
            f"fired > {LATENESS_LIMIT_S:g} s late  {len(self.late)}",
            f"not fired (missed)  {len(self.missed)}",
            f"lateness p50 / p99 / max  {p50 * 1000:.0f} / {p99 * 1000:.0f} / "
            f"{self.worst_lateness_s * 1000:.0f} ms",
        ]
        lines += [f"  - {p}" for p in (self.double_fired + self.late + self.missed)[:10]]
        return "\n".join(lines)


@dataclass
class ReplicaRig(Rig):
    """Two replicas, ``kill -9`` one at random moments; see the module docstring."""

    cluster: PostgresCluster | None = None
    db: HubDatabase | None = None
    witness: CommandWitness | None = None
    database_url: str = ""
    kill_times: list[float] = field(default_factory=list)

    def start(  # type: ignore[override]
        self, *, devices: int = 40, **fleet_options: Any
    ) -> ReplicaRig:
        stack = self.stack
        stack.start_broker()
        self.witness = CommandWitness(stack.broker_port)
        self.proxy = ProxyThread("127.0.0.1", stack.broker_port).start()
        # On disk and durable (fsync on) unless FAULTS_REPLICA_PG_DURABLE=0: the faults
        # here kill hub replicas, never the database server, so its fsync changes only
        # how fast commits are (on a machine whose disk is shared, a great deal).
        durable = os.environ.get("FAULTS_REPLICA_PG_DURABLE", "1") != "0"
        pg_dir = Path(tempfile.mkdtemp(prefix="replicas-pg-", dir="/var/tmp"))
        self.cluster = PostgresCluster(pg_dir, durable=durable).start()
        self.database_url = run_coroutine(self.cluster.create_database("hub"))
        self.db = HubDatabase(self.database_url)
        for index, replica in enumerate(REPLICAS):
            stack.start_hub_replica(
                replica,
                seed_demo=index == 0,
                database_url=self.database_url,
                broker={**BROKER_SETTINGS, "port": stack.broker_port},
                escalation={
                    "grid_worker_s": TIER_S,
                    "backup_worker_s": TIER_S,
                    "community_station_s": TIER_S,
                    "street_centre_s": TIER_S,
                    "hotline_desk_s": TIER_S,
                },
                # No resend by design within a run: any second publish is a defect.
                command_retry_s=600,
            )
        for index in range(1):
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
        stack.start_edge(
            EDGE,
            [str(f.link) for f in self.fleets],
            broker={**BROKER_SETTINGS, "port": self.proxy.port},
            uplink={"ack_timeout_s": 5},
            status_interval_s=0.5,
        )
        self.wait_edge_online()
        return self

    def register_devices(self) -> None:
        assert self.db is not None
        households = [int(r[0]) for r in self.db.rows("SELECT id FROM households ORDER BY id")]
        self.db.execute(
            "INSERT INTO devices (id, household_id, place, edge_id, profile, online) "
            "VALUES (:id, :household, 'fault rig', :edge, 'cb100', false)",
            [
                {"id": device, "household": households[i % len(households)], "edge": EDGE}
                for fleet in self.fleets
                for i, device in enumerate(fleet.device_ids)
            ],
        )

    def stop(self) -> None:
        for fleet in self.fleets:
            fleet.stop()
        self.stack.stop()
        if hasattr(self, "proxy"):
            self.proxy.stop()
        if self.witness is not None:
            self.witness.stop()
        if self.db is not None:
            self.db.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.stop()
            shutil.rmtree(self.cluster.workdir, ignore_errors=True)

    # -- faults ------------------------------------------------------------------------------
    def kill_replica(self) -> str:
        """``kill -9`` of a random replica, restarted after a random short outage."""
        victim = self.rng.choice(REPLICAS)
        self.faults[f"kill -9 replica {victim}"] += 1
        replica = self.stack.replicas[victim]
        self.kill_times.append(time.monotonic())
        replica.kill()
        print(f"{datetime.now(UTC):%H:%M:%S.%f} kill -9 replica {victim}")
        self.pause(0, 1.0)
        replica.start()
        self.stack.wait_for_replica(victim, 90)
        print(f"{datetime.now(UTC):%H:%M:%S.%f} replica {victim} answers again")
        return victim

    # -- observing ----------------------------------------------------------------------------
    def hub_events(self) -> int:
        assert self.db is not None
        return int(self.db.scalar("SELECT COUNT(*) FROM events"))

    def wait_edge_online(self, timeout: float = 60.0) -> None:
        assert self.db is not None
        db = self.db
        wait_until_sync(
            lambda: db.scalar(
                "SELECT online FROM edge_status WHERE edge_id = :edge", {"edge": EDGE}
            ),
            timeout,
            0.1,
            "the edge online at the hub",
        )

    def edge_info(self) -> dict[str, Any]:
        assert self.db is not None
        raw = self.db.scalar("SELECT info FROM edge_status WHERE edge_id = :edge", {"edge": EDGE})
        info = json_value(raw) if raw is not None else {}
        return info if isinstance(info, dict) else {}

    def quiesce(self, timeout: float = 180.0) -> None:
        self.wait_produced(timeout)
        wait_until_sync(
            lambda: self.total("pending") == 0 and self.outbox_depth() == 0,
            timeout,
            0.2,
            f"all acked and forwarded: {self.describe()}",
        )

        def final_status() -> bool:
            depth = self.edge_info().get("outbox_depth")
            return isinstance(depth, dict) and not any(depth.values())

        wait_until_sync(final_status, 30, 0.2, "an edge status report with an empty outbox")

    def committed(self) -> list[CommittedEvent]:
        assert self.db is not None
        rows = self.db.rows("SELECT id, uid, device_id, lane, data FROM events ORDER BY id")
        return committed_events(
            (commit_id, uid, device_id, lane, (json_value(data) or {}).get("frame_seq"))
            for commit_id, uid, device_id, lane, data in rows
        )

    def verdict(self) -> Verdict:
        for fleet in self.fleets:
            fleet.stop()
        return check(
            read_produced(f.history_path for f in self.fleets),
            self.committed(),
            sum_dropped([self.edge_info()]),
        )

    def escalations(self) -> EscalationVerdict:
        """Every deadline fired once and within :data:`LATENESS_LIMIT_S`; none missed."""
        assert self.db is not None
        now = datetime.now(UTC)
        steps: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
        for case_id, at, action in self.db.rows(
            "SELECT case_id, at, action FROM case_audit WHERE actor = 'system' ORDER BY case_id, id"
        ):
            if action in DEADLINE_STEPS:
                when = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
                steps[int(case_id)].append((when.replace(tzinfo=when.tzinfo or UTC), action))
        open_cases = {
            int(case_id)
            for (case_id,) in self.db.rows(
                "SELECT id FROM cases WHERE state IN ('open', 'dispatched')"
            )
        }
        result = EscalationVerdict(cases=len(steps))
        tier = timedelta(seconds=TIER_S)
        for case_id, trail in steps.items():
            for (before, _), (after, action) in itertools.pairwise(trail):
                result.firings += 1
                lateness = (after - (before + tier)).total_seconds()
                result.lateness.append(lateness)
                result.worst_lateness_s = max(result.worst_lateness_s, lateness)
                if lateness < 0:
                    result.double_fired.append(
                        f"case {case_id}: {action} at {after:%H:%M:%S.%f}, "
                        f"{-lateness:.3f} s before its deadline (a second firing)"
                    )
                elif lateness > LATENESS_LIMIT_S:
                    result.late.append(
                        f"case {case_id}: {action} {lateness:.3f} s late (at {after:%H:%M:%S.%f})"
                    )
            last = trail[-1][0]
            if case_id in open_cases and (now - (last + tier)).total_seconds() > LATENESS_LIMIT_S:
                result.missed.append(f"case {case_id}: deadline {last + tier:%H:%M:%S} not fired")
        return result

    def doubled_notifications(self) -> list[str]:
        """(case, worker, tier) with more stream rows than the case transactions notified."""
        assert self.db is not None
        recorded = Counter[tuple[int, int, str]]()
        for case_id, worker_id, tier in self.db.rows(
            "SELECT case_id, worker_id, tier FROM case_notifications"
        ):
            recorded[(int(case_id), int(worker_id), str(tier))] += 1
        streamed = Counter[tuple[int, int, str]]()
        for case_id, worker_id, data in self.db.rows(
            "SELECT case_id, worker_id, data FROM live_feed WHERE event = 'notification'"
        ):
            if case_id is None:
                continue
            tier = str((json_value(data) or {}).get("tier"))
            streamed[(int(case_id), int(worker_id), tier)] += 1
        problems = []
        for key, n in streamed.items():
            if n <= recorded[key]:
                continue
            case_id, worker_id, tier = key
            stream_rows = self.db.rows(
                "SELECT id, at, data FROM live_feed WHERE event = 'notification' "
                "AND case_id = :case AND worker_id = :worker ORDER BY id",
                {"case": case_id, "worker": worker_id},
            )
            notified = self.db.rows(
                "SELECT notified_at FROM case_notifications WHERE case_id = :case "
                "AND worker_id = :worker AND tier = :tier ORDER BY id",
                {"case": case_id, "worker": worker_id, "tier": tier},
            )
            problems.append(
                f"case {case_id} worker {worker_id} tier {tier}: {n} on the stream, "
                f"{recorded[key]} notified; stream rows "
                + ", ".join(
                    f"{r[0]}@{r[1]} {(json_value(r[2]) or {}).get('detail', '')[:30]!r}"
                    for r in stream_rows
                )
                + "; notified at "
                + ", ".join(str(r[0]) for r in notified)
            )
        return problems

    def sos_accounting(self) -> tuple[int, int]:
        """(SOS events stored, presses counted by cases): equal when every SOS opened or
        joined exactly one case."""
        assert self.db is not None
        stored = int(
            self.db.scalar(
                "SELECT COUNT(*) FROM events WHERE kind = 'sos' AND lane = 'alarm' AND NOT refused"
            )
        )
        pressed = int(self.db.scalar("SELECT COALESCE(SUM(press_count), 0) FROM cases"))
        return stored, pressed

    def duplicate_open_cases(self) -> list[str]:
        assert self.db is not None
        return [
            f"household {h}: {n} open cases"
            for h, n in self.db.rows(
                "SELECT household_id, COUNT(*) FROM cases "
                "WHERE state IN ('open', 'dispatched', 'acknowledged') "
                "GROUP BY household_id HAVING COUNT(*) > 1"
            )
        ]
