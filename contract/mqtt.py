"""The one bridge between paho-mqtt's network thread and asyncio, used by edge and hub.

paho runs its network loop in a thread of its own (``loop_start``) and calls our callbacks
there. Everything that crosses into the event loop goes through ``loop.call_soon_threadsafe``
in this module and nowhere else. paho's built-in reconnect (exponential, capped by
``reconnect_max_s``) is kept: it also retries a first connection that failed. With a
clustered broker (``failover`` nodes), each lost or refused connection moves on to the next
node in turn, so the death of the node a client was on costs one reconnect, not an outage
(docs/scaling.md, "Broker cluster").

``manual_ack=True`` (the hub) means a QoS 1 message is PUBACKed only when the caller says
so, after its database commit; with a persistent session the broker then redelivers what
a crashed hub never committed.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, Field, SecretStr

log = logging.getLogger(__name__)


class BrokerNode(BaseModel):
    """One more node of a clustered broker (same account, TLS and session as the first)."""

    model_config = {"extra": "forbid"}

    host: str = Field(min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)


class BrokerSettings(BaseModel):
    """Where and how to reach an MQTT broker. The password comes from the environment."""

    model_config = {"extra": "forbid"}

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    #: Other nodes of the same broker cluster, tried in turn after ``host:port`` whenever a
    #: connection is lost or refused. Empty (one broker): nothing changes.
    failover: list[BrokerNode] = Field(default_factory=list, max_length=16)
    username: str | None = None
    password: SecretStr | None = None
    tls_ca_file: str | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    reconnect_max_s: int = Field(default=5, ge=1, le=300)

    def nodes(self) -> list[tuple[str, int]]:
        """Every node to try, ``host:port`` first."""
        return [(self.host, self.port), *((n.host, n.port) for n in self.failover)]


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    received: float = 0.0  # time.monotonic() when paho's thread handed it over


class MqttConnection:
    """A paho client whose callbacks land in the asyncio loop.

    ``on_message`` and ``on_connection_change`` are called in the event loop thread.
    Subscriptions are (re)made on every connect, so a broker that lost its state is fine.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        client_id: str,
        *,
        subscriptions: list[tuple[str, int]],
        on_message: Callable[[Message], None],
        on_connection_change: Callable[[bool], None] | None = None,
        persistent_session: bool = True,
        manual_ack: bool = False,
        will: tuple[str, bytes, int, bool] | None = None,
        on_connect_publish: Callable[[], list[tuple[str, bytes, int, bool]]] | None = None,
        resent_by_owner: Callable[[str], bool] | None = None,
    ) -> None:
        self._settings = settings
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._on_connection_change = on_connection_change
        self._on_connect_publish = on_connect_publish
        self._resent_by_owner = resent_by_owner
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = False
        self._nodes = settings.nodes()
        self._node = 0  # index into _nodes of the node connected to or being tried
        self._stopping = False
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not persistent_session,
            protocol=paho.MQTTv311,
            manual_ack=manual_ack,
        )
        # Our own bound on what paho keeps in memory is the caller's window; paho's
        # in-flight limit only needs to be large enough not to become the bottleneck.
        self._client.max_inflight_messages_set(100)
        self._client.reconnect_delay_set(1, settings.reconnect_max_s)
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else None
            self._client.username_pw_set(settings.username, password)
        if settings.tls_ca_file:
            self._client.tls_set(ca_certs=settings.tls_ca_file, cert_reqs=ssl.CERT_REQUIRED)
        if will is not None:
            topic, payload, qos, retain = will
            self._client.will_set(topic, payload, qos, retain)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_connect_fail = self._handle_connect_fail
        self._client.on_message = self._handle_message

    @property
    def node(self) -> str:
        """``host:port`` of the broker node connected to (or tried next)."""
        host, port = self._nodes[self._node]
        return f"{host}:{port}"

    # -- lifecycle (event loop side) --------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        host, port = self._nodes[self._node]
        self._client.connect_async(host, port, keepalive=self._settings.keepalive_s)
        self._client.loop_start()

    async def stop(self, *, final_publish: tuple[str, bytes, int, bool] | None = None) -> None:
        if final_publish is not None and self.connected:
            info = self._client.publish(*final_publish)
            await asyncio.to_thread(info.wait_for_publish, 2.0)
        self._stopping = True
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Queue a message in paho. Returns False when not connected (caller retries later)."""
        if not self.connected:
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == paho.MQTT_ERR_SUCCESS

    def link_up(self) -> bool:
        """Whether paho holds an accepted connection now; safe from any thread (unlike
        :attr:`connected`, which the event loop learns a moment later)."""
        return bool(self._client.is_connected())

    def ack(self, message: Message) -> None:
        """PUBACK a message received with manual_ack (after the caller committed it)."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    # -- paho thread side ---------------------------------------------------------------
    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _handle_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT connect to %s refused: %s", self.node, reason)
            return
        if self._resent_by_owner is not None:
            self._discard_owner_resends(client)
        for topic, qos in self._subscriptions:
            client.subscribe(topic, qos)
        if self._on_connect_publish is not None:
            for topic, payload, qos, retain in self._on_connect_publish():
                client.publish(topic, payload, qos, retain)
        self._post(self._set_connected, True, self.node)

    def _discard_owner_resends(self, client: paho.Client) -> None:
        """Drop the QoS 1 messages the owner resends itself from paho's session store.

        On reconnect paho redelivers every un-PUBACKed QoS 1 message by itself, right after
        this callback. A broker that crashed without persistence has lost messages it had
        already PUBACKed, so paho's redelivery of the *later* ones would reach the hub ahead
        of the owner's own go-back-N resend of the lost *earlier* ones, and a lane's order
        would break (found by the fault soak). The edge's uplink resends every unacked
        batch in order after a reconnect anyway, so its batches are dropped here. paho has
        no public API for this; its outgoing-message table and lock are used directly.
        """
        predicate = self._resent_by_owner
        assert predicate is not None
        with client._out_message_mutex:
            stale = [mid for mid, m in client._out_messages.items() if predicate(m.topic)]
            for mid in stale:
                del client._out_messages[mid]
        if stale:
            log.info("MQTT: %d unacknowledged batch(es) left to the owner's resend", len(stale))

    def _handle_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        lost = self.node
        self._next_node()
        self._post(self._set_connected, False, lost)

    def _handle_connect_fail(self, _c: paho.Client, _u: Any) -> None:
        self._next_node()

    def _next_node(self) -> None:
        """Point paho's own reconnect at the next node of the cluster (paho's thread).

        ``connect_async`` only records the address while the socket is closed (as it is in
        these callbacks); paho's loop then reconnects there after its backoff. Never after
        our own ``stop()``: that would undo the disconnect.
        """
        if len(self._nodes) < 2 or self._stopping:
            return
        self._node = (self._node + 1) % len(self._nodes)
        host, port = self._nodes[self._node]
        self._client.connect_async(host, port, keepalive=self._settings.keepalive_s)

    def _handle_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        message = Message(
            msg.topic, bytes(msg.payload), msg.qos, msg.mid, bool(msg.retain), time.monotonic()
        )
        self._post(self._on_message, message)

    # -- event loop side ------------------------------------------------------------------
    def _set_connected(self, value: bool, node: str) -> None:
        if value == self.connected:
            return
        self.connected = value
        if value:
            log.info("MQTT connected to %s", node)
        else:
            log.warning("MQTT connection to %s lost", node)
        if self._on_connection_change is not None:
            self._on_connection_change(value)
