"""MQTT ingest: edge event batches → hub database → end-to-end ack → case effects.

Order of work for one batch (one MQTT message):
1. decode; a payload that breaks the contract is quarantined with the reason;
2. in ONE transaction: insert the events not seen before (event uid =
   ``edge_id:incarnation:seq``, the seq zero-padded to 12 digits; a duplicate is skipped),
   place the new ones (:mod:`hub.placement`: one device lookup, one last-seen touch; an
   event whose device is not registered behind the sending edge is quarantined with the
   reason, within caps, in one statement per transaction) and hand the placed events to the
   device-event router, whose first handler is the help-call one
   (:mod:`hub.handlers.help_calls`): an SOS and a meter reading take the same path up to
   their handler;
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

Alarms have their own consumer (:meth:`Ingest.run` runs two workers): alarm-lane messages
(``on_message`` by topic, or ``on_alarm_message`` from the alarm lane's own connection) are
never queued behind bulk messages, and ingest's write transactions take turns
(:class:`WriteTurn`) in which a waiting alarm always goes next: a bulk transaction commits
at its next chunk boundary (``CHUNK_SIZE`` events) when an alarm is waiting, and no bulk
transaction starts while one is. What an SOS can still wait for is SQLite's one write lock:
the bulk chunk already in its transaction, and its commit.

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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contract import Ack, CommandResult, ContractError, EdgeStatus, Event, EventBatch, Lane, topics
from contract.envelope import format_time
from contract.mqtt import Message
from hub.config import IngestSettings
from hub.db.bulk import bulk_execute, select_rows
from hub.db.schema import edge_status as edge_status_table
from hub.db.schema import events as events_table
from hub.db.write_gate import WriteGate
from hub.domain.effects import Effects
from hub.effects import EffectDispatcher
from hub.handlers.help_calls import HelpCallHandler
from hub.handlers.router import DeviceEventRouter
from hub.placement import place
from hub.services.cases import CaseService
from hub.services.errors import Conflict
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
    """The hub's identity of an event (unique ``events.uid``): a resend is known by it.

    The seq is zero-padded to 12 digits so that an edge's uids sort in seq order and new
    ones are appended to the end of the index rather than split into its middle (migration
    0020 rewrote older rows); past 10^12 events in one incarnation the order (never the
    identity) is lost.
    """
    return f"{edge_id}:{incarnation}:{seq:012d}"


async def _stored_uids(conn: AsyncConnection, uids: list[str]) -> set[str]:
    """Which of ``uids`` are already stored."""
    return {str(row[0]) for row in await select_rows(conn, _STORED_UIDS, {"uids": uids})}


class WriteTurn:
    """Whose write transaction comes next in ingest: an alarm's, before any bulk one.

    SQLite has one write lock; SQLite's own busy wait would let an alarm poll for it in
    steps of up to 100 ms while bulk transactions follow one another. Ingest's two workers
    take turns here instead (on the loop's thread): a bulk transaction waits while any
    alarm is pending, and the holder is handed on as soon as it commits.
    """

    def __init__(self, alarms_pending: Callable[[], bool]) -> None:
        self._alarms_pending = alarms_pending
        self._changed = asyncio.Condition()
        self._held = False

    @asynccontextmanager
    async def take(self, *, alarm: bool) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(
                lambda: not self._held and (alarm or not self._alarms_pending())
            )
            self._held = True
        try:
            yield
        finally:
            async with self._changed:
                self._held = False
                self._changed.notify_all()

    async def changed(self) -> None:
        """Wake whoever waits: the alarms pending may have changed."""
        async with self._changed:
            self._changed.notify_all()


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
        handlers = list(router.handlers) if router is not None else []
        if not any(isinstance(h, HelpCallHandler) for h in handlers):
            # Help calls are never left out, and come first (a router built from
            # ``hub.handlers.features.device_handlers`` without the case service).
            handlers.insert(0, HelpCallHandler(service))
        self._router = DeviceEventRouter(handlers)
        self._broker = broker
        self._effects = effects
        self._clock = clock
        self._alarms: deque[Message] = deque()
        self._bulk: deque[Message] = deque()
        self._alarm_work = asyncio.Event()
        self._bulk_work = asyncio.Event()
        self._alarm_in_hand = False  # the alarm worker holds a message (decoding, writing)
        self._turn = WriteTurn(lambda: bool(self._alarms) or self._alarm_in_hand)
        self.stats = {
            "batches": 0,
            "events": 0,
            "duplicates": 0,
            "quarantined": 0,
            "errors": 0,
            "gaps": 0,
            "clamped": 0,
            "handed_over": 0,
            "conflicts": 0,  # retried: a case changed meanwhile (another replica's timer)
        }
        #: (edge, incarnation, lane) → a seq known to be stored (the last one committed
        #: here), so the order check of a batch that follows it needs no query.
        self._stored_tail: dict[tuple[str, str, Lane], int] = {}
        self.events_by_lane = {lane.name.lower(): 0 for lane in Lane}  # for metrics
        #: For alarm batches: (seconds queued before handling, seconds to commit and notify).
        self.alarm_timings: deque[tuple[float, float]] = deque(maxlen=1000)

    # -- called in the loop by the MQTT bridge --------------------------------------------
    def on_message(self, message: Message) -> None:
        """A message of the hub's subscriptions; alarm-lane events go to the alarm worker."""
        if _is_alarm(message):
            self._alarms.append(message)
            self._alarm_work.set()
        else:
            self._bulk.append(message)
            self._bulk_work.set()

    def on_alarm_message(self, message: Message) -> None:
        """A message from the alarm lane's own connection (same rules as :meth:`on_message`:
        a message on any other topic is taken as a bulk one, never as an alarm)."""
        self.on_message(message)

    def backlog(self) -> int:
        return len(self._alarms) + len(self._bulk)

    # -- the workers ----------------------------------------------------------------------
    async def run(self) -> None:
        """Both workers, until cancelled: alarms and everything else, each on its own."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._run_alarms(), name="ingest-alarms")
            group.create_task(self._run_bulk(), name="ingest-bulk")

    async def _run_alarms(self) -> None:
        while True:
            if not self._alarms:
                self._alarm_work.clear()
                await self._alarm_work.wait()
            message = self._alarms.popleft()
            self._alarm_in_hand = True
            try:
                await self._handle_safely(message, alarm=True)
            finally:
                self._alarm_in_hand = False
                await self._turn.changed()

    async def _run_bulk(self) -> None:
        while True:
            if not self._bulk:
                self._bulk_work.clear()
                await self._bulk_work.wait()
            await self._handle_safely(self._bulk.popleft(), alarm=False)

    async def _handle_safely(self, message: Message, *, alarm: bool) -> None:
        """Handle one message; on an unexpected error, retry it in place before the next.

        Skipping a failed batch and going on would let the lane's later batches commit
        first when the edge resends it, breaking per-device order; the usual cause is
        transient (the database locked beyond its busy timeout), so the message is retried
        with backoff for up to ``RETRY_FOR_S``. Only then is it left, un-PUBACKed, to the
        broker's and the edge's resend, so one poisonous message cannot stop ingest for
        good. Contract errors never get here: they are quarantined.

        A :class:`~hub.services.errors.Conflict` (a case changed between our read and our
        write) is not a fault: with replicas, a repeat press ingested here meets the
        escalation that another replica's timer committed on the same case. Its transaction
        rolled back whole, and the retry reads the new version; so it is one line in the
        log and ``stats["conflicts"]``, without a traceback, and not an error. So is an
        event uid stored meanwhile (:func:`_stored_meanwhile`): while an edge is handed
        from one replica to another both may take one of its batches, and the second
        insert meets the first one's rows; its retry finds them stored and skips them.
        """
        started = time.monotonic()
        delay = RETRY_FIRST_S
        while True:
            try:
                await self.handle(message)
                break
            except Exception as err:
                concurrent = isinstance(err, Conflict) or _stored_meanwhile(err)
                self.stats["conflicts" if concurrent else "errors"] += 1
                if time.monotonic() - started > RETRY_FOR_S:
                    log.error(
                        "ingest of a message on %s failed for %.0f s (%s); "
                        "left to the edge's resend",
                        message.topic,
                        RETRY_FOR_S,
                        _first_line(err),
                        exc_info=not concurrent,
                    )
                    return
                if concurrent:
                    log.info(
                        "ingest of a message on %s met a concurrent change (%s); "
                        "retrying in %.2f s",
                        message.topic,
                        _first_line(err),
                        delay,
                    )
                else:
                    log.warning(
                        "ingest of a message on %s failed; retrying in %.2f s",
                        message.topic,
                        delay,
                        exc_info=delay == RETRY_FIRST_S,  # the traceback once, not every retry
                    )
            # Meanwhile the alarm worker goes on: a help call never waits behind a
            # telemetry batch that keeps failing.
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
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
        alarm = _is_alarm(message)
        if not alarm:
            await self._gate.yield_to_writers()
        async with self._turn.take(alarm=alarm), self._engine.begin() as conn:
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
        # The alarm link's batches are acked on the alarm link (issue #13, contract.topics).
        ack_topic = topics.ack_topic(edge_id, lane, batch.lane_acks)
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
            self._broker.publish(ack_topic, gap.encode(), qos=1)
            return
        now = self._clock()
        events = tuple(self._within_window(e, now) for e in batch.events)
        done = 0
        while done < len(events):
            done = await self._commit_part(
                edge_id, batch.incarnation, events, done, message.topic, ack_topic
            )
            self._stored_tail[(edge_id, batch.incarnation, lane)] = events[done - 1].seq
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
        self,
        edge_id: str,
        incarnation: str,
        events: tuple[Event, ...],
        start: int,
        topic: str,
        ack_topic: str,
    ) -> int:
        """One transaction from ``events[start]`` on: store the new events and act on them,
        ``CHUNK_SIZE`` at a time; commit early when an alarm is waiting or the transaction
        has run for ``transaction_budget_s``. Then ack what was committed and dispatch its
        effects. Returns the index after the last one committed."""
        effects = Effects()
        end = start
        refusals: list[Refusal] = []
        budget = self.settings.transaction_budget_s
        alarm = events[start].lane == Lane.ALARM
        if not alarm:
            await self._gate.yield_to_writers()
        async with self._turn.take(alarm=alarm), self._engine.begin() as conn:
            began = time.monotonic()
            while end < len(events) and (
                end == start
                or ((alarm or not self._alarm_pending()) and time.monotonic() - began < budget)
            ):
                chunk = events[end : end + CHUNK_SIZE]
                end += len(chunk)
                new_events = await self._insert_new(conn, edge_id, incarnation, chunk)
                now = self._clock()
                placement = await place(conn, edge_id, new_events, now)
                chunk_effects = await self._router.route(conn, placement.placed, now)
                refused = placement.refused + chunk_effects.refused
                chunk_effects.refused = []
                effects.extend(chunk_effects)
                if refused:
                    await conn.execute(
                        _MARK_REFUSED,
                        {"uids": [event_uid(edge_id, incarnation, e.seq) for e, _ in refused]},
                    )
                refusals.extend(
                    Refusal(
                        topic,
                        f"event {event.seq} ({event.kind}): {reason}",
                        json.dumps(event.to_obj(), ensure_ascii=False),
                        event.device_id,
                    )
                    for event, reason in refused
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
        self._broker.publish(ack_topic, ack.encode(), qos=1)
        if effects.notifications or effects.commands:
            await self._effects.dispatch(effects)
        return end

    def _alarm_pending(self) -> bool:
        return bool(self._alarms) or self._alarm_in_hand

    async def _insert_new(
        self, conn: AsyncConnection, edge_id: str, incarnation: str, chunk: tuple[Event, ...]
    ) -> list[Event]:
        """Store the events of ``chunk`` not stored before; return those, in order.

        On SQLite one statement does it (:data:`_INSERT_NEW_SQL`): the chunk goes in as one
        JSON parameter, SQLite unpacks it, skips uids it has and returns the ones it
        stored, so no statement or bind processor runs per event. Elsewhere (or for data
        JSON cannot carry, NaN from a lenient edge) the SELECT and executemany below.
        """
        uids = {event_uid(edge_id, incarnation, e.seq): e for e in chunk}
        now = self._clock()
        if conn.dialect.name == "sqlite":
            stored = await _insert_new_sqlite(conn, edge_id, uids, now)
            if stored is not None:
                return [e for uid, e in uids.items() if uid in stored]
        seen = await _stored_uids(conn, list(uids))
        fresh = [(uid, e) for uid, e in uids.items() if uid not in seen]
        if fresh:
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
        async with self._turn.take(alarm=False), self._engine.begin() as conn:
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


def _is_alarm(message: Message) -> bool:
    return message.topic.endswith("/events/alarm")


#: The new events of a chunk in one statement (SQLite ≥ 3.38: ``->``, ``->>``, RETURNING):
#: ``?1`` is a JSON array of ``[uid, device_id, kind, occurred_at, data]``, ``?2`` the edge,
#: ``?3`` the lane, ``?4`` the receive time. Times are written as SQLAlchemy writes a
#: naive-UTC DATETIME on SQLite (``YYYY-MM-DD HH:MM:SS.ffffff``) and data as the JSON text
#: it was given, so rows read back exactly as rows the ORM wrote. ``WHERE true`` is
#: SQLite's way to say the ON CONFLICT belongs to the INSERT, not to the SELECT's join.
_INSERT_NEW_SQL = (
    "INSERT INTO events (uid, edge_id, device_id, kind, lane, occurred_at, received_at, data) "
    "SELECT value->>0, ?2, value->>1, value->>2, ?3, value->>3, ?4, value->4 "
    "FROM json_each(?1) WHERE true ON CONFLICT (uid) DO NOTHING RETURNING uid"
)


def _sqlite_time(t: datetime) -> str:
    return t.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


async def _insert_new_sqlite(
    conn: AsyncConnection, edge_id: str, uids: dict[str, Event], now: datetime
) -> set[str] | None:
    """The uids stored now (see :data:`_INSERT_NEW_SQL`); None if the chunk's data cannot
    be sent as strict JSON (the caller takes the statement-per-row path)."""
    try:
        rows = json.dumps(
            [
                [uid, e.device_id, e.kind, _sqlite_time(e.occurred_at), e.data]
                for uid, e in uids.items()
            ],
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )
    except ValueError:  # NaN or infinity in some event's data
        return None
    lane = next(iter(uids.values())).lane.name.lower()
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    stored = await driver.execute_fetchall(
        _INSERT_NEW_SQL, (rows, edge_id, lane, _sqlite_time(now))
    )
    return {str(row[0]) for row in stored}


#: How the back ends name a duplicate event uid: PostgreSQL by the constraint's name,
#: SQLite by the column.
_UID_TAKEN = ("uq_events_uid", "UNIQUE constraint failed: events.uid")


def _stored_meanwhile(err: BaseException) -> bool:
    """Did inserting a batch meet its own events, stored by another replica meanwhile?

    The bulk insert goes to the driver itself (``hub.db.bulk``), so the error may be the
    driver's (asyncpg's ``UniqueViolationError``) or SQLAlchemy's wrapping of it: the
    whole chain is looked at."""
    seen: BaseException | None = err
    for _ in range(8):  # a chain is short; never loop on a strange one
        if seen is None:
            break
        if any(name in str(seen) for name in _UID_TAKEN):
            return True
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return False


def _first_line(err: BaseException) -> str:
    """An error's message for a one-line log entry (drivers add DETAIL lines)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
