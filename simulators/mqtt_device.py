"""A JSON-over-MQTT device on the edge's local broker: the base of the door and locker
simulators.

Why its own paho client (MQTT 5) instead of ``contract.mqtt.MqttConnection`` (3.1.1): a
simulated device must be able to show what the broker *answered*. With MQTT 5 Mosquitto
refuses a publish outside the ACL with PUBACK 0x87, so a test (or a community simulator)
can prove that a device cannot speak for another one, and wait for its own messages to
be accepted instead of sleeping. Every publish is QoS 1 and returns the PUBACK reason.

The device answers each command on its command topic with
``{"type": "command_result", "command_id": …, "status": "ok"|"error", "detail": …}`` on
its event topic, unless :attr:`JsonMqttDevice.silent` is set (a hung device: the edge's
command must time out). Subclasses decide what a command does in :meth:`on_command`.

paho's callbacks run in its network thread; they only hand over to the event loop
(``call_soon_threadsafe``) or fill a lock-protected table.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from typing import Any, Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from contract.envelope import format_time, utc_now

log = logging.getLogger(__name__)

NOT_AUTHORIZED = 0x87  # PUBACK reason of a publish outside the ACL (MQTT 5)
DEFAULT_EVENT_TOPIC = "devices/{address}/events"
DEFAULT_COMMAND_TOPIC = "devices/{address}/commands"
CONNECT_TIMEOUT_S = 10.0
PUBACK_TIMEOUT_S = 10.0


class DeviceRefused(ConnectionError):
    """The broker refused the device's connection (bad credentials) or subscription."""


class JsonMqttDevice:
    """One simulated device. ``await start()``, trigger events, ``await stop()``."""

    #: The JSON key that names an event's type (the profile's ``match.field``).
    TYPE_KEY = "type"
    #: The JSON key that names a command in the profile's payload templates.
    COMMAND_KEY = "cmd"
    #: Topic templates of the shipped profile (``device_profiles/``); overridable.
    EVENT_TOPIC = DEFAULT_EVENT_TOPIC
    COMMAND_TOPIC = DEFAULT_COMMAND_TOPIC

    def __init__(
        self,
        host: str,
        port: int,
        *,
        address: str,
        username: str | None = None,
        password: str | None = None,
        event_topic: str | None = None,
        command_topic: str | None = None,
        heartbeat_s: float | None = None,
        client_id: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.address = address
        self.event_topic = (event_topic or self.EVENT_TOPIC).replace("{address}", address)
        self.command_topic = (command_topic or self.COMMAND_TOPIC).replace("{address}", address)
        self.heartbeat_s = heartbeat_s
        self.silent = False  # True: commands are received but never answered
        self.commands: list[dict[str, Any]] = []  # every command received, in order
        self.results: list[dict[str, Any]] = []  # every command result sent
        self.published: list[tuple[str, dict[str, Any] | bytes, int]] = []  # (topic, msg, rc)
        self.overheard: list[tuple[str, bytes]] = []  # messages on topics of eavesdrop()
        self.on_change: Callable[[str], None] | None = None  # e.g. print for the CLI
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.RLock()
        self._pubacks: dict[int, asyncio.Future[int]] = {}
        self._early_pubacks: dict[int, int] = {}  # PUBACKs that beat the future's creation
        self._subacks: dict[int, asyncio.Future[list[int]]] = {}
        self._early_subacks: dict[int, list[int]] = {}
        self._connack: asyncio.Future[int] | None = None
        self._connected_once = False  # paho's thread only
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{username or 'device'}-{secrets.token_hex(3)}",
            protocol=paho.MQTTv5,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._handle_connect
        self._client.on_publish = self._handle_publish
        self._client.on_subscribe = self._handle_subscribe
        self._client.on_message = self._handle_message

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect, subscribe to the command topic and start the heartbeats.

        Raises DeviceRefused when the broker refuses the credentials or the subscription.
        """
        self._loop = asyncio.get_running_loop()
        self._connack = self._loop.create_future()
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        try:
            code = await asyncio.wait_for(self._connack, CONNECT_TIMEOUT_S)
            if code != 0:
                raise DeviceRefused(f"{self.address}: CONNACK refused (reason 0x{code:02X})")
            granted = await self._subscribe(self.command_topic)
            if any(c >= 0x80 for c in granted):
                raise DeviceRefused(f"{self.address}: subscription to {self.command_topic} refused")
        except BaseException:
            await self.stop()
            raise
        if self.heartbeat_s:
            self._heartbeat_task = asyncio.create_task(
                self._heartbeats(self.heartbeat_s), name=f"{self.address} heartbeats"
            )

    async def stop(self) -> None:
        """Stop heartbeats and disconnect (a clean disconnect: no last will)."""
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
            self._heartbeat_task = None
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    def stop_heartbeats(self) -> None:
        """Fall silent without disconnecting (a hung device)."""
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None

    # -- publishing -----------------------------------------------------------------------
    async def publish_raw(self, payload: bytes, topic: str | None = None) -> int:
        """Publish bytes at QoS 1 to ``topic`` (default: own event topic); the PUBACK
        reason (0: accepted, 0x87: not authorised)."""
        return await self._publish(topic or self.event_topic, payload, payload)

    async def publish_json(self, message: dict[str, Any], topic: str | None = None) -> int:
        data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
        return await self._publish(topic or self.event_topic, data, message)

    async def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Publish one event of type ``kind``; returns the message sent.

        Every event carries a fresh ``event_id`` (the profile's dedupe key) and the
        device's clock as ``ts``. Raises DeviceRefused if the broker did not accept it.
        """
        message: dict[str, Any] = {
            self.TYPE_KEY: kind,
            "event_id": f"{self.address}-{secrets.token_hex(6)}",
            "ts": format_time(utc_now()),
            **fields,
        }
        code = await self.publish_json(message)
        if code >= 0x80:  # 0x10 "no matching subscribers" is a success
            raise DeviceRefused(f"{self.address}: {kind} refused by the broker (0x{code:02X})")
        return message

    async def heartbeat(self) -> dict[str, Any]:
        return await self.event("heartbeat")

    async def _publish(self, topic: str, data: bytes, logged: dict[str, Any] | bytes) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        with self._lock:
            info = self._client.publish(topic, data, qos=1)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                raise DeviceRefused(f"{self.address}: not connected (paho rc {info.rc})")
            early = self._early_pubacks.pop(info.mid, None)
            if early is None:
                self._pubacks[info.mid] = future
            else:
                future.set_result(early)
        try:
            code = await asyncio.wait_for(future, PUBACK_TIMEOUT_S)
        finally:
            with self._lock:
                self._pubacks.pop(info.mid, None)
        self.published.append((topic, logged, code))
        return code

    async def _subscribe(self, topic: str) -> list[int]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        with self._lock:
            _rc, mid = self._client.subscribe(topic, qos=1)
            if mid is None:
                raise DeviceRefused(f"{self.address}: not connected")
            early = self._early_subacks.pop(mid, None)
            if early is None:
                self._subacks[mid] = future
            else:
                future.set_result(early)
        return await asyncio.wait_for(future, CONNECT_TIMEOUT_S)

    async def eavesdrop(self, topic: str) -> list[int]:
        """Also subscribe to ``topic`` (a compromised device trying to read another's
        commands); the SUBACK reason codes. What arrives is kept in :attr:`overheard`."""
        return await self._subscribe(topic)

    async def _heartbeats(self, interval_s: float) -> None:
        while True:
            try:
                await self.heartbeat()
            except (DeviceRefused, TimeoutError) as err:
                log.warning("%s: heartbeat not sent: %s", self.address, err)
            await asyncio.sleep(interval_s)

    # -- commands -------------------------------------------------------------------------
    def on_command(self, name: str, command: dict[str, Any]) -> tuple[bool, str]:
        """Carry out one command; (ok, detail). Subclasses override it."""
        return False, f"unknown command {name!r}"

    def _command(self, payload: bytes) -> None:
        try:
            command = json.loads(payload)
        except ValueError:
            log.warning("%s: command that is not JSON ignored", self.address)
            return
        if not isinstance(command, dict):
            return
        self.commands.append(command)
        if self.silent:
            return
        name = str(command.get(self.COMMAND_KEY) or command.get(self.TYPE_KEY))
        try:
            ok, detail = self.on_command(name, command)
        except (KeyError, TypeError, ValueError) as err:
            ok, detail = False, f"bad command: {err}"
        result = {
            self.TYPE_KEY: "command_result",
            "command_id": command.get("command_id"),
            "status": "ok" if ok else "error",
            "detail": detail,
        }
        self.results.append(result)
        task = asyncio.create_task(self.publish_json(result), name=f"{self.address} result")
        task.add_done_callback(_log_failure)

    def changed(self, text: str) -> None:
        if self.on_change is not None:
            self.on_change(f"{self.address}: {text}")

    # -- paho's thread ----------------------------------------------------------------------
    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _handle_connect(
        self, _c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        code = int(reason.value)
        self._post(self._set_connack, code)
        if code != 0:
            self._client.disconnect()  # no reconnect loop with refused credentials
        elif self._connected_once:
            # A reconnect after the first connection: subscribe again.
            self._client.subscribe(self.command_topic, qos=1)
        else:
            self._connected_once = True  # the first subscription is start()'s

    def _set_connack(self, code: int) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(code)

    def _handle_publish(
        self, _c: paho.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any
    ) -> None:
        with self._lock:
            future = self._pubacks.pop(mid, None)
            if future is None:
                self._early_pubacks[mid] = int(reason.value)
                return
        self._post(_resolve, future, int(reason.value))

    def _handle_subscribe(
        self, _c: paho.Client, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        codes = [int(r.value) for r in reasons]
        with self._lock:
            future = self._subacks.pop(mid, None)
            if future is None:
                self._early_subacks[mid] = codes
                return
        self._post(_resolve, future, codes)

    def _handle_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == self.command_topic:
            self._post(self._command, bytes(msg.payload))
        else:
            self._post(self.overheard.append, (msg.topic, bytes(msg.payload)))


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("command result not sent: %s", task.exception())


def password_from_env(name: str | None) -> str | None:
    """The password in environment variable ``name`` (never on the command line)."""
    if name is None:
        return None
    value = os.environ.get(name)
    if value is None:
        raise SystemExit(f"environment variable {name} (the device's password) is not set")
    return value
