"""The case service: wires the pure help-call domain to the database.

Every method runs inside the caller's transaction (``conn``) and is given ``now``; it
returns :class:`Effects`, the things to do once that transaction has committed. Commands
for devices are also written to the ``commands`` table in the same transaction (state
``pending``), so "help is coming" survives a hub crash between commit and publish; the
caller publishes them after the commit and marks them sent. Each returned command carries
``args["edge_id"]``, the edge to publish it to (the row keeps it in its own column).

Concurrent writers are caught with an optimistic lock: every case row has a ``version``,
and an update that finds another version raises :class:`~hub.services.errors.Conflict`
(or, for the escalation sweep, skips the case until its next look).

Event kinds handled by :meth:`CaseService.on_event`: ``sos`` and ``fall`` open or join a
case; ``cancel`` requests cancellation; ``presence`` marks someone on site once a worker has
acknowledged (before that it is only a hint on the case); ``service_request`` files a task
or joins the household's open one of that category; ``low_battery`` files a maintenance
task; every event (``heartbeat`` included) refreshes the device's last-seen time (the hub's
receive time, never the edge's clock) and battery level.

An edge speaks only for its own devices (issue #11): an event is acted on only if its
device is registered behind the edge that sent it (``devices.edge_id``, set through the
registry or remote configuration, never by whoever reports the device first); anything
else is refused with the reason, for ingest to quarantine. Button feedback goes to the
device's registered edge, and every audit line of a button press names the edge.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import (
    Boolean,
    Integer,
    Select,
    and_,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import UpdateBase

from contract import Command, Event
from contract.remote_config import EDGE_EVENT_KINDS
from hub.db.schema import (
    case_audit,
    case_notifications,
    cases,
    commands,
    devices,
    inserted_id,
    workers,
)
from hub.domain import case as domain
from hub.domain.case import (
    ACTIVE_STATES,
    AWAITING_ACK_STATES,
    AuditRecord,
    Case,
    CaseState,
    Outcome,
)
from hub.domain.escalation import EscalationPolicy, Notify, Tier
from hub.domain.notification import Notification, compose
from hub.services import case_queries as queries
from hub.services import errors
from hub.services.case_queries import case_from_row, case_values
from hub.services.org import Place, available_by_tier, household_place
from hub.services.tasks import file_maintenance, file_service_request

DEFAULT_DEDUPE_WINDOW = timedelta(minutes=10)
#: The ``tier`` of a notification sent because the hotline desk reassigned the case.
REASSIGNED = "reassigned"
DEFAULT_REPEAT_NOTIFY_INTERVAL = timedelta(seconds=60)
ALARM_KINDS = frozenset({"sos", "fall"})
#: The first key of the PostgreSQL advisory lock a call takes on its household (issue #14).
HOUSEHOLD_LOCK_SPACE = 14
#: How long an escalation waits for a case another transaction holds (PostgreSQL).
ESCALATION_LOCK_MS = 5000
_LOCK_NOT_AVAILABLE = "55P03"
_OFFLINE_KINDS = frozenset({"offline", "device_offline", "device.offline"})
#: Profiles whose low-battery reports the case service files (call buttons, in homes);
#: other devices' go to the supervision handler (``hub.services.supervision``).
_BUTTON_PROFILES = frozenset({"cb-100"})
#: Kinds that do more than prove the device alive.
_ROUTED_KINDS = ALARM_KINDS | {"service_request", "low_battery", "cancel", "presence"}
#: One statement for every device touched by a batch (see ``CaseService._touch``).
_TOUCH = (
    update(devices)
    .where(devices.c.id == bindparam("b_id"))
    .values(
        last_seen=bindparam("b_last_seen"),
        online=func.coalesce(bindparam("b_online", type_=Boolean), devices.c.online),
        battery_pct=func.coalesce(bindparam("b_battery", type_=Integer), devices.c.battery_pct),
    )
)


#: The devices of a batch (``CaseService._devices``); a retired device counts as unknown.
_DEVICES_BY_ID = select(
    devices.c.id, devices.c.household_id, devices.c.edge_id, devices.c.last_seen, devices.c.profile
).where(devices.c.id.in_(bindparam("ids", expanding=True)), devices.c.retired_at.is_(None))


@dataclass(frozen=True, slots=True)
class _DriverStatement:
    statement: UpdateBase  # kept so that its id() is never reused while cached
    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]  # per parameter: its type's processor


_driver_statements: dict[tuple[int, tuple[str, ...], str], _DriverStatement] = {}


async def bulk_execute(
    conn: AsyncConnection, statement: UpdateBase, rows: Sequence[Mapping[str, Any]]
) -> None:
    """``conn.execute(statement, rows)`` (an executemany), in one round trip on SQLite.

    Why: through SQLAlchemy's asyncio adapter an executemany costs several hops to
    aiosqlite's thread and per-row parameter handling; at thousands of events a second
    that was most of the hub's ingest time. On SQLite the statement is compiled once,
    each value goes through its column type's own bind processor (so the stored bytes are
    what SQLAlchemy would store) and the driver runs ``executemany`` in the caller's
    transaction. Other databases take SQLAlchemy's ordinary path.
    """
    if not rows:
        return
    dialect = conn.dialect
    if dialect.name != "sqlite" or dialect.paramstyle != "qmark":
        await conn.execute(statement, list(rows))
        return
    keys = tuple(rows[0])
    cache_key = (id(statement), keys, dialect.name)
    prepared = _driver_statements.get(cache_key)
    if prepared is None or prepared.statement is not statement:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        names = tuple(compiled.positiontup or ())
        processors = tuple(
            compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names
        )
        prepared = _DriverStatement(statement, str(compiled), names, processors)
        _driver_statements[cache_key] = prepared
    pairs = tuple(zip(prepared.names, prepared.processors, strict=True))
    params = [tuple(row[n] if p is None else p(row[n]) for n, p in pairs) for row in rows]
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    await driver.executemany(prepared.sql, params)


@dataclass(frozen=True, slots=True)
class _DriverQuery:
    statement: Select[Any]  # kept so that its id() is never reused while cached
    compiled: SQLCompiler
    results: tuple[Callable[[Any], Any] | None, ...]  # per column: its type's processor


_driver_queries: dict[tuple[int, str], _DriverQuery] = {}


async def select_rows(
    conn: AsyncConnection, statement: Select[Any], params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """``conn.execute(statement, params).all()`` as plain tuples, in one round trip on SQLite.

    For module-level queries on the ingest path (see ``bulk_execute`` for why); an
    ``expanding`` IN parameter is expanded by SQLAlchemy itself, and bind and result
    values go through the column types' own processors.
    """
    dialect = conn.dialect
    if dialect.name != "sqlite" or dialect.paramstyle != "qmark":
        return [tuple(row) for row in await conn.execute(statement, dict(params))]
    cache_key = (id(statement), dialect.name)
    prepared = _driver_queries.get(cache_key)
    if prepared is None or prepared.statement is not statement:
        compiled = statement.compile(dialect=dialect)
        processors = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None)
            for c in statement.selected_columns
        )
        prepared = _DriverQuery(statement, compiled, processors)
        _driver_queries[cache_key] = prepared
    state = prepared.compiled.construct_expanded_state(dict(params))
    values = state.parameters
    bound = [
        values[n] if n not in state.processors else state.processors[n](values[n])
        for n in state.positiontup or ()
    ]
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    rows = await driver.execute_fetchall(state.statement, bound)
    convert = prepared.results
    return [
        tuple(v if p is None else p(v) for p, v in zip(convert, row, strict=True)) for row in rows
    ]


@dataclass(slots=True)
class Effects:
    """What to do after commit: notify these workers, publish these device commands."""

    notifications: list[Notification] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)

    def extend(self, other: Effects) -> None:
        self.notifications.extend(other.notifications)
        self.commands.extend(other.commands)


@dataclass(frozen=True, slots=True)
class _Device:
    id: str
    household_id: int | None
    edge_id: str | None
    last_seen: datetime | None
    profile: str = "cb-100"


class CaseService:
    """Help calls, hotline intake and button-originated tasks, on one database."""

    def __init__(
        self,
        policy: EscalationPolicy,
        tz: tzinfo,
        ack_base_url: str = "",
        *,
        dedupe_window: timedelta = DEFAULT_DEDUPE_WINDOW,
        repeat_notify_interval: timedelta = DEFAULT_REPEAT_NOTIFY_INTERVAL,
    ) -> None:
        self.policy = policy
        self.tz = tz
        self.ack_base_url = ack_base_url.rstrip("/")
        self.dedupe_window = dedupe_window
        self.repeat_notify_interval = repeat_notify_interval

    # -- events from devices ---------------------------------------------------------------

    async def on_event(
        self, conn: AsyncConnection, edge_id: str, event: Event, now: datetime
    ) -> Effects:
        """Act on one newly stored event. Raises UnknownDevice for the caller to quarantine."""
        effects, refused = await self.on_events(conn, edge_id, [event], now)
        if refused:
            raise refused[0][1]
        return effects

    async def on_events(
        self, conn: AsyncConnection, edge_id: str, batch: Sequence[Event], now: datetime
    ) -> tuple[Effects, list[tuple[Event, errors.UnknownDevice]]]:
        """Act on a batch of newly stored events from ``edge_id``, in order.

        Device lookups and "last seen" updates are done once per batch (one SELECT, one
        executemany), so a batch of 500 heartbeats costs two statements, not a thousand.
        Events that cannot be placed (unknown device, a device registered behind another
        edge or behind none) are returned with the reason, for quarantine, and change
        nothing; the rest of the batch is processed regardless.
        """
        known = await self._devices(conn, {e.device_id for e in batch})
        effects = Effects()
        refused: list[tuple[Event, errors.UnknownDevice]] = []
        touched: dict[str, dict[str, Any]] = {}
        newest: dict[str, datetime] = {}
        for event in batch:
            device = known.get(event.device_id)
            if device is None and event.device_id == edge_id and event.kind in EDGE_EVENT_KINDS:
                continue  # about the edge itself (config.applied, …): kept in history only
            reason = _foreign(event.device_id, device, edge_id)
            if device is None or reason:
                refused.append((event, errors.UnknownDevice(event.device_id, reason)))
                continue
            self._touch(device, event, now, touched, newest)
            if event.kind not in _ROUTED_KINDS:
                continue
            try:
                effects.extend(await self._route(conn, edge_id, device, event, now))
            except errors.UnknownDevice as err:
                refused.append((event, err))
        if touched:
            await bulk_execute(conn, _TOUCH, list(touched.values()))
        return effects, refused

    async def _route(
        self, conn: AsyncConnection, edge_id: str, device: _Device, event: Event, now: datetime
    ) -> Effects:
        if event.kind in ALARM_KINDS:
            return await self._on_alarm(conn, edge_id, device, event, now)
        if event.kind == "service_request":
            return await self._on_service_request(conn, device, event, now)
        if event.kind == "low_battery" and device.profile in _BUTTON_PROFILES:
            await self._on_low_battery(conn, device, event, now)
        elif event.kind in ("cancel", "presence") and device.household_id is not None:
            await self._on_follow_up(conn, edge_id, device, device.household_id, event.kind, now)
        return Effects()

    async def _on_alarm(
        self, conn: AsyncConnection, edge_id: str, device: _Device, event: Event, now: datetime
    ) -> Effects:
        if device.household_id is None:
            raise errors.UnknownDevice(
                device.id,
                f"设备 {device.id} 未绑定住户，无法处理 {event.kind} / "
                f"device {device.id} is not bound to a household; cannot route {event.kind}",
            )
        actor = f"device:{device.id}"
        frame_seq = _int_or_none(event.data.get("frame_seq"))
        found = await self._joinable(conn, device.household_id, event.occurred_at)
        if found is not None:
            case, version = found
            new, audit = domain.join_press(
                case,
                kind=event.kind,
                occurred_at=event.occurred_at,
                now=now,
                actor=actor,
                ref_seq=frame_seq,
            )
            await self._save(conn, new, version, [_via(audit, edge_id)])
            taken = new.state in (CaseState.ACKNOWLEDGED, CaseState.ON_SITE)
            effects = Effects()
            await self._renotify(conn, effects, new, now)
            # This press's own button and frame are answered (another button of the household,
            # or on a phone case, too); "case closed" later answers the case's first frame.
            await self._feedback(
                conn,
                effects,
                new,
                "help_coming" if taken else "received",
                now,
                device.edge_id,
                ref_seq=frame_seq,
                device_id=device.id,
            )
            return effects
        place = await household_place(conn, device.household_id)
        case, audit = domain.open_case(
            household_id=place.household_id,
            grid_id=place.grid_id,
            kind=event.kind,
            channel="button",
            occurred_at=event.occurred_at,
            now=now,
            actor=actor,
            device_id=device.id,
            ref_seq=frame_seq,
        )
        _, effects = await self._open(conn, case, _via(audit, edge_id), place, now, device.edge_id)
        return effects

    async def _on_follow_up(
        self,
        conn: AsyncConnection,
        edge_id: str,
        device: _Device,
        household_id: int,
        kind: str,
        now: datetime,
    ) -> None:
        """A cancel or presence press applies to the household's latest active case.

        Presence is believed only while a worker has acknowledged the case: then it marks
        the case on site. Before that it is recorded as a hint (an audit line) and changes
        neither the deadline nor the tier, so escalation goes on: a presence key proves a
        press, not a responder (see ``hub.domain.case.presence_hint``).
        """
        found = await self._latest_active(conn, household_id)
        if found is None:
            return
        case, version = found
        actor = f"device:{device.id}"
        if kind == "cancel":
            new, audit = domain.request_cancel(case, now, actor)
        elif case.state is CaseState.ON_SITE:
            return  # someone is already there
        elif case.state is CaseState.ACKNOWLEDGED:
            new, audit = domain.arrive(case, actor, now)
        else:
            new, audit = domain.presence_hint(case, actor, now)
        await self._save(conn, new, version, [_via(audit, edge_id)])

    async def _on_service_request(
        self, conn: AsyncConnection, device: _Device, event: Event, now: datetime
    ) -> Effects:
        if device.household_id is None:
            raise errors.UnknownDevice(
                device.id, f"device {device.id} is not bound to a household; cannot file a request"
            )
        place = await household_place(conn, device.household_id)
        on_duty = (await available_by_tier(conn, place, now, self.tz))[Tier.GRID_WORKER]
        task_id, category, joined = await file_service_request(
            conn,
            household_id=place.household_id,
            grid_id=place.grid_id,
            device_id=device.id,
            raw_category=event.data.get("category"),
            assigned_worker_id=on_duty[0] if on_duty else None,
            now=now,
        )
        if joined:
            return Effects()  # a repeat press: counted on the open task, the worker knows
        notifications = [
            self._notification(
                place,
                Notify(worker, Tier.GRID_WORKER),
                "service_request",
                event.occurred_at,
                task_id=task_id,
                category=category,
            )
            for worker in on_duty
        ]
        return Effects(notifications=notifications)

    async def _on_low_battery(
        self, conn: AsyncConnection, device: _Device, event: Event, now: datetime
    ) -> None:
        grid_id = None
        if device.household_id is not None:
            grid_id = (await household_place(conn, device.household_id)).grid_id
        await file_maintenance(
            conn,
            device_id=device.id,
            household_id=device.household_id,
            grid_id=grid_id,
            battery_pct=_int_or_none(event.data.get("battery_pct")),
            now=now,
        )

    # -- hotline intake and acts of workers ------------------------------------------------

    async def open_phone_case(
        self, conn: AsyncConnection, household_id: int, note: str, actor: str, now: datetime
    ) -> tuple[int, Effects]:
        """Open a case for a hotline call, or join the household's case if one is running."""
        place = await household_place(conn, household_id)
        found = await self._joinable(conn, household_id, now)
        if found is not None:
            case, version = found
            new, audit = domain.join_press(
                case, kind="phone", occurred_at=now, now=now, actor=actor, note=note
            )
            await self._save(conn, new, version, [audit])
            return new.id, Effects()
        case, audit = domain.open_case(
            household_id=household_id,
            grid_id=place.grid_id,
            kind="phone",
            channel="phone",
            occurred_at=now,
            now=now,
            actor=actor,
            note=note,
        )
        return await self._open(conn, case, audit, place, now, None)

    async def acknowledge(
        self, conn: AsyncConnection, case_id: int, worker_id: int, now: datetime
    ) -> Effects:
        await self._actor(conn, worker_id)
        case, version = await self._load(conn, case_id)
        with _refusals():
            new, audit = domain.acknowledge(case, worker_id, now)
        await self._save(conn, new, version, [audit])
        effects = Effects()
        await self._feedback(conn, effects, new, "help_coming", now)
        return effects

    async def arrive(
        self, conn: AsyncConnection, case_id: int, actor: int | str, now: datetime
    ) -> Effects:
        who = await self._actor(conn, actor)
        case, version = await self._load(conn, case_id)
        with _refusals():
            new, audit = domain.arrive(case, who, now)
        await self._save(conn, new, version, [audit])
        return Effects()

    async def resolve(
        self,
        conn: AsyncConnection,
        case_id: int,
        actor: int | str,
        outcome: Outcome | str,
        note: str,
        now: datetime,
    ) -> Effects:
        who = await self._actor(conn, actor)
        case, version = await self._load(conn, case_id)
        with _refusals():
            try:
                outcome = Outcome(outcome)
            except ValueError:
                known = ", ".join(o.value for o in Outcome)
                raise domain.InvalidTransition(
                    f"unknown outcome {outcome!r}; use {known}"
                ) from None
            new, audit = domain.resolve(case, who, outcome, note, now)
        await self._save(conn, new, version, [audit])
        return Effects()

    async def close(
        self, conn: AsyncConnection, case_id: int, actor: int | str, now: datetime
    ) -> Effects:
        who = await self._actor(conn, actor)
        case, version = await self._load(conn, case_id)
        with _refusals():
            new, audit = domain.close(case, who, now)
        await self._save(conn, new, version, [audit])
        effects = Effects()
        await self._feedback(conn, effects, new, "case_closed", now)
        return effects

    # -- desk acts (issue #12): reassign a case, add a note ----------------------------------

    async def reassign(
        self,
        conn: AsyncConnection,
        case_id: int,
        worker_id: int,
        actor: str,
        note: str,
        now: datetime,
    ) -> Effects:
        """Hand the case to ``worker_id`` and tell them; they must acknowledge it in time.

        The deadline is the timeout of the tier the case is at, so an unconfirmed handover
        escalates on from there. The new worker's notification is marked with the tier
        ``"reassigned"`` (in ``case_notifications`` too), so a review can tell a desk
        handover from the escalation policy's own calls.
        """
        row = (
            await conn.execute(
                select(workers.c.id, workers.c.active).where(workers.c.id == worker_id)
            )
        ).first()
        if row is None:
            raise errors.NotFound(f"worker {worker_id} not found / 工作人员 {worker_id} 不存在")
        if not row.active:
            raise errors.InvalidAct(f"worker {worker_id} is not active / 该工作人员已停用")
        case, version = await self._load(conn, case_id)
        deadline = now + self.policy.timeout(Tier.at(case.tier))
        with _refusals():
            new, audit = domain.reassign(case, worker_id, actor, now, deadline, note)
        await self._save(conn, new, version, [audit])
        await conn.execute(
            insert(case_notifications).values(
                case_id=case.id, worker_id=worker_id, tier=REASSIGNED, notified_at=now
            )
        )
        place = await household_place(conn, case.household_id)
        base = self._notification(
            place,
            Notify(worker_id, Tier.GRID_WORKER),  # composed without an "escalated" banner
            case.kind,
            case.occurred_at,
            case_id=case.id,
            detail=note or case.note,
        )
        notification = replace(
            base,
            tier=REASSIGNED,
            message_zh="【热线改派】" + base.message_zh,
            message_en="[Reassigned by the hotline desk] " + base.message_en,
        )
        return Effects(notifications=[notification])

    async def add_note(
        self, conn: AsyncConnection, case_id: int, actor: str, text: str, now: datetime
    ) -> Effects:
        """Add a note to the case's audit trail; the case's state does not change."""
        case, version = await self._load(conn, case_id)
        with _refusals():
            new, audit = domain.add_note(case, actor, text, now)
        await self._save(conn, new, version, [audit])
        return Effects()

    # -- escalation ------------------------------------------------------------------------

    async def next_deadline(self, conn: AsyncConnection) -> datetime | None:
        """The earliest deadline of a case still awaiting acknowledgement, if any."""
        query = select(func.min(cases.c.deadline_at)).where(_awaiting())
        value: datetime | None = (await conn.execute(query)).scalar()
        return value

    async def escalate_due(self, conn: AsyncConnection, now: datetime) -> Effects:
        """Move on every unacknowledged case whose deadline has passed (one transaction)."""
        effects = Effects()
        for case_id in await self.due_cases(conn, now):
            escalated = await self.escalate_case(conn, case_id, now)
            if escalated is not None:
                effects.extend(escalated)
        return effects

    async def due_cases(self, conn: AsyncConnection, now: datetime) -> list[int]:
        """Ids of the unacknowledged cases whose deadline has passed, earliest first."""
        query = select(cases.c.id).where(_awaiting(), cases.c.deadline_at <= now)
        return [int(i) for i in (await conn.execute(query.order_by(cases.c.deadline_at))).scalars()]

    async def escalate_case(
        self,
        conn: AsyncConnection,
        case_id: int,
        now: datetime,
        clock: Callable[[], datetime] | None = None,
    ) -> Effects | None:
        """Move on one case if its deadline has passed; empty effects when it has not (any
        more); None when another transaction holds it for longer than ``ESCALATION_LOCK_MS``.

        The case is locked first (``FOR UPDATE``; SQLite, with one writer, ignores it), and
        the deadline (due at ``now``) is checked on the row as it is once the lock is had
        (with ``clock``, the escalation is dated when the lock was had): an ingest
        transaction adding a press is waited for (briefly) instead of being failed by a
        version conflict, and of two replicas sweeping at once the second finds the
        deadline moved on and fires nothing (issue #14). The escalation timer runs each
        case in a transaction of its own, so a sweep never holds one case while waiting for
        another (no deadlock with ingest, which locks cases in event order). A holder that
        keeps the lock longer (a stalled process) makes this return None: the timer tries
        the case again soon, after the others.
        """
        query = select(cases).where(cases.c.id == case_id, _awaiting(), cases.c.deadline_at <= now)
        if conn.dialect.name == "postgresql":
            await conn.execute(text(f"SET LOCAL lock_timeout = '{ESCALATION_LOCK_MS}ms'"))
            try:
                async with conn.begin_nested():
                    row = (await conn.execute(query.with_for_update())).mappings().first()
            except DBAPIError as err:
                if getattr(err.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                    return None
                raise
            # Only the case is waited for briefly; the commit may wait for the live feed's
            # commit-order lock as long as it must (``hub.db.schema``).
            await conn.execute(text("SET LOCAL lock_timeout = 0"))
        else:
            row = (await conn.execute(query)).mappings().first()
        effects = Effects()
        if row is None:
            return effects
        if clock is not None:
            # The escalation happens now that the case is had, not when the sweep began:
            # its record (and the next deadline) says when it really fired.
            now = max(now, clock())
        case, version = case_from_row(row), int(row["version"])
        place = await household_place(conn, case.household_id)
        table = await available_by_tier(conn, place, now, self.tz)
        new, notifies, audits = self.policy.escalate_if_due(case, now, _resolver(table))
        if not audits:
            return effects
        try:
            await self._save(conn, new, version, audits)
        except errors.Conflict:
            return effects  # acknowledged meanwhile (SQLite), or another sweep got there first
        await self._notify(conn, effects, new, place, notifies, now)
        return effects

    # -- reading ---------------------------------------------------------------------------

    async def get_case(self, conn: AsyncConnection, case_id: int) -> dict[str, Any]:
        """The case with its household, audit trail, notifications and device commands."""
        case, _ = await self._load(conn, case_id)
        return await queries.case_detail(conn, case)

    async def list_cases(
        self,
        conn: AsyncConnection,
        state: CaseState | str | None = None,
        grid_id: int | None = None,
        household_id: int | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Cases, newest first. ``state`` may also be "escalated" or "cancel_requested"."""
        return await queries.case_list(
            conn,
            state=state,
            grid_id=grid_id,
            household_id=household_id,
            since=since,
            limit=limit,
            offset=offset,
        )

    # -- plumbing --------------------------------------------------------------------------

    async def _open(
        self,
        conn: AsyncConnection,
        case: Case,
        audit: AuditRecord,
        place: Place,
        now: datetime,
        edge_id: str | None,
    ) -> tuple[int, Effects]:
        values = case_values(case)
        result = await conn.execute(insert(cases).values(**values, version=1))
        case = replace(case, id=inserted_id(result))
        table = await available_by_tier(conn, place, now, self.tz)
        new, notifies, audits = self.policy.dispatch(case, now, _resolver(table))
        await self._save(conn, new, 1, [replace(audit, case_id=case.id), *audits])
        effects = Effects()
        await self._notify(conn, effects, new, place, notifies, now)
        await self._feedback(conn, effects, new, "received", now, edge_id)
        return new.id, effects

    async def _renotify(
        self, conn: AsyncConnection, effects: Effects, case: Case, now: datetime
    ) -> None:
        """Tell the case's current worker(s) of a repeat press, at most once per interval.

        Current: the worker who acknowledged, else the workers of the latest notification
        round (the tier the case has reached). The interval is measured from the last
        notification each of them got for this case (``case_notifications``, so a restart
        does not reset it); escalation's own notifications count too.
        """
        t = case_notifications
        rows = (
            await conn.execute(
                select(t.c.worker_id, t.c.tier, t.c.notified_at)
                .where(t.c.case_id == case.id)
                .order_by(t.c.id.desc())
            )
        ).all()
        if case.acknowledged_by is not None:
            mine = [r for r in rows if r.worker_id == case.acknowledged_by]
            tier = Tier(mine[0].tier) if mine else Tier.GRID_WORKER
            current = {case.acknowledged_by: tier}
        elif rows:
            current = {int(r.worker_id): Tier(r.tier) for r in rows if r.tier == rows[0].tier}
        else:
            return  # nobody was ever reachable; escalation keeps trying
        last: dict[int, datetime] = {}
        for r in rows:
            last.setdefault(int(r.worker_id), r.notified_at)
        due = [
            Notify(worker, tier)
            for worker, tier in current.items()
            if worker not in last or now - last[worker] >= self.repeat_notify_interval
        ]
        if not due:
            return
        place = await household_place(conn, case.household_id)
        await conn.execute(
            insert(t),
            [
                {
                    "case_id": case.id,
                    "worker_id": n.worker_id,
                    "tier": n.tier.value,
                    "notified_at": now,
                }
                for n in due
            ],
        )
        detail = f"再次呼叫（第 {case.press_count} 次）/ pressed again (call {case.press_count})"
        effects.notifications.extend(
            self._notification(
                place, n, case.kind, case.occurred_at, case_id=case.id, detail=detail
            )
            for n in due
        )

    async def _save(
        self, conn: AsyncConnection, case: Case, version: int, audits: Sequence[AuditRecord]
    ) -> None:
        result = await conn.execute(
            update(cases)
            .where(cases.c.id == case.id, cases.c.version == version)
            .values(**case_values(case), version=version + 1)
        )
        if result.rowcount != 1:
            raise errors.Conflict(f"case {case.id} was changed meanwhile; reload and retry")
        if audits:
            await conn.execute(insert(case_audit), [queries.audit_values(a) for a in audits])

    async def _load(self, conn: AsyncConnection, case_id: int) -> tuple[Case, int]:
        row = (await conn.execute(select(cases).where(cases.c.id == case_id))).mappings().first()
        if row is None:
            raise errors.NotFound(f"case {case_id} not found")
        return case_from_row(row), int(row["version"])

    async def _joinable(
        self, conn: AsyncConnection, household_id: int, at: datetime
    ) -> tuple[Case, int] | None:
        """The household's active case whose last call is within the dedupe window.

        On PostgreSQL, where hub replicas ingest side by side (issue #14), the household is
        locked for the rest of the transaction first, so two calls of one household handled
        at once by two replicas cannot both find no case and open two; and the case row is
        locked, so an escalation sweep skips it instead of changing it under this press.
        """
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:space, :household)"),
                {"space": HOUSEHOLD_LOCK_SPACE, "household": household_id},
            )
        query = _active_of(household_id).where(cases.c.last_press_at >= at - self.dedupe_window)
        return await _first_case(conn, query.with_for_update())

    async def _latest_active(
        self, conn: AsyncConnection, household_id: int
    ) -> tuple[Case, int] | None:
        return await _first_case(conn, _active_of(household_id))

    async def _devices(self, conn: AsyncConnection, ids: set[str]) -> dict[str, _Device]:
        rows = await select_rows(conn, _DEVICES_BY_ID, {"ids": sorted(ids)})
        return {row[0]: _Device(*row) for row in rows}

    @staticmethod
    def _touch(
        device: _Device,
        event: Event,
        now: datetime,
        touched: dict[str, dict[str, Any]],
        newest: dict[str, datetime],
    ) -> None:
        """Any event proves the device alive, now: last-seen is the hub's receive time.

        The edge's clock decides nothing here (a year-9999 timestamp once kept a device
        "online" for good). Within the batch, an event older than one already applied does
        not change the online flag or battery level. Collects the row update in
        ``touched``, written once per batch.
        """
        row = touched.setdefault(
            device.id,
            {"b_id": device.id, "b_last_seen": now, "b_online": None, "b_battery": None},
        )
        seen = newest.get(device.id)
        if seen is not None and event.occurred_at < seen:
            return
        newest[device.id] = event.occurred_at
        row["b_online"] = event.kind not in _OFFLINE_KINDS
        battery = _int_or_none(event.data.get("battery_pct"))
        if battery is not None and 0 <= battery <= 100:
            row["b_battery"] = battery

    async def _actor(self, conn: AsyncConnection, actor: int | str) -> str:
        """A worker id becomes "worker:<id>" once the worker is known to exist."""
        if isinstance(actor, str):
            return actor
        row = (await conn.execute(select(workers.c.id).where(workers.c.id == actor))).first()
        if row is None:
            raise errors.NotFound(f"worker {actor} not found")
        return f"worker:{actor}"

    async def _notify(
        self,
        conn: AsyncConnection,
        effects: Effects,
        case: Case,
        place: Place,
        notifies: Sequence[Notify],
        now: datetime,
    ) -> None:
        if not notifies:
            return
        await conn.execute(
            insert(case_notifications),
            [
                {
                    "case_id": case.id,
                    "worker_id": n.worker_id,
                    "tier": n.tier.value,
                    "notified_at": now,
                }
                for n in notifies
            ],
        )
        effects.notifications.extend(
            self._notification(
                place, n, case.kind, case.occurred_at, case_id=case.id, detail=case.note
            )
            for n in notifies
        )

    def _notification(
        self,
        place: Place,
        notify: Notify,
        kind: str,
        occurred_at: datetime,
        *,
        case_id: int | None = None,
        task_id: int | None = None,
        detail: str = "",
        category: int | None = None,
    ) -> Notification:
        """Everything the worker's phone shows, for a case or (with ``task_id``) a task."""
        zh, en = compose(
            kind=kind,
            tier=notify.tier,
            resident_name=place.resident_name,
            address=place.address,
            grid_name=place.grid_name,
            occurred_at=occurred_at,
            tz=self.tz,
            lives_alone=place.lives_alone,
            detail=detail,
            category=category,
        )
        resource = f"tasks/{task_id}" if task_id is not None else f"cases/{case_id}"
        return Notification(
            case_id=case_id,
            worker_id=notify.worker_id,
            tier=notify.tier.value,
            kind=kind,
            resident_name=place.resident_name,
            address=place.address,
            grid_name=place.grid_name,
            household_id=place.household_id,
            occurred_at=occurred_at,
            message_zh=zh,
            message_en=en,
            ack_path=f"{self.ack_base_url}/api/v1/{resource}/acknowledge",
            task_id=task_id,
            lives_alone=place.lives_alone,
        )

    async def _feedback(
        self,
        conn: AsyncConnection,
        effects: Effects,
        case: Case,
        code: str,
        now: datetime,
        edge_id: str | None = None,
        *,
        ref_seq: int | None = None,
        device_id: str | None = None,
    ) -> None:
        """Queue a ``button_feedback`` command for a button.

        By default for the case's button, if it came from one, answering the case's first
        frame; a repeat press passes its own ``device_id`` and ``ref_seq``. It goes to the
        edge the button is registered behind (``edge_id`` is that edge when the caller has
        the registry row at hand), never to whoever sent an event.
        """
        if device_id is None:
            if case.channel != "button" or case.device_id is None:
                return
            device_id, ref_seq = case.device_id, case.ref_seq
        if edge_id is None:
            query = select(devices.c.edge_id).where(devices.c.id == device_id)
            edge_id = (await conn.execute(query)).scalar()
            if edge_id is None:
                return  # the device is behind no edge now: nowhere to send it
        args: dict[str, Any] = {"code": code, "case_id": case.id}
        if ref_seq is not None:
            args["ref_seq"] = ref_seq
        command_id = str(uuid.uuid4())
        await conn.execute(
            insert(commands).values(
                id=command_id,
                edge_id=edge_id,
                device_id=device_id,
                name="button_feedback",
                args=args,
                state="pending",
                case_id=case.id,
                created_at=now,
            )
        )
        effects.commands.append(
            Command(command_id, device_id, "button_feedback", {**args, "edge_id": edge_id})
        )


@contextmanager
def _refusals() -> Iterator[None]:
    """Domain refusals become the service's typed error, for the API's 409."""
    try:
        yield
    except domain.InvalidTransition as err:
        raise errors.InvalidTransition(str(err)) from err


def _resolver(table: Mapping[Tier, list[int]]) -> Callable[[Tier], list[int]]:
    return lambda tier: table.get(tier, [])


def _awaiting() -> Any:
    return and_(
        cases.c.state.in_([s.value for s in AWAITING_ACK_STATES]), cases.c.deadline_at.is_not(None)
    )


def _active_of(household_id: int) -> Select[Any]:
    return (
        select(cases)
        .where(
            cases.c.household_id == household_id,
            cases.c.state.in_([s.value for s in ACTIVE_STATES]),
        )
        .order_by(cases.c.last_press_at.desc(), cases.c.id.desc())
        .limit(1)
    )


async def _first_case(conn: AsyncConnection, query: Select[Any]) -> tuple[Case, int] | None:
    row = (await conn.execute(query)).mappings().first()
    return None if row is None else (case_from_row(row), int(row["version"]))


def _foreign(device_id: str, device: _Device | None, edge_id: str) -> str:
    """Why ``edge_id`` may not speak for this device ("" when it may)."""
    if device is None:
        return (
            f"设备 {device_id} 未登记或已退役 / device {device_id} is not registered "
            f"(or is retired)"
        )
    if device.edge_id is None:
        return (
            f"设备 {device_id} 未分配到边缘网关（由 {edge_id} 发送）/ device {device_id} is not "
            f"assigned to an edge (sent by {edge_id})"
        )
    if device.edge_id != edge_id:
        return (
            f"设备 {device_id} 属于边缘网关 {device.edge_id}（由 {edge_id} 发送）/ device "
            f"{device_id} belongs to edge {device.edge_id} (sent by {edge_id})"
        )
    return ""


def _via(audit: AuditRecord, edge_id: str) -> AuditRecord:
    """The audit line of a button press names the edge it came through."""
    via = f"via edge {edge_id}"
    return replace(audit, detail=f"{audit.detail} ({via})" if audit.detail else via)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
