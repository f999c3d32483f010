"""The JSON-over-MQTT devices of the edge (face-recognition doors, parcel lockers).

They talk to the edge's *local* Mosquitto, not to the hub's broker: each device has its own
account there and may publish only its own event topic (``edge.local_broker`` writes the
password file and ACL). This driver holds one connection to that broker, subscribed with
one wildcard per profile event-topic template, and maps every message through its
device's profile (``JsonEventRule``: match, typed fields with limits, dedupe key).

**Nothing is lost, nothing is dropped silently.**

* Record before acknowledging: the subscription is QoS 1 with a persistent session and
  manual acks (as the hub's ingest), and a message is PUBACKed only after
  :meth:`EventSink.record` returned, i.e. the event is durably in the outbox. If the edge
  dies in between, the broker redelivers the message to the next run (same client id);
  the profile's dedupe field (``event_id``) keeps a redelivery that *was* stored from
  becoming a second event. A record that fails (disk full) is retried, the message held
  unacknowledged meanwhile; the broker's in-flight limit is the backpressure.
* A message that is not JSON, not an object, matches no event rule or breaks a field's
  type or limits is *quarantined*: counted per reason, logged at most once a minute per
  device, and recorded as a ``device.quarantined`` event (normal lane, data
  ``{device_id, topic, reason, detail, payload}`` with the payload cut to 1 KiB) so the hub
  sees a misbehaving device. A device that sends garbage in a loop must not fill the
  outbox: beyond :data:`QUARANTINE_EVENTS_PER_MIN` a minute per device the rest is only
  counted, and the next recorded one says how many were left out (``suppressed``).
* A message on a topic that belongs to no configured device is counted and logged.

Records of different messages run concurrently (the outbox commits in groups, so awaiting
each in turn would cap the driver at one message per group commit) but start in arrival
order, bounded by ``max_in_flight``.

**Commands** (``open_door``, ``set_mode``, ``open_compartment`` …): the profile's payload
template is rendered with the checked arguments and a fresh ``command_id``, published to
the device's command topic, and the device's ``{"type": "command_result", "command_id",
"status", "detail"}`` on its event topic is awaited up to the command's
``result_timeout_s``: ``ok`` / ``device_error`` / ``timeout``; arguments that do not fit
the profile are ``rejected`` before anything is published.

**Liveness**: every good message from a device (an event or a command result) is
``supervisor.heard``; devices whose profile declares a heartbeat are watched, so one that
falls silent for ``offline_after`` heartbeat intervals becomes ``device.offline``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contract import Lane
from contract.envelope import format_time, utc_now
from contract.mqtt import BrokerSettings, Message, MqttConnection
from edge.command_deadline import CommandDeadline
from edge.drivers.base import CommandOutcome, DeviceEntry
from edge.errors import OutboxError
from edge.sink import EventSink
from edge.supervision import Supervisor
from profiles.errors import MappingError
from profiles.json_rules import CommandReply, lookup, parse_command_reply
from profiles.transports import MqttTransport

log = logging.getLogger(__name__)

QUARANTINED = "device.quarantined"
LOG_INTERVAL_S = 60.0  # at most one log line per device and minute for bad input
QUARANTINE_EVENTS_PER_MIN = 10  # per device; the rest is counted only
MAX_PAYLOAD_BYTES = 65_536  # a door or locker message is a few hundred bytes
QUARANTINE_PAYLOAD_BYTES = 1024  # what a device.quarantined event keeps of the payload
RECORD_RETRY_FIRST_S = 0.1
RECORD_RETRY_MAX_S = 5.0


class _Quarantine(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class _DeviceState:
    entry: DeviceEntry
    transport: MqttTransport
    event_topic: str
    command_topic: str
    events: int = 0
    duplicates: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    last_seen: datetime | None = None
    # quarantine events recorded in the current minute, and those only counted since
    window_start: float = float("-inf")
    window_recorded: int = 0
    suppressed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "duplicates": self.duplicates,
            "quarantined": dict(self.quarantined),
            "last_seen": format_time(self.last_seen) if self.last_seen else None,
        }


@dataclass(frozen=True, slots=True)
class _Work:
    """What one message becomes: an event (or a quarantine record) to store, then ack."""

    message: Message
    device: _DeviceState
    kind: str
    lane: Lane
    data: dict[str, Any]
    dedupe_key: str | None = None
    quarantine_reason: str | None = None


class MqttDeviceDriver:
    """Every MQTT device of the edge, on one connection to the local broker."""

    name = "mqtt"

    def __init__(
        self,
        settings: BrokerSettings,
        devices: Sequence[DeviceEntry],
        sink: EventSink,
        supervisor: Supervisor,
        *,
        client_id: str | None = None,
        max_in_flight: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._supervisor = supervisor
        self._clock = clock
        self._devices: dict[str, _DeviceState] = {}
        self._by_topic: dict[str, _DeviceState] = {}
        subscriptions: dict[str, int] = {}
        for entry in devices:
            transport = entry.profile.transport
            if not isinstance(transport, MqttTransport):
                raise TypeError(f"{entry.device_id}: profile transport is not mqtt")
            state = _DeviceState(
                entry,
                transport,
                transport.event_topic_for(entry.address),
                transport.command_topic_for(entry.address),
            )
            if entry.device_id in self._devices or state.event_topic in self._by_topic:
                raise ValueError(f"{entry.device_id}: device id or event topic listed twice")
            self._devices[entry.device_id] = state
            self._by_topic[state.event_topic] = state
            sub = transport.event_subscription
            subscriptions[sub] = max(subscriptions.get(sub, 0), transport.qos)
            supervision = entry.profile.supervision
            if supervision.heartbeat_interval_s is not None:
                supervisor.watch(
                    entry.device_id, supervision.heartbeat_interval_s, supervision.offline_after
                )
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: dict[str, tuple[str, asyncio.Future[CommandReply]]] = {}
        self._counts: Counter[str] = Counter()
        self._quarantined: Counter[str] = Counter()
        self._commands: Counter[str] = Counter()
        self._last_logged: dict[tuple[str, str], float] = {}
        # A stable client id and a persistent session: what was delivered to a run that
        # died before recording it is redelivered to the next one.
        self._conn = MqttConnection(
            settings,
            client_id or f"{settings.username or 'edge'}-devices",
            subscriptions=sorted(subscriptions.items()),
            on_message=self._queue.put_nowait,
            persistent_session=True,
            manual_ack=True,
        )

    # -- DeviceDriver -----------------------------------------------------------------------
    def knows(self, device_id: str) -> bool:
        return device_id in self._devices

    @property
    def connected(self) -> bool:
        return self._conn.connected

    async def run(self) -> None:
        """Connect to the local broker and handle messages until cancelled."""
        await self._conn.start()
        try:
            async with asyncio.TaskGroup() as group:
                while True:
                    message = await self._queue.get()
                    work = self._triage_safely(message)
                    if work is None:
                        self._conn.ack(message)
                        continue
                    await self._slots.acquire()
                    # Tasks start in creation order, so records begin in arrival order.
                    group.create_task(self._record_then_ack(work))
        finally:
            await self._conn.stop()

    async def command(
        self,
        device_id: str,
        name: str,
        args: dict[str, Any],
        *,
        deadline: CommandDeadline | None = None,
    ) -> CommandOutcome:
        outcome = await self._command(device_id, name, args, deadline)
        self._commands[outcome[0]] += 1
        return outcome

    def stats(self) -> dict[str, Any]:
        """Counters for edge status and metrics; plain JSON-able values."""
        return {
            "connected": self._conn.connected,
            "received": self._counts["received"],
            "events": self._counts["events"],
            "duplicates": self._counts["duplicates"],
            "quarantined": dict(self._quarantined),
            "quarantine_suppressed": self._counts["quarantine_suppressed"],
            "unknown_topic": self._counts["unknown_topic"],
            "command_results": self._counts["command_results"],
            "late_results": self._counts["late_results"],
            "record_retries": self._counts["record_retries"],
            "internal_errors": self._counts["internal_errors"],
            "commands": dict(self._commands),
            "devices": {d: s.as_dict() for d, s in sorted(self._devices.items())},
        }

    # -- messages ---------------------------------------------------------------------------
    def _triage_safely(self, message: Message) -> _Work | None:
        """:meth:`_triage`, but a bug of ours quarantines the message instead of ending
        the driver (and with it every door and locker)."""
        try:
            return self._triage(message)
        except Exception as err:
            self._counts["internal_errors"] += 1
            log.exception("%s: message on %s not handled", self.name, message.topic)
            device = self._by_topic.get(message.topic)
            if device is None:
                return None
            return self._quarantine(device, message, "internal_error", repr(err))

    def _triage(self, message: Message) -> _Work | None:
        """What to store for ``message``; None when there is nothing to store (a command
        result, a message of no configured device), which is then acked at once."""
        self._counts["received"] += 1
        device = self._by_topic.get(message.topic)
        if device is None:
            self._counts["unknown_topic"] += 1
            self._log_throttled(
                "*",
                "unknown_topic",
                f"message on {message.topic!r} ignored (no configured device has this event topic)",
            )
            return None
        device_id = device.entry.device_id
        try:
            payload = self._parse(message.payload)
            reply = parse_command_reply(payload)
            if reply is not None:
                self._on_reply(device, reply)
                return None
            rule = device.entry.profile.json_event_for(payload)
            if rule is None:
                raise _Quarantine("no_match", f"no event rule matches {_describe(device, payload)}")
            data = rule.extract(payload)
        except MappingError as err:
            return self._quarantine(device, message, err.reason, str(err))
        except _Quarantine as bad:
            return self._quarantine(device, message, bad.reason, bad.detail)
        dedupe = rule.dedupe_key(payload)
        return _Work(
            message,
            device,
            rule.kind,
            rule.contract_lane,
            data,
            dedupe_key=f"{device_id}:{dedupe}" if dedupe is not None else None,
        )

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        if len(raw) > MAX_PAYLOAD_BYTES:
            raise _Quarantine("too_large", f"payload of {len(raw)} bytes")
        try:
            payload = json.loads(raw)
        except ValueError as err:  # bad UTF-8 or JSON
            raise _Quarantine("not_json", f"not UTF-8 JSON ({err})") from None
        except RecursionError:
            raise _Quarantine("not_json", "JSON nested too deeply") from None
        if not isinstance(payload, dict):
            raise _Quarantine("not_object", f"expected a JSON object, not {type(payload).__name__}")
        return payload

    def _quarantine(
        self, device: _DeviceState, message: Message, reason: str, detail: str
    ) -> _Work | None:
        device_id = device.entry.device_id
        self._quarantined[reason] += 1
        device.quarantined[reason] += 1
        self._log_throttled(device_id, "quarantine", f"message quarantined ({reason}): {detail}")
        now = self._clock()
        if now - device.window_start >= 60.0:
            device.window_start, device.window_recorded = now, 0
        if device.window_recorded >= QUARANTINE_EVENTS_PER_MIN:
            device.suppressed += 1
            self._counts["quarantine_suppressed"] += 1
            return None
        device.window_recorded += 1
        data: dict[str, Any] = {
            "device_id": device_id,
            "topic": message.topic,
            "reason": reason,
            "detail": detail[:500],
            "payload": message.payload[:QUARANTINE_PAYLOAD_BYTES].decode("utf-8", "replace"),
        }
        if device.suppressed:
            data["suppressed"], device.suppressed = device.suppressed, 0
        return _Work(message, device, QUARANTINED, Lane.NORMAL, data, quarantine_reason=reason)

    async def _record_then_ack(self, work: _Work) -> None:
        try:
            stored = await self._record(work)
            if work.quarantine_reason is None:
                device = work.device
                device.last_seen = utc_now()
                if stored:
                    device.events += 1
                    self._counts["events"] += 1
                else:
                    device.duplicates += 1
                    self._counts["duplicates"] += 1
                self._supervisor.heard(device.entry.device_id)
            self._conn.ack(work.message)
        except Exception:
            self._counts["internal_errors"] += 1
            log.exception("%s: message on %s not handled", self.name, work.message.topic)
        finally:
            self._slots.release()

    async def _record(self, work: _Work) -> bool:
        """Store until it is stored: a full disk is waited out, never a reason to ack."""
        delay = RECORD_RETRY_FIRST_S
        while True:
            try:
                return await self._sink.record(
                    work.device.entry.device_id,
                    work.kind,
                    work.lane,
                    work.data,
                    dedupe_key=work.dedupe_key,
                )
            except OutboxError as err:
                self._counts["record_retries"] += 1
                self._log_throttled(
                    work.device.entry.device_id,
                    "outbox",
                    f"{work.kind} not stored yet, held unacknowledged: {err}",
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECORD_RETRY_MAX_S)

    # -- commands ---------------------------------------------------------------------------
    async def _command(
        self, device_id: str, name: str, args: dict[str, Any], deadline: CommandDeadline | None
    ) -> CommandOutcome:
        device = self._devices.get(device_id)
        if device is None:
            return "rejected", f"{device_id}: not an MQTT device of this edge"
        profile = device.entry.profile
        spec = profile.mqtt_command(name)
        if spec is None:
            known = ", ".join(profile.command_names()) or "none"
            return "rejected", f"{device_id}: no command {name!r} (commands: {known})"
        command_id = uuid.uuid4().hex
        try:
            payload = spec.render(args, command_id=command_id)
        except MappingError as err:
            return "rejected", str(err)
        future: asyncio.Future[CommandReply] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = (device_id, future)
        try:
            data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
            if deadline is not None and deadline.expired():
                return "expired", deadline.detail("before it was published to the device")
            if not self._conn.publish(device.command_topic, data, qos=device.transport.qos):
                return "device_error", "local MQTT broker not connected; command not sent"
            try:
                reply = await asyncio.wait_for(future, spec.result_timeout_s)
            except TimeoutError:
                return "timeout", (
                    f"{device_id} did not answer {name} within {spec.result_timeout_s:g} s"
                )
        finally:
            self._pending.pop(command_id, None)
        if reply.status == "ok":
            return "ok", reply.detail
        return "device_error", reply.detail or f"{device_id} reported an error"

    def _on_reply(self, device: _DeviceState, reply: CommandReply) -> None:
        device_id = device.entry.device_id
        device.last_seen = utc_now()
        self._supervisor.heard(device_id)
        self._counts["command_results"] += 1
        pending = self._pending.get(reply.command_id)
        if pending is None or pending[0] != device_id or pending[1].done():
            # Too late (timed out already), a repeat, or not this device's command.
            self._counts["late_results"] += 1
            return
        pending[1].set_result(reply)

    # -- logging ----------------------------------------------------------------------------
    def _log_throttled(self, device_id: str, category: str, text: str) -> None:
        now = self._clock()
        key = (device_id, category)
        last = self._last_logged.get(key)
        if last is None or now - last >= LOG_INTERVAL_S:
            self._last_logged[key] = now
            log.warning("%s: %s", device_id, text)


def _describe(device: _DeviceState, payload: dict[str, Any]) -> str:
    """The payload's values at the fields the profile's rules match on, for the log."""
    fields = sorted({rule.match.field for rule in device.entry.profile.json_events()})
    shown = []
    for name in fields:
        value = lookup(payload, name)
        shown.append(f"{name} missing" if type(value) is object else f"{name}={value!r:.64}")
    return ", ".join(shown) or "the payload"
