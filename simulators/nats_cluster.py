"""A private NATS cluster speaking MQTT, for the broker-cluster trial (docs/scaling.md).

Why NATS and not RabbitMQ (both are Debian packages here; EMQX is not): RabbitMQ 3.10
keeps retained messages on the node that received them and never delivers them to a
wildcard subscription, and the hub learns every edge's status from a retained message
through ``community/v1/edge/+/status``; NATS keeps MQTT sessions, retained messages and
QoS 1 messages in JetStream streams replicated over three nodes, and three nodes of it
start in seconds.

Each node has its own ports (client, cluster routes, MQTT, HTTP monitoring), server name
and JetStream directory under ``workdir``; nothing is shared with the machine's own NATS.
Accounts come from the caller: no ``no_auth_user``, so an MQTT client without a valid
username and password is refused. Permissions are NATS subjects; MQTT topics map to them
as ``/`` → ``.``, ``+`` → ``*``, ``#`` → ``>`` (:func:`mqtt_to_subject`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from simulators.broker import free_port, wait_for_port

#: NATS 2.9 delivers QoS 1 messages to an MQTT client through an internal subscription on
#: ``$MQTT.sub.<id>``; a user with subscribe permissions needs it allowed (later versions
#: add it themselves). An MQTT client cannot subscribe to it: such topics are ignored.
QOS1_DELIVERY = "$MQTT.sub.>"


def find_nats_server() -> str:
    found = shutil.which("nats-server") or (
        "/usr/bin/nats-server" if Path("/usr/bin/nats-server").exists() else None
    )
    if found is None:
        raise RuntimeError("nats-server not found: install it (apt-get install nats-server)")
    return found


def mqtt_to_subject(topic: str) -> str:
    """An MQTT topic or filter as the NATS subject its permission is written against."""
    if "." in topic or " " in topic:
        raise ValueError(f"topic {topic!r}: '.' and ' ' need NATS's escaping, not done here")
    parts = ["*" if p == "+" else ">" if p == "#" else p for p in topic.split("/")]
    return ".".join(parts)


@dataclass(frozen=True, slots=True)
class NatsUser:
    """An account: what it may publish and subscribe to, as MQTT topics (``None``: all)."""

    name: str
    password: str
    publish: tuple[str, ...] | None = None
    subscribe: tuple[str, ...] | None = None
    mqtt_only: bool = True

    def render(self) -> str:
        permissions = []
        for verb, topics in (("publish", self.publish), ("subscribe", self.subscribe)):
            if topics is not None:
                allowed = [mqtt_to_subject(t) for t in topics]
                if verb == "subscribe":
                    allowed.append(QOS1_DELIVERY)
                subjects = ", ".join(json.dumps(s) for s in allowed)
                permissions.append(f"{verb}: {{ allow: [{subjects}] }}")
        lines = [f"user: {json.dumps(self.name)}", f"password: {json.dumps(self.password)}"]
        if permissions:
            lines.append("permissions: { " + ", ".join(permissions) + " }")
        if self.mqtt_only:
            lines.append('allowed_connection_types: ["MQTT"]')
        return "{ " + ", ".join(lines) + " }"


@dataclass
class NatsNode:
    name: str
    workdir: Path
    client_port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> NatsNode:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [find_nats_server(), "-c", str(self.config_path)], stdout=log, stderr=log
        )
        log.close()
        wait_for_port(self.mqtt_port, 30)
        return self

    def kill(self) -> None:
        """SIGKILL: a node that dies without a word to its peers or clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def healthy(self) -> bool:
        """JetStream on this node is current with the cluster (the monitor's ``/healthz``)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}/healthz", timeout=1
            ) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False


class NatsCluster:
    """``size`` nodes routed to each other, JetStream on, MQTT on each node's own port."""

    def __init__(self, workdir: Path, users: list[NatsUser], *, size: int = 3) -> None:
        self.workdir = workdir
        self.users = users
        self.nodes = [NatsNode(f"n{i + 1}", workdir) for i in range(size)]

    def write_configs(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(f"nats://127.0.0.1:{n.cluster_port}" for n in self.nodes)
        users = ",\n    ".join(u.render() for u in self.users)
        for node in self.nodes:
            text = f"""\
server_name: {node.name}
listen: 127.0.0.1:{node.client_port}
http: 127.0.0.1:{node.http_port}
jetstream {{ store_dir: "{self.workdir / node.name}", max_memory_store: 64MB, max_file_store: 2GB }}
cluster {{ name: community, listen: 127.0.0.1:{node.cluster_port}, routes: [{routes}] }}
# ack_wait: a QoS 1 message a subscriber has not PUBACKed is sent again after this long.
mqtt {{ listen: 127.0.0.1:{node.mqtt_port}, ack_wait: "10s", max_ack_pending: 1024 }}
authorization {{
  users: [
    {users}
  ]
}}
"""
            node.config_path.write_text(text)
            node.config_path.chmod(0o600)  # it holds the passwords

    def start(self, timeout_s: float = 60.0) -> NatsCluster:
        self.write_configs()
        for node in self.nodes:
            node.start()
        self.wait_healthy(timeout_s)
        return self

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(n.healthy() for n in self.nodes if n.running):
                return
            time.sleep(0.2)
        raise TimeoutError(f"NATS cluster not healthy after {timeout_s} s (logs in {self.workdir})")

    def mqtt_nodes(self, first: int = 0) -> list[tuple[str, int]]:
        """Every node's MQTT address, starting at ``first`` (how a client is given them)."""
        order = self.nodes[first:] + self.nodes[:first]
        return [("127.0.0.1", n.mqtt_port) for n in order]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
