"""MQTT ingest: edge event batches → hub database → end-to-end ack → case effects.

Order of work for one batch (one MQTT message):
1. decode; a payload that breaks the contract is quarantined with the reason;
2. in ONE transaction: insert the events not seen before (event uid =
   ``edge_id:incarnation:seq``; a duplicate is skipped) and run the case service on each new
   one; an event whose device is not registered behind the sending edge is quarantined
   with the reason (within caps, in one statement per transaction), and only the events
   that were placed reach the device-event router;
3. commit (SQLite ``synchronous=FULL``: on disk), then publish the ack naming every seq of
   the batch, duplicates included, and PUBACK the MQTT message (``manual_ack``: the broker
   redelivers to our persistent session whatever a crash left uncommitted);
4. dispatch effects: button feedback commands, worker notifications.

What the hub does not take from an edge on trust (issue #11, ``docs/security.md``): an
event time outside ``[now - max_past_s, now + max_future_s]`` is replaced by the hub's
receive time, the edge's time and the reason kept in the event's data
(``data["hub_clock"]``) and counted (``stats["clamped"]``); a large message is worked
through in transactions of at most ``transaction_budget_s``, yielding to any other writer
waiting for SQLite's lock in between (:class:`~hub.db.write_gate.WriteGate`), so a flood
cannot make an API write fail with "database is locked".

Alarm-lane messages are taken ahead of queued bulk messages: an SOS that arrives behind a
telemetry backlog waits for at most the one batch already being written.

Per-lane order is enforced here, not trusted to the path: a batch names the seq it follows
(``EventBatch.follows``), and a batch whose predecessor is not stored is refused (PUBACKed,
not committed, not acked) with an ``Ack`` carrying ``gap`` so the edge resends the lane
from its oldest unacknowledged event. Without this a broker that lost queued messages
(``kill -9`` without persistence) let later batches commit ahead of the lost ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contract import Ack, CommandResult, ContractError, EdgeStatus, Event, EventBatch, Lane, topics
from contract.envelope import format_time
from contract.mqtt import Message
from hub.config import IngestSettings
from hub.db.schema import edge_status as edge_status_table
from hub.db.schema import events as events_table
from hub.db.write_gate import WriteGate
from hub.effects import EffectDispatcher
from hub.services.cases import CaseService, Effects, bulk_execute, select_rows
from hub.services.device_handlers import DeviceEventRouter
from hub.services.quarantine import QuarantineLimits, Refusal, add_refusals

log = logging.getLogger(__name__)


class Broker(Protocol):
    connected: bool

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool: ...

    def ack(self, message: Message) -> None: ...


#: A bulk batch is worked through in chunks of this many events inside one transaction;
#: when an alarm is waiting at a chunk boundary, the transaction commits there and the
#: alarm is handled before the rest. An SOS behind a 250-event telemetry batch thus waits
#: for about 10 ms of work rather than 25 (smaller chunks cost more statements per batch).
CHUNK_SIZE = 100
RETRY_FIRST_S = 0.05  # a message that failed unexpectedly is retried in place, backing off
RETRY_MAX_S = 2.0
RETRY_FOR_S = 60.0  # ... for this long, then left to the broker's and the edge's resend


_INSERT_EVENT = sa.insert(events_table)
#: Refused events keep their rows (their uids recognise resends and anchor the order gate)
#: but are marked, so that no history shows them as the device's.
_MARK_REFUSED = (
    sa.update(events_table)
    .where(events_table.c.uid.in_(sa.bindparam("uids", expanding=True)))
    .values(refused=True)
)
_STORED_UIDS = sa.select(events_table.c.uid).where(
    events_table.c.uid.in_(sa.bindparam("uids", expanding=True))
)


def event_uid(edge_id: str, incarnation: str, seq: int) -> str:
    return f"{edge_id}:{incarnation}:{seq}"


async def _stored_uids(conn: AsyncConnection, uids: list[str]) -> set[str]:
    """Which of ``uids`` are already stored."""
    return {str(row[0]) for row in await select_rows(conn, _STORED_UIDS, {"uids": uids})}


class Ingest:
    def __init__(
        self,
        engine: AsyncEngine,
        service: CaseService,
        broker: Broker,
        effects: EffectDispatcher,
        clock: Callable[[], datetime],
        router: DeviceEventRouter | None = None,
        settings: IngestSettings | None = None,
        gate: WriteGate | None = None,
        accepts: Callable[[Message], bool] | None = None,
    ) -> None:
        self.settings = settings or IngestSettings()
        self._limits = QuarantineLimits(
            per_device=self.settings.quarantine_per_device,
            per_edge=self.settings.quarantine_per_edge,
            max_rows=self.settings.quarantine_max_rows,
        )
        self._gate = gate or WriteGate()
        #: Hub replicas (issue #14): whether this process still takes a message when its
        #: turn comes; one queued for an edge that has since gone to another replica is
        #: PUBACKed and left to that replica (the edge resends what is unacknowledged).
        self._accepts = accepts
        self._engine = engine
        self._service = service
        self._router = router or DeviceEventRouter()
        self._broker = broker
        self._effects = effects
        self._clock = clock
        self._alarms: deque[Message] = deque()
        self._bulk: deque[Message] = deque()
        self._work = asyncio.Event()
        self.stats = {
            "batches": 0,
            "events": 0,
            "duplicates": 0,
            "quarantined": 0,
            "errors": 0,
            "gaps": 0,
            "clamped": 0,
            "handed_over": 0,
        }
        #: (edge, incarnation, lane) → a seq known to be stored (the last one committed
        #: here), so the order check of a batch that follows it needs no query.
        self._stored_tail: dict[tuple[str, str, Lane], int] = {}
        self.events_by_lane = {lane.name.lower(): 0 for lane in Lane}  # for metrics
        #: For alarm batches: (seconds queued before handling, seconds to commit and notify).
        self.alarm_timings: deque[tuple[float, float]] = deque(maxlen=1000)

    # -- called in the loop by the MQTT bridge --------------------------------------------
    def on_message(self, message: Message) -> None:
        is_alarm = message.topic.endswith("/events/alarm")
        (self._alarms if is_alarm else self._bulk).append(message)
        self._work.set()

    def backlog(self) -> int:
        return len(self._alarms) + len(self._bulk)

    # -- the worker -----------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            if not self._alarms and not self._bulk:
                self._work.clear()
                await self._work.wait()
            await self._take_alarms()
            if self._bulk:
                await self._handle_safely(self._bulk.popleft(), alarm=False)

    async def _take_alarms(self) -> None:
        while self._alarms:
            await self._handle_safely(self._alarms.popleft(), alarm=True)

    async def _handle_safely(self, message: Message, *, alarm: bool) -> None:
        """Handle one message; on an unexpected error, retry it in place before the next.

        Skipping a failed batch and going on would let the lane's later batches commit
        first when the edge resends it, breaking per-device order; the usual cause is
        transient (the database locked beyond its busy timeout), so the message is retried
        with backoff for up to ``RETRY_FOR_S``. Only then is it left, un-PUBACKed, to the
        broker's redelivery and the edge's resend, so one poisonous message cannot stop
        ingest for good. Contract errors never get here: they are quarantined.
        """
        started = time.monotonic()
        delay = RETRY_FIRST_S
        while True:
            try:
                await self.handle(message)
                break
            except Exception:
                self.stats["errors"] += 1
                if time.monotonic() - started > RETRY_FOR_S:
                    log.exception(
                        "ingest of a message on %s failed for %.0f s; left to the edge's resend",
                        message.topic,
                        RETRY_FOR_S,
                    )
                    return
                log.warning(
                    "ingest of a message on %s failed; retrying in %.2f s",
                    message.topic,
                    delay,
                    exc_info=delay == RETRY_FIRST_S,  # the traceback once, not every retry
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                if not alarm:
                    # Other lanes keep their own order: a help call never waits behind a
                    # telemetry batch that keeps failing.
                    await self._take_alarms()
        if alarm:
            self.alarm_timings.append((started - message.received, time.monotonic() - started))

    async def handle(self, message: Message) -> None:
        if self._accepts is not None and not self._accepts(message):
            self.stats["handed_over"] += 1
            self._broker.ack(message)
            return
        try:
            edge_id, rest = topics.parse_edge_topic(message.topic)
            if rest.startswith("events/"):
                await self._handle_batch(edge_id, topics.lane_of_events_topic(rest), message)
            elif rest == "status":
                await self._handle_status(edge_id, message)
            elif rest == "command-results":
                result = CommandResult.decode(message.payload)
                refused = await self._effects.on_result(edge_id, result)  # issue #11: origin
                if refused is not None:
                    await self._quarantine(message, refused)
            else:
                raise ContractError(f"unexpected topic {message.topic!r}")
        except ContractError as err:
            await self._quarantine(message, str(err))
        self._broker.ack(message)

    async def _quarantine(self, message: Message, reason: str) -> None:
        """Keep a whole message that broke the contract (within the sending edge's caps)."""
        self.stats["quarantined"] += 1
        log.warning("quarantined a message on %s: %s", message.topic, reason)
        try:
            edge_id: str | None = topics.parse_edge_topic(message.topic)[0]
        except ContractError:
            edge_id = None
        payload = message.payload.decode("utf-8", errors="replace")
        refusal = Refusal(message.topic, reason, payload)
        await self._gate.yield_to_writers()
        async with self._engine.begin() as conn:
            await add_refusals(conn, edge_id, [refusal], self._clock(), self._limits)

    def _within_window(self, event: Event, now: datetime) -> Event:
        """The event, its time replaced by ``now`` if the edge's clock is out of bounds."""
        ahead = event.occurred_at - now
        if (
            -timedelta(seconds=self.settings.max_past_s)
            <= ahead
            <= timedelta(seconds=self.settings.max_future_s)
        ):
            return event
        self.stats["clamped"] += 1
        direction = "ahead of" if ahead > timedelta(0) else "behind"
        note = {
            "edge_at": format_time(event.occurred_at),
            "reason": (
                f"事件时间与中心时钟相差 {abs(ahead.total_seconds()):.0f} 秒，已改用接收时间 / "
                f"event time {abs(ahead.total_seconds()):.0f} s {direction} the hub's clock; "
                f"the hub's receive time is used"
            ),
        }
        return replace(event, occurred_at=now, data={**event.data, "hub_clock": note})

    async def _handle_batch(self, edge_id: str, lane: Lane, message: Message) -> None:
        batch = EventBatch.decode(message.payload)
        if batch.edge_id != edge_id:
            raise ContractError(f"batch claims edge {batch.edge_id!r} on {edge_id!r}'s topic")
        wrong_lane = [e.seq for e in batch.events if e.lane != lane]
        if wrong_lane:
            raise ContractError(f"events {wrong_lane[:5]} are not in lane {lane.name.lower()}")
        if not await self._follows_stored(edge_id, batch, lane):
            self.stats["gaps"] += 1
            log.info(
                "refused %s batch from %s at seq %d: the hub lacks seq %d it follows",
                lane.name.lower(),
                edge_id,
                batch.events[0].seq,
                batch.follows,
            )
            gap = Ack(edge_id, batch.incarnation, (), gap=lane)
            self._broker.publish(topics.acks(edge_id), gap.encode(), qos=1)
            return
        now = self._clock()
        events = tuple(self._within_window(e, now) for e in batch.events)
        done = 0
        while done < len(events):
            done = await self._commit_part(edge_id, batch.incarnation, events, done, message.topic)
            self._stored_tail[(edge_id, batch.incarnation, lane)] = events[done - 1].seq
            if lane != Lane.ALARM:
                await self._take_alarms()
        self.stats["batches"] += 1

    async def _follows_stored(self, edge_id: str, batch: EventBatch, lane: Lane) -> bool:
        if batch.follows == 0:
            return True  # starts at the edge's oldest unacknowledged event of the lane
        if self._stored_tail.get((edge_id, batch.incarnation, lane)) == batch.follows:
            return True
        uid = event_uid(edge_id, batch.incarnation, batch.follows)
        async with self._engine.connect() as conn:
            return bool(await _stored_uids(conn, [uid]))

    async def _commit_part(
        self, edge_id: str, incarnation: str, events: tuple[Event, ...], start: int, topic: str
    ) -> int:
        """One transaction from ``events[start]`` on: store the new events and act on them,
        ``CHUNK_SIZE`` at a time; commit early when an alarm is waiting or the transaction
        has run for ``transaction_budget_s``. Then ack what was committed and dispatch its
        effects. Returns the index after the last one committed."""
        effects = Effects()
        end = start
        refusals: list[Refusal] = []
        budget = self.settings.transaction_budget_s
        await self._gate.yield_to_writers()
        async with self._engine.begin() as conn:
            began = time.monotonic()
            while end < len(events) and (
                end == start or (not self._alarms and time.monotonic() - began < budget)
            ):
                chunk = events[end : end + CHUNK_SIZE]
                end += len(chunk)
                new_events = await self._insert_new(conn, edge_id, incarnation, chunk)
                chunk_effects, refused = await self._service.on_events(
                    conn, edge_id, new_events, self._clock()
                )
                effects.extend(chunk_effects)
                refused_seqs = {event.seq for event, _ in refused}
                placed = [e for e in new_events if e.seq not in refused_seqs]
                if refused_seqs:
                    await conn.execute(
                        _MARK_REFUSED,
                        {"uids": [event_uid(edge_id, incarnation, s) for s in refused_seqs]},
                    )
                effects.extend(await self._router.on_events(conn, placed, self._clock()))
                refusals.extend(
                    Refusal(
                        topic,
                        f"event {event.seq} ({event.kind}): {err}",
                        json.dumps(event.to_obj(), ensure_ascii=False),
                        event.device_id,
                    )
                    for event, err in refused
                )
                self.stats["events"] += len(new_events)
                self.events_by_lane[events[start].lane.name.lower()] += len(new_events)
                self.stats["duplicates"] += len(chunk) - len(new_events)
            if refusals:
                await add_refusals(conn, edge_id, refusals, self._clock(), self._limits)
        if refusals:
            self.stats["quarantined"] += len(refusals)
            log.warning(
                "quarantined %d event(s) from %s, e.g. %s",
                len(refusals),
                edge_id,
                refusals[0].reason,
            )
        ack = Ack(edge_id, incarnation, tuple(e.seq for e in events[start:end]))
        self._broker.publish(topics.acks(edge_id), ack.encode(), qos=1)
        if effects.notifications or effects.commands:
            await self._effects.dispatch(effects)
        return end

    async def _insert_new(
        self, conn: AsyncConnection, edge_id: str, incarnation: str, chunk: tuple[Event, ...]
    ) -> list[Event]:
        uids = {event_uid(edge_id, incarnation, e.seq): e for e in chunk}
        seen = await _stored_uids(conn, list(uids))
        fresh = [(uid, e) for uid, e in uids.items() if uid not in seen]
        if fresh:
            now = self._clock()
            await bulk_execute(
                conn,
                _INSERT_EVENT,
                [
                    {
                        "uid": uid,
                        "edge_id": edge_id,
                        "device_id": e.device_id,
                        "kind": e.kind,
                        "lane": e.lane.name.lower(),
                        "occurred_at": e.occurred_at,
                        "received_at": now,
                        "data": e.data,
                    }
                    for uid, e in fresh
                ],
            )
        return [e for _, e in fresh]

    async def _handle_status(self, edge_id: str, message: Message) -> None:
        if not message.payload:
            return  # a cleared retained message
        status = EdgeStatus.decode(message.payload)
        if status.edge_id != edge_id:
            raise ContractError(f"status claims edge {status.edge_id!r} on {edge_id!r}'s topic")
        t = edge_status_table
        async with self._engine.begin() as conn:
            updated = await conn.execute(
                sa.update(t)
                .where(t.c.edge_id == edge_id)
                .values(online=status.online, at=status.at, info=status.info)
            )
            if updated.rowcount == 0:
                await conn.execute(
                    sa.insert(t).values(
                        edge_id=edge_id, online=status.online, at=status.at, info=status.info
                    )
                )
