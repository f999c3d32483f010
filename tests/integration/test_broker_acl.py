"""Acceptance: a real Mosquitto enforces the password and ACL files the hub generates.

Edge A cannot publish as edge B (PUBACK 0x87, and the hub hears nothing), cannot read B's
commands, acks or configuration, cannot take over B's session; unknown, anonymous and
wrong-password clients are refused at CONNACK; A can do all of its own traffic. Through
the real hub API (``python -m hub``): registering an edge rewrites the files and SIGHUPs
the broker so the new edge connects without a broker restart; rotating and retiring
disconnect it. A TLS listener with a CA made here admits an edge that has the CA file
and no client that lacks it.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import sqlite3
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from contract import Lane, topics
from contract.mqtt import BrokerSettings, Message, MqttConnection
from hub.provisioning.mosquitto_files import (
    alarm_accounts,
    hash_password,
    render_acl,
    render_password_file,
    write_private_file,
)
from simulators.broker import MosquittoProcess, TlsListener
from simulators.stack import Stack
from tests.conftest import wait_until, wait_until_sync

pytestmark = pytest.mark.integration

NOT_AUTHORIZED = 0x87
DEADLINE_S = 30.0
EDGE_A, EDGE_B = "edge-a", "edge-b"


class Client:
    """A paho MQTT 5 client that records what the broker answers, for assertions."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        *,
        client_id: str = "",
        tls_ca_file: Path | None = None,
        reconnect: bool = False,
    ) -> None:
        self.port = port
        self.reconnect = reconnect
        self.connacks: list[ReasonCode] = []
        self.pubacks: dict[int, ReasonCode] = {}
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.messages: list[tuple[str, bytes, bool]] = []
        self.disconnects: list[ReasonCode] = []
        self._lock = threading.Lock()
        self.paho = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{secrets.token_hex(4)}",
            protocol=paho.MQTTv5,
        )
        if username is not None:
            self.paho.username_pw_set(username, password)
        if tls_ca_file is not None:
            self.paho.tls_set(ca_certs=str(tls_ca_file), cert_reqs=ssl.CERT_REQUIRED)
        self.paho.on_connect = self._on_connect
        self.paho.on_publish = self._on_publish
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_message = self._on_message
        self.paho.on_disconnect = self._on_disconnect

    # paho's thread
    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        with self._lock:
            self.connacks.append(reason)
        if reason.is_failure and not self.reconnect:
            self.paho.disconnect()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._lock:
            self.pubacks[mid] = reason

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        with self._lock:
            self.subacks[mid] = reasons

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        with self._lock:
            self.disconnects.append(reason)

    # the test's thread
    def connect(self) -> ReasonCode:
        """The broker's CONNACK reason."""
        self.paho.connect("127.0.0.1", self.port, keepalive=30)
        self.paho.loop_start()
        return wait_until_sync(lambda: self.connacks[:1], DEADLINE_S, message="CONNACK")[0]

    def publish(self, topic: str, payload: bytes = b"x", *, retain: bool = False) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK reason (0x87: not authorised)."""
        info = self.paho.publish(topic, payload, qos=1, retain=retain)
        wait_until_sync(lambda: info.mid in self.pubacks, DEADLINE_S, message="PUBACK")
        return self.pubacks[info.mid]

    def subscribe(self, *topic_filters: str) -> list[ReasonCode]:
        _rc, mid = self.paho.subscribe([(t, 1) for t in topic_filters])
        assert mid is not None
        wait_until_sync(lambda: mid in self.subacks, DEADLINE_S, message="SUBACK")
        return self.subacks[mid]

    def topics_received(self) -> list[str]:
        with self._lock:
            return [topic for topic, _, _ in self.messages]

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def connack_of(port: int, username: str | None, password: str | None, **kw: Any) -> ReasonCode:
    client = Client(port, username, password, **kw)
    try:
        return client.connect()
    finally:
        client.close()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    """Every client a test opens, closed at the end whatever happened."""
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.close()


def connected(opened: list[Client], port: int, username: str, password: str, **kw: Any) -> Client:
    client = Client(port, username, password, **kw)
    opened.append(client)
    reason = client.connect()
    assert not reason.is_failure, f"{username}: {reason}"
    return client


class Broker:
    """A private Mosquitto on files rendered by the hub's code for hub, edge-a and edge-b."""

    def __init__(self, workdir: Path, *, tls: TlsListener | None = None) -> None:
        self.passwords = {name: secrets.token_urlsafe(32) for name in ("hub", EDGE_A, EDGE_B)}
        files = workdir / "auth"
        write_private_file(
            files / "passwd",
            # every account and its alarm link's account (issue #13), one hash for both
            render_password_file(
                alarm_accounts((n, hash_password(p)) for n, p in self.passwords.items())
            ),
        )
        write_private_file(files / "acl", render_acl("hub", [EDGE_A, EDGE_B]))
        self.process = MosquittoProcess(
            workdir / "broker",
            password_file=files / "passwd",
            acl_file=files / "acl",
            tls=tls,
            username_as_client_id=True,
        )

    @property
    def port(self) -> int:
        return self.process.port


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.process.start()
    try:
        yield b
    finally:
        b.process.stop()


def test_edge_cannot_publish_as_another_edge(broker: Broker, clients: list[Client]) -> None:
    hub = connected(clients, broker.port, "hub", broker.passwords["hub"])
    uplink = [
        topics.HUB_EVENTS_SUBSCRIPTION,  # the alarm lane is not the bulk account's to read
        topics.HUB_STATUS_SUBSCRIPTION,
        topics.HUB_COMMAND_RESULTS_SUBSCRIPTION,
    ]
    assert all(not r.is_failure for r in hub.subscribe(*uplink))
    hub_alarm = connected(clients, broker.port, "hub.alarm", broker.passwords["hub"])
    assert all(not r.is_failure for r in hub_alarm.subscribe(topics.HUB_EVENTS_SUBSCRIPTION))
    b = connected(clients, broker.port, EDGE_B, broker.passwords[EDGE_B])
    downlink = [topics.acks(EDGE_B), topics.commands(EDGE_B), topics.config(EDGE_B)]
    assert all(not r.is_failure for r in b.subscribe(*downlink, topics.HUB_STATUS))
    a = connected(clients, broker.port, EDGE_A, broker.passwords[EDGE_A])

    forged = [
        topics.events(EDGE_B, Lane.ALARM),  # B's uplink
        topics.events(EDGE_B, Lane.TELEMETRY),
        topics.status(EDGE_B),
        topics.command_results(EDGE_B),
        *downlink,  # the hub's downlink to B, and to A itself
        topics.commands(EDGE_A),
        topics.config(EDGE_A),
        topics.HUB_STATUS,  # posing as the hub
    ]
    for topic in forged:
        assert a.publish(topic, b"forged").value == NOT_AUTHORIZED, topic
    # A's alarm link may send only A's alarms and command results (issue #13).
    a_alarm = connected(clients, broker.port, "edge-a.alarm", broker.passwords[EDGE_A])
    for topic in [
        *forged,
        topics.events(EDGE_A, Lane.TELEMETRY),
        topics.events(EDGE_A, Lane.NORMAL),
        topics.status(EDGE_A),
        topics.alarm_acks(EDGE_A),
    ]:
        assert a_alarm.publish(topic, b"forged").value == NOT_AUTHORIZED, topic
    # Positive controls, after the forgeries: A's own events, and the hub's ack to B.
    assert not a.publish(topics.events(EDGE_A, Lane.TELEMETRY), b"real").is_failure
    assert not a_alarm.publish(topics.events(EDGE_A, Lane.ALARM), b"alarm").is_failure
    assert not hub.publish(topics.acks(EDGE_B), b"real").is_failure

    # The broker routes a QoS 1 message before it PUBACKs it, and every forgery was answered
    # before the real messages went out: a forgery that got through would be there first.
    wait_until_sync(lambda: hub.topics_received(), DEADLINE_S, message="A's own event")
    wait_until_sync(lambda: hub_alarm.topics_received(), DEADLINE_S, message="A's alarm")
    wait_until_sync(lambda: b.topics_received(), DEADLINE_S, message="the hub's ack to B")
    assert hub.messages == [(topics.events(EDGE_A, Lane.TELEMETRY), b"real", False)]
    assert hub_alarm.messages == [(topics.events(EDGE_A, Lane.ALARM), b"alarm", False)]
    assert b.messages == [(topics.acks(EDGE_B), b"real", False)]


def test_edge_cannot_read_another_edges_commands_acks_or_config(
    broker: Broker, clients: list[Client]
) -> None:
    hub = connected(clients, broker.port, "hub", broker.passwords["hub"])
    assert not hub.publish(topics.config(EDGE_B), b"config of B", retain=True).is_failure
    a = connected(clients, broker.port, EDGE_A, broker.passwords[EDGE_A])
    a.subscribe(
        topics.commands(EDGE_B),
        topics.acks(EDGE_B),
        topics.config(EDGE_B),
        topics.events(EDGE_B, Lane.ALARM),
        "community/v1/edge/+/commands",
        "#",
    )
    a.subscribe(topics.commands(EDGE_A))
    for topic in (topics.commands(EDGE_B), topics.acks(EDGE_B), topics.config(EDGE_B)):
        assert not hub.publish(topic, b"for B").is_failure
    assert not hub.publish(topics.commands(EDGE_A), b"for A").is_failure  # the positive control

    wait_until_sync(lambda: topics.commands(EDGE_A) in a.topics_received(), DEADLINE_S)
    assert set(a.topics_received()) == {topics.commands(EDGE_A)}
    assert all(payload == b"for A" for _, payload, _ in a.messages)


def test_unknown_anonymous_and_wrong_password_clients_are_refused(broker: Broker) -> None:
    for username, password in [
        ("stranger", secrets.token_urlsafe(16)),
        (None, None),
        (EDGE_A, broker.passwords[EDGE_B]),
        (EDGE_A, ""),
        ("hub", broker.passwords[EDGE_A]),
    ]:
        reason = connack_of(broker.port, username, password)
        assert reason.is_failure and reason.value in (0x86, NOT_AUTHORIZED), (username, reason)


def test_edge_cannot_take_over_another_edges_session(broker: Broker, clients: list[Client]) -> None:
    b = connected(clients, broker.port, EDGE_B, broker.passwords[EDGE_B], client_id="edge-edge-b")
    connected(clients, broker.port, EDGE_A, broker.passwords[EDGE_A], client_id="edge-edge-b")
    # use_username_as_clientid: A's session is "edge-a" whatever it claims; B stays on.
    assert not b.publish(topics.status(EDGE_B)).is_failure
    assert b.disconnects == []


def test_edge_can_do_all_its_own_traffic(broker: Broker, clients: list[Client]) -> None:
    hub = connected(clients, broker.port, "hub", broker.passwords["hub"])
    hub.subscribe(
        *topics.HUB_BULK_EVENTS_SUBSCRIPTIONS,
        topics.HUB_STATUS_SUBSCRIPTION,
        topics.HUB_COMMAND_RESULTS_SUBSCRIPTION,
    )
    hub_alarm = connected(clients, broker.port, "hub.alarm", broker.passwords["hub"])
    hub_alarm.subscribe(topics.HUB_ALARM_EVENTS_SUBSCRIPTION)
    assert not hub.publish(topics.HUB_STATUS, b"online", retain=True).is_failure
    assert not hub.publish(topics.config(EDGE_A), b"config of A", retain=True).is_failure

    a = connected(clients, broker.port, EDGE_A, broker.passwords[EDGE_A])
    own_downlink = [
        topics.acks(EDGE_A),
        topics.commands(EDGE_A),
        topics.config(EDGE_A),
        topics.HUB_STATUS,
    ]
    assert all(not r.is_failure for r in a.subscribe(*own_downlink))
    a_alarm = connected(clients, broker.port, "edge-a.alarm", broker.passwords[EDGE_A])
    alarm_downlink = [topics.alarm_acks(EDGE_A), topics.commands(EDGE_A), topics.HUB_STATUS]
    assert all(not r.is_failure for r in a_alarm.subscribe(*alarm_downlink))
    uplink = [topics.events(EDGE_A, lane) for lane in Lane]
    uplink += [topics.status(EDGE_A), topics.command_results(EDGE_A)]
    for topic in uplink:
        assert not a.publish(topic, retain=topic == topics.status(EDGE_A)).is_failure, topic
    for topic in (topics.events(EDGE_A, Lane.ALARM), topics.command_results(EDGE_A)):
        assert not a_alarm.publish(topic).is_failure, topic
    assert not hub.publish(topics.acks(EDGE_A)).is_failure
    assert not hub.publish(topics.commands(EDGE_A)).is_failure
    assert not hub_alarm.publish(topics.alarm_acks(EDGE_A)).is_failure
    assert not hub_alarm.publish(topics.commands(EDGE_A)).is_failure

    bulk_up = set(uplink) - {topics.events(EDGE_A, Lane.ALARM)}
    wait_until_sync(lambda: set(hub.topics_received()) == bulk_up, DEADLINE_S, message="up")
    wait_until_sync(
        lambda: set(hub_alarm.topics_received()) == {topics.events(EDGE_A, Lane.ALARM)},
        DEADLINE_S,
        message="alarms up",
    )
    wait_until_sync(
        lambda: set(a.topics_received()) == set(own_downlink), DEADLINE_S, message="down"
    )
    wait_until_sync(
        lambda: set(a_alarm.topics_received()) == set(alarm_downlink),
        DEADLINE_S,
        message="alarm link down",
    )
    retained = {topic for topic, _, retain in a.messages if retain}
    assert retained == {topics.config(EDGE_A), topics.HUB_STATUS}


# --- through the real hub API ------------------------------------------------------------


class HubWithBrokerAuth:
    """Hub process with ``broker_auth``, then the broker on the files it wrote."""

    def __init__(self, workdir: Path) -> None:
        self.stack = Stack(workdir)
        self.files = workdir / "mosquitto"

    @property
    def hub_password(self) -> str:
        return self.stack.hub_broker_password

    def start(self) -> None:
        self.stack.start_with_broker_auth(
            broker_auth={"edge_broker": {"host": "mqtt.community.example", "port": 8883}}
        )
        # The hub wrote both files at start (its own account included).
        assert (self.files / "passwd").read_text().startswith("hub:$7$101$")

    def edge_connack(self, username: str, password: str) -> ReasonCode:
        return connack_of(self.stack.broker_port, username, password)


@pytest.fixture
def hub_stack(tmp_path: Path) -> Iterator[HubWithBrokerAuth]:
    system = HubWithBrokerAuth(tmp_path)
    try:
        system.start()
        yield system
    finally:
        system.stack.stop()
        for name, proc in [("hub", system.stack.hub), *system.stack.edges.items()]:
            if proc is not None and "Traceback" in proc.log_text():
                print(f"--- {name} log ---\n{proc.log_text()[-4000:]}")


async def test_hub_api_provisions_rotates_and_retires_edges_without_broker_restart(
    hub_stack: HubWithBrokerAuth, clients: list[Client]
) -> None:
    stack = hub_stack.stack
    assert stack.broker is not None and stack.broker.process is not None
    broker_pid = stack.broker.process.pid
    refused = hub_stack.edge_connack(EDGE_A, secrets.token_urlsafe(32))
    assert refused.is_failure  # not registered yet

    async with httpx.AsyncClient(
        base_url=stack.hub_url, headers=stack.headers(), timeout=30
    ) as api:
        assert (await api.post("/api/v1/edges", json={"edge_id": "hub"})).status_code == 422
        assert (await api.post("/api/v1/edges", json={"edge_id": "a/b"})).status_code == 422
        response = await api.post("/api/v1/edges", json={"edge_id": EDGE_A, "note": "3号楼"})
        assert response.status_code == 201, response.text
        assert response.headers["cache-control"] == "no-store"
        issued = response.json()
        assert issued["username"] == EDGE_A and issued["broker_reloaded"] is True
        assert issued["broker"] == {"host": "mqtt.community.example", "port": 8883, "tls": True}
        password = issued["password"]
        again = await api.post("/api/v1/edges", json={"edge_id": EDGE_A})
        assert again.status_code == 409

        # A real edge agent with the issued credentials (the password in its environment).
        stack.start_edge(
            EDGE_A,
            [],
            broker={"host": "127.0.0.1", "port": stack.broker_port, "username": EDGE_A},
            extra_env={"EDGE__BROKER__PASSWORD": password},
        )

        async def edge_online() -> bool:
            rows = (await api.get("/api/v1/edges")).json()
            return any(r["edge_id"] == EDGE_A and r["online"] for r in rows)

        # Its status went up (its ACL) and the hub heard it (the hub's account and ACL).
        await wait_until(edge_online, DEADLINE_S, interval=0.2, message="edge-a online at hub")

        listed = (await api.get("/api/v1/edges/registered")).json()
        assert [(e["edge_id"], e["active"], e["note"]) for e in listed] == [(EDGE_A, True, "3号楼")]
        assert "password" not in str(listed) and "$7$" not in str(listed)

        rotated = await api.post(f"/api/v1/edges/{EDGE_A}/rotate")
        assert rotated.status_code == 200, rotated.text
        new_password = rotated.json()["password"]
        assert new_password != password
        stack.edges[EDGE_A].stop()  # it holds the old password, which no longer works
        await wait_until(
            lambda: hub_stack.edge_connack(EDGE_A, password).is_failure,
            DEADLINE_S,
            interval=0.2,
            message="old password refused",
        )
        edge = connected(clients, stack.broker_port, EDGE_A, new_password)

        retired = await api.delete(f"/api/v1/edges/{EDGE_A}")
        assert retired.status_code == 200, retired.text
        assert retired.json()["broker_reloaded"] is True
        await wait_until(lambda: edge.disconnects, DEADLINE_S, message="retired edge kicked off")
        assert hub_stack.edge_connack(EDGE_A, new_password).is_failure
        assert (await api.delete(f"/api/v1/edges/{EDGE_A}")).status_code == 404
        assert (await api.get("/api/v1/edges/registered")).json() == []

    assert stack.broker.process is not None and stack.broker.process.pid == broker_pid
    # The passwords exist nowhere but in the replies: not in files, logs or the database.
    db = sqlite3.connect(stack.workdir / "hub" / "hub.db")
    try:
        dump = "\n".join(db.iterdump())
        audit = db.execute("SELECT action FROM audit_log WHERE target_type = 'edge' ORDER BY id")
        actions = [action for (action,) in audit]
    finally:
        db.close()
    assert actions == ["edge.register", "edge.rotate_credentials", "edge.retire"]
    texts = [
        dump,
        stack.hub.log_text() if stack.hub else "",
        (hub_stack.files / "passwd").read_text(),
        (hub_stack.files / "acl").read_text(),
        stack.broker.log_path.read_text(errors="replace"),
        *(p.log_text() for p in stack.edges.values()),
    ]
    for secret in (password, new_password, hub_stack.hub_password):
        assert not any(secret in text for text in texts)


# --- TLS ---------------------------------------------------------------------------------


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost, with openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run(
        "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=community test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    run("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    extensions = directory / "server.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    run(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extensions),
    )  # fmt: skip
    return ca, cert, key


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Broker, Path]]:
    ca, cert, key = make_ca_and_server_cert(tmp_path / "pki")
    b = Broker(tmp_path, tls=TlsListener(cafile=ca, certfile=cert, keyfile=key))
    b.process.start()
    try:
        yield b, ca
    finally:
        b.process.stop()


async def test_tls_listener_admits_an_edge_with_the_ca_and_no_client_without_it(
    tls_broker: tuple[Broker, Path],
) -> None:
    broker, ca = tls_broker
    tls_port = broker.process.tls_port
    assert tls_port is not None

    # The edge's own connection code, configured the way an operator configures an edge.
    received: list[Message] = []
    settings = BrokerSettings(
        host="127.0.0.1",
        port=tls_port,
        username=EDGE_A,
        password=SecretStr(broker.passwords[EDGE_A]),
        tls_ca_file=str(ca),
    )
    edge = MqttConnection(
        settings,
        client_id=f"edge-{EDGE_A}",
        subscriptions=[(topics.commands(EDGE_A), 1)],
        on_message=received.append,
        persistent_session=False,
    )
    await edge.start()
    try:
        await wait_until(lambda: edge.connected, DEADLINE_S, message="edge connected over TLS")
        hub = Client(tls_port, "hub", broker.passwords["hub"], tls_ca_file=ca)
        try:
            assert not (await asyncio.to_thread(hub.connect)).is_failure

            async def delivered() -> bool:
                # Repeated until the edge's subscription (made on CONNACK) is in place.
                await asyncio.to_thread(hub.publish, topics.commands(EDGE_A), b"over TLS")
                return bool(received)

            await wait_until(delivered, DEADLINE_S, interval=0.2, message="command over TLS")
        finally:
            hub.close()
    finally:
        await edge.stop()

    # Without our CA (the system's trust store only), the handshake fails. A plain ssl
    # client, because paho leaks the socket of a failed handshake (a ResourceWarning here).
    context = ssl.create_default_context()
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection(("127.0.0.1", tls_port), timeout=DEADLINE_S) as raw,
        context.wrap_socket(raw, server_hostname="localhost"),
    ):
        pass
    # And the password still matters over TLS.
    wrong = connack_of(tls_port, EDGE_A, broker.passwords[EDGE_B], tls_ca_file=ca)
    assert wrong.is_failure
