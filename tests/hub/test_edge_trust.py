"""Issue #11 at the service level, on a real migrated SQLite file with the demo community:
an edge speaks only for its own devices, presence before acknowledgement is a hint,
repeat presses join and re-notify at a bounded rate, service requests join the open
task, event times are kept within a window, last-seen is the hub's receive time, and the
quarantine is capped and written in one statement per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contract import Ack, Event, EventBatch, Lane, topics
from contract.mqtt import Message
from hub.config import IngestSettings
from hub.db import schema
from hub.domain.access import Principal, Role
from hub.domain.effects import Effects
from hub.domain.escalation import EscalationPolicy
from hub.handlers.router import DeviceEventRouter, DeviceRow
from hub.ingest import Ingest
from hub.services.cases import CaseService
from hub.services.device_history import EventFilter, list_events, list_readings
from hub.services.org import list_tasks
from hub.services.quarantine import QuarantineLimits, Refusal, add_refusals, list_dropped

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai
EDGE = "edge-demo"  # the seeded buttons are registered behind it
FORGER = "edge-b"
BUTTON = "cb100-77626"  # 张桂英, 第一网格
BUTTON_GRID2 = "cb100-77628"  # 刘建国, 第二网格


@pytest.fixture
def service() -> CaseService:
    return CaseService(EscalationPolicy(), ZoneInfo("Asia/Shanghai"))


def ev(kind: str, device: str = BUTTON, seq: int = 1, at: datetime = T0, **data: Any) -> Event:
    lane = Lane.ALARM if kind in ("sos", "fall") else Lane.NORMAL
    return Event(seq=seq, device_id=device, kind=kind, lane=lane, occurred_at=at, data=data)


async def one(conn: AsyncConnection, query: Any) -> Any:
    return (await conn.execute(query)).scalar_one()


async def worker_id(conn: AsyncConnection, name: str) -> int:
    return int(await one(conn, sa.select(schema.workers.c.id).where(schema.workers.c.name == name)))


async def device_row(conn: AsyncConnection, device_id: str) -> sa.RowMapping:
    query = sa.select(schema.devices).where(schema.devices.c.id == device_id)
    return (await conn.execute(query)).mappings().one()


async def case_row(conn: AsyncConnection, case_id: int) -> sa.RowMapping:
    query = sa.select(schema.cases).where(schema.cases.c.id == case_id)
    return (await conn.execute(query)).mappings().one()


async def count(conn: AsyncConnection, table: sa.Table) -> int:
    return int(await one(conn, sa.select(sa.func.count()).select_from(table)))


async def open_sos(engine: AsyncEngine, service: CaseService) -> int:
    async with engine.begin() as conn:
        await service.on_event(conn, EDGE, ev("sos", frame_seq=41), T0)
        [case] = await service.list_cases(conn)
    return int(case["id"])


# -- device-to-edge binding ----------------------------------------------------------------


async def test_another_edges_forged_presence_cancel_and_sos_are_refused_and_change_nothing(
    engine: AsyncEngine, service: CaseService
) -> None:
    case_id = await open_sos(engine, service)
    later = T0 + timedelta(seconds=10)
    async with engine.begin() as conn:
        before_case = await case_row(conn, case_id)
        before_device = await device_row(conn, BUTTON)
        commands_before = await count(conn, schema.commands)
        forged = [
            ev("presence", seq=1, at=later),
            ev("cancel", seq=2, at=later),
            ev("sos", seq=3, at=later, frame_seq=99),
            ev("sos", device=BUTTON_GRID2, seq=4, at=later, frame_seq=5),
            ev("heartbeat", seq=5, at=later, battery_pct=3),
        ]
        effects, refused = await service.on_events(conn, FORGER, forged, later)
        after_case = await case_row(conn, case_id)
        after_device = await device_row(conn, BUTTON)
        cases = await service.list_cases(conn)
        commands_after = await count(conn, schema.commands)
    assert effects == Effects()
    assert [e.seq for e, _ in refused] == [1, 2, 3, 4, 5]
    reasons = [err.reason for _, err in refused]
    assert all("belongs to edge edge-demo (sent by edge-b)" in r for r in reasons), reasons
    assert all("属于边缘网关 edge-demo" in r for r in reasons)
    assert dict(after_case) == dict(before_case), "the real case is untouched"
    assert (after_case["state"], after_case["cancel_requested"]) == ("dispatched", False)
    assert after_case["deadline_at"] == T0 + timedelta(seconds=60)
    assert len(cases) == 1, "no case opened in the other grid"
    assert commands_after == commands_before, "no feedback for the forger"
    assert (after_device["last_seen"], after_device["battery_pct"], after_device["edge_id"]) == (
        before_device["last_seen"],
        before_device["battery_pct"],
        EDGE,
    )


async def test_an_unassigned_device_is_not_claimed_by_the_first_edge_that_reports_it(
    engine: AsyncEngine, service: CaseService
) -> None:
    async with engine.begin() as conn:
        household = int(
            await one(
                conn, sa.select(schema.devices.c.household_id).where(schema.devices.c.id == BUTTON)
            )
        )
        await conn.execute(
            sa.insert(schema.devices).values(
                id="cb100-55555", household_id=household, profile="cb-100", edge_id=None
            )
        )
        effects, refused = await service.on_events(
            conn, FORGER, [ev("heartbeat", device="cb100-55555"), ev("sos", "cb100-55555", 2)], T0
        )
        row = await device_row(conn, "cb100-55555")
        assert (row["edge_id"], row["last_seen"]) == (None, None), "not claimed"
        assert effects == Effects() and await service.list_cases(conn) == []
        assert len(refused) == 2
        assert (
            "device cb100-55555 is not assigned to an edge (sent by edge-b)" in refused[0][1].reason
        )
        # Assigned explicitly (the registry API does this update), it is heard.
        await conn.execute(
            sa.update(schema.devices)
            .where(schema.devices.c.id == "cb100-55555")
            .values(edge_id=EDGE)
        )
        effects, refused = await service.on_events(conn, EDGE, [ev("sos", "cb100-55555", 3)], T0)
    assert refused == [] and [c.args["edge_id"] for c in effects.commands] == [EDGE]


async def test_the_case_audit_names_the_edge_and_feedback_goes_to_the_registered_edge(
    engine: AsyncEngine, service: CaseService
) -> None:
    case_id = await open_sos(engine, service)
    async with engine.begin() as conn:
        # The button is moved behind another edge in the registry.
        await conn.execute(
            sa.update(schema.devices)
            .where(schema.devices.c.id == BUTTON)
            .values(edge_id="edge-new")
        )
        effects = await service.acknowledge(conn, case_id, await worker_id(conn, "王丽"), T0)
        _, refused = await service.on_events(conn, EDGE, [ev("sos", seq=2)], T0)
        case = await service.get_case(conn, case_id)
    assert [c.args["edge_id"] for c in effects.commands] == ["edge-new"]
    assert "belongs to edge edge-new (sent by edge-demo)" in refused[0][1].reason
    [opened] = [a for a in case["audit"] if a["action"] == "open"]
    assert opened["detail"] == f"button sos from {BUTTON} (via edge {EDGE})"


@dataclass
class RecordingHandler:
    kinds: frozenset[str] | None = None
    ignored_kinds: frozenset[str] = frozenset()
    seen: list[tuple[str, str]] = field(default_factory=list)

    async def on_events(
        self, conn: AsyncConnection, events: Sequence[tuple[DeviceRow, Event]], now: datetime
    ) -> Effects:
        self.seen.extend((row.id, e.kind) for row, e in events)
        return Effects()

    async def on_tick(self, conn: AsyncConnection, now: datetime) -> Effects:
        return Effects()


@dataclass
class FakeBroker:
    connected: bool = True
    published: list[tuple[str, bytes]] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        self.published.append((topic, payload))
        return True

    def ack(self, message: Message) -> None:
        pass


class NoEffects:
    async def dispatch(self, effects: Effects) -> None:
        pass


def make_ingest(
    engine: AsyncEngine,
    *,
    clock: datetime = T0,
    router: DeviceEventRouter | None = None,
    **settings: Any,
) -> tuple[Ingest, FakeBroker]:
    broker = FakeBroker()
    service = CaseService(EscalationPolicy(), ZoneInfo("Asia/Shanghai"))
    options = {"settings": IngestSettings(**settings)} if settings else {}
    ingest = Ingest(engine, service, broker, NoEffects(), lambda: clock, router, **options)  # type: ignore[arg-type]
    return ingest, broker


_batch_counter = iter(range(1, 1_000_000))


def message(edge_id: str, events: Sequence[Event], lane: Lane = Lane.NORMAL) -> Message:
    """One batch on ``lane`` (each event is put in that lane)."""
    same_lane = tuple(replace(e, lane=lane) for e in events)
    payload = EventBatch(edge_id, f"inc-{next(_batch_counter)}", same_lane).encode()
    return Message(topics.events(edge_id, lane), payload, 1, 1, False)


async def test_the_device_event_router_sees_only_placed_events(engine: AsyncEngine) -> None:
    handler = RecordingHandler()
    ingest, broker = make_ingest(engine, router=DeviceEventRouter([handler]))
    events = [
        ev("door.forced", device=BUTTON, seq=1),  # another edge's device
        ev("door.forced", device="nobody-1", seq=2),  # unknown
        ev("config.applied", device=FORGER, seq=3),  # about the sending edge itself
    ]
    await ingest.handle(message(FORGER, events))
    await ingest.handle(message(EDGE, [ev("door.forced", device=BUTTON, seq=1)]))
    assert handler.seen == [(BUTTON, "door.forced")], "only edge-demo's own event"
    acked = [Ack.decode(p) for t, p in broker.published if t == topics.acks(FORGER)]
    assert acked[0].seqs == (1, 2, 3), "refused events are acked: they are quarantined"
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(schema.quarantine))).mappings().all()
    assert sorted(r["device_id"] for r in rows) == [BUTTON, "nobody-1"]
    assert all(r["edge_id"] == FORGER for r in rows)


# -- repeat presses --------------------------------------------------------------------------


async def test_repeat_presses_join_count_renotify_at_a_bounded_rate_and_answer_each_frame(
    engine: AsyncEngine, service: CaseService
) -> None:
    case_id = await open_sos(engine, service)  # 王丽 notified at T0

    async def press(seconds: int, seq: int) -> Effects:
        at = T0 + timedelta(seconds=seconds)
        async with engine.begin() as conn:
            return await service.on_event(conn, EDGE, ev("sos", seq=seq, at=at, frame_seq=seq), at)

    async with engine.connect() as conn:
        wang_li = await worker_id(conn, "王丽")
    quiet = await press(10, 2)
    assert quiet.notifications == [], "told 10 s ago"
    assert [(c.args["code"], c.args["ref_seq"]) for c in quiet.commands] == [("received", 2)]
    loud = await press(61, 3)
    assert [(n.worker_id, n.case_id) for n in loud.notifications] == [(wang_li, case_id)]
    assert "pressed again (call 3)" in loud.notifications[0].message_en
    assert "再次呼叫（第 3 次）" in loud.notifications[0].message_zh
    assert (await press(70, 4)).notifications == []
    async with engine.begin() as conn:
        await service.acknowledge(conn, case_id, wang_li, T0 + timedelta(seconds=80))
    taken = await press(90, 5)
    assert taken.notifications == [], "re-notified at 61 s"
    assert [(c.args["code"], c.args["ref_seq"]) for c in taken.commands] == [("help_coming", 5)]
    again = await press(125, 6)
    assert [n.worker_id for n in again.notifications] == [wang_li], "the one who took it"
    async with engine.begin() as conn:
        listed = await service.list_cases(conn)
        detail = await service.get_case(conn, case_id)
        await service.resolve(conn, case_id, wang_li, "false_alarm", "", T0 + timedelta(minutes=5))
        closed = await service.close(conn, case_id, "郑芳", T0 + timedelta(minutes=6))
    assert [c["press_count"] for c in listed] == [6] and detail["press_count"] == 6
    assert sum(a["action"] == "join" for a in detail["audit"]) == 5
    assert [(c.args["code"], c.args["ref_seq"]) for c in closed.commands] == [("case_closed", 41)]


async def test_a_press_of_another_button_of_the_household_is_answered_on_that_button(
    engine: AsyncEngine, service: CaseService
) -> None:
    case_id = await open_sos(engine, service)
    async with engine.begin() as conn:
        household = int(
            await one(
                conn,
                sa.select(schema.devices.c.household_id).where(schema.devices.c.id == BUTTON),
            )
        )
        await conn.execute(
            sa.insert(schema.devices).values(
                id="cb100-55556", household_id=household, profile="cb-100", edge_id=EDGE
            )
        )
        effects = await service.on_event(conn, EDGE, ev("fall", "cb100-55556", 2, frame_seq=9), T0)
        row = await case_row(conn, case_id)
    assert (row["press_count"], row["device_id"], row["ref_seq"]) == (2, BUTTON, 41)
    [command] = effects.commands
    assert (command.device_id, command.args["ref_seq"], command.args["code"]) == (
        "cb100-55556",
        9,
        "received",
    )


async def test_repeat_press_of_an_escalated_case_renotifies_the_current_tier(
    engine: AsyncEngine,
) -> None:
    service = CaseService(
        EscalationPolicy(), ZoneInfo("Asia/Shanghai"), repeat_notify_interval=timedelta(seconds=5)
    )
    await open_sos(engine, service)
    async with engine.begin() as conn:
        escalated = await service.escalate_due(conn, T0 + timedelta(seconds=60))
        at = T0 + timedelta(seconds=64)
        early = await service.on_event(conn, EDGE, ev("sos", seq=2, at=at), at)
        at = T0 + timedelta(seconds=66)
        due = await service.on_event(conn, EDGE, ev("sos", seq=3, at=at), at)
        sun = await worker_id(conn, "孙强")
    assert [n.worker_id for n in escalated.notifications] == [sun]
    assert early.notifications == [], "the backup worker was told 4 s ago"
    assert [(n.worker_id, n.tier) for n in due.notifications] == [(sun, "backup_worker")]


async def test_repeat_service_requests_join_the_households_open_task(
    engine: AsyncEngine, service: CaseService
) -> None:
    presses = [ev("service_request", seq=s, category=1) for s in range(1, 301)]
    async with engine.begin() as conn:
        effects, refused = await service.on_events(conn, EDGE, presses, T0)
        other = await service.on_event(conn, EDGE, ev("service_request", seq=301, category=2), T0)
        tasks = await list_tasks(conn, kind="service_request")
    assert refused == []
    assert len(effects.notifications) == 1, "one notification, not 300"
    assert len(other.notifications) == 1, "another category is another task"
    by_category = {t["category"]: t for t in tasks}
    assert set(by_category) == {1, 2}
    assert (by_category[1]["press_count"], by_category[2]["press_count"]) == (300, 1)
    async with engine.begin() as conn:
        wang_li = await worker_id(conn, "王丽")
        await conn.execute(
            sa.update(schema.tasks)
            .where(schema.tasks.c.id == by_category[1]["id"])
            .values(state="done", acknowledged_by=wang_li)
        )
        after = await service.on_event(conn, EDGE, ev("service_request", seq=302, category=1), T0)
        assert len(await list_tasks(conn, kind="service_request")) == 3
    assert len(after.notifications) == 1, "a request after the task was done is new"


# -- time ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edge_time",
    [
        datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
        T0 + timedelta(minutes=6),
        T0 - timedelta(days=31),
        datetime(1, 1, 1, tzinfo=UTC),
    ],
)
async def test_event_times_outside_the_window_become_the_receive_time_with_the_reason(
    engine: AsyncEngine, edge_time: datetime
) -> None:
    ingest, _ = make_ingest(engine)
    await ingest.handle(
        message(EDGE, [ev("sos", at=edge_time, frame_seq=1), ev("heartbeat", seq=2, at=edge_time)])
    )
    async with engine.connect() as conn:
        stored = (await conn.execute(sa.select(schema.events))).mappings().all()
        device = await device_row(conn, BUTTON)
        cases = (await conn.execute(sa.select(schema.cases))).mappings().all()
    assert [e["occurred_at"] for e in stored] == [T0, T0]
    note = stored[0]["data"]["hub_clock"]
    assert note["edge_at"].startswith(f"{edge_time.year:04d}-")
    assert "the hub's receive time is used" in note["reason"]
    assert ingest.stats["clamped"] == 2
    assert device["last_seen"] == T0
    assert [(c["occurred_at"], c["deadline_at"]) for c in cases] == [
        (T0, T0 + timedelta(seconds=60))
    ], "the help call is kept, on the hub's clock"


async def test_times_inside_the_window_are_kept_and_last_seen_is_the_receive_time(
    engine: AsyncEngine,
) -> None:
    receive = T0 + timedelta(minutes=2)
    ingest, _ = make_ingest(engine, clock=receive)
    ahead, behind = T0 + timedelta(minutes=6), T0 - timedelta(days=29)
    await ingest.handle(
        message(EDGE, [ev("heartbeat", seq=1, at=behind), ev("heartbeat", seq=2, at=ahead)])
    )
    async with engine.connect() as conn:
        stored = (await conn.execute(sa.select(schema.events))).mappings().all()
        device = await device_row(conn, BUTTON)
    assert [e["occurred_at"] for e in stored] == [behind, ahead]
    assert all("hub_clock" not in e["data"] for e in stored)
    assert device["last_seen"] == receive, "the hub's clock, not the edge's"


async def test_the_time_window_is_configurable(engine: AsyncEngine) -> None:
    ingest, _ = make_ingest(engine, max_future_s=10, max_past_s=60)
    await ingest.handle(
        message(
            EDGE,
            [
                ev("heartbeat", seq=1, at=T0 + timedelta(seconds=11)),
                ev("heartbeat", seq=2, at=T0 - timedelta(seconds=59)),
            ],
        )
    )
    assert ingest.stats["clamped"] == 1


# -- quarantine caps -------------------------------------------------------------------------


def refusals(device: str | None, n: int, start: int = 0) -> list[Refusal]:
    return [Refusal("t", f"reason {start + i}", "{}", device) for i in range(n)]


async def test_quarantine_caps_keep_the_newest_rows_and_count_the_rest(
    engine: AsyncEngine,
) -> None:
    limits = QuarantineLimits(per_device=3, per_edge=5, max_rows=8)
    async with engine.begin() as conn:
        await add_refusals(conn, "e1", refusals("d1", 4), T0, limits)  # 1 over per-device
        await add_refusals(conn, "e1", refusals("d2", 2) + refusals(None, 2), T0, limits)
        await add_refusals(conn, "e2", refusals("d1", 3, start=10), T0, limits)
        await add_refusals(conn, "e3", refusals("d9", 3, start=20), T0, limits)  # prunes 3
        rows = (
            (await conn.execute(sa.select(schema.quarantine).order_by(schema.quarantine.c.id)))
            .mappings()
            .all()
        )
        dropped = {(d["edge_id"], d["cause"]): d["count"] for d in await list_dropped(conn)}
    assert len(rows) == 8
    kept = [(r["edge_id"], r["device_id"], r["reason"]) for r in rows]
    assert ("e1", "d1", "reason 0") not in kept, "a device's oldest row went first"
    assert ("e3", "d9", "reason 22") in kept, "the newest are kept"
    assert dropped == {("e1", "device_cap"): 1, ("e1", "edge_cap"): 2, ("", "pruned"): 3}


async def test_a_flood_of_unknown_devices_is_capped_counted_and_written_in_one_statement(
    engine: AsyncEngine,
) -> None:
    inserts: list[int] = []

    def count_inserts(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO quarantine "):
            inserts.append(1)

    sa_event.listen(engine.sync_engine, "before_cursor_execute", count_inserts)
    ingest, broker = make_ingest(engine, quarantine_per_edge=100, transaction_budget_s=5)
    flood = [ev("heartbeat", device=f"ghost-{n}", seq=n) for n in range(1, 2001)]
    await ingest.handle(message(FORGER, flood, Lane.TELEMETRY))
    async with engine.connect() as conn:
        rows = await count(conn, schema.quarantine)
        dropped = await list_dropped(conn)
    assert rows == 100
    assert [(d["edge_id"], d["cause"], d["count"]) for d in dropped] == [(FORGER, "edge_cap", 1900)]
    assert len(inserts) == 1, "one INSERT statement for the whole batch"
    assert ingest.stats["quarantined"] == 2000
    [ack] = [Ack.decode(p) for t, p in broker.published if t == topics.acks(FORGER)]
    assert len(ack.seqs) == 2000


async def test_whole_messages_that_break_the_contract_are_capped_per_edge(
    engine: AsyncEngine,
) -> None:
    ingest, _ = make_ingest(engine, quarantine_per_edge=3)
    for n in range(5):
        await ingest.handle(Message(topics.events(FORGER, Lane.ALARM), b"{bad %d" % n, 1, n, False))
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(schema.quarantine))).mappings().all()
        dropped = await list_dropped(conn)
    assert [r["payload"] for r in rows] == ["{bad 2", "{bad 3", "{bad 4"]
    assert all(r["edge_id"] == FORGER for r in rows)
    assert [(d["edge_id"], d["cause"], d["count"]) for d in dropped] == [(FORGER, "edge_cap", 2)]


async def test_a_forged_event_is_no_history_of_the_device_it_names(engine: AsyncEngine) -> None:
    """A refused event keeps its row (its uid recognises a resend) but is marked, so the
    device's events and readings show only what its own edge sent."""
    ingest, _ = make_ingest(engine)
    forged = ev("reading", device=BUTTON, seq=1, battery_pct=1)
    own = ev("reading", device=BUTTON, seq=1, battery_pct=87)
    await ingest.handle(message(FORGER, [forged], Lane.TELEMETRY))
    await ingest.handle(message(EDGE, [own], Lane.TELEMETRY))
    operator = Principal(kind="user", name="op", role=Role.OPERATOR)
    async with engine.connect() as conn:
        stored = (await conn.execute(sa.select(schema.events.c.edge_id))).scalars().all()
        history = await list_events(conn, operator, EventFilter(device_id=BUTTON))
        everything = await list_events(conn, operator, EventFilter())
        series = await list_readings(
            conn,
            operator,
            BUTTON,
            field_name="battery_pct",
            since=None,
            until=None,
            before_id=None,
            limit=50,
        )
    assert sorted(stored) == sorted([EDGE, FORGER]), "both rows are kept, for resends"
    assert [e["edge_id"] for e in history] == [EDGE]
    assert [e["edge_id"] for e in everything] == [EDGE]
    assert [p["value"] for p in series] == [87]


async def test_an_event_a_handler_refuses_reaches_no_later_handler(engine: AsyncEngine) -> None:
    """An SOS from a button behind the right edge but bound to no household is refused by
    the help-call handler (first in line); no device feature after it keeps the event."""
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.devices).values(
                id="cb100-55557", household_id=None, profile="cb-100", edge_id=EDGE
            )
        )
    handler = RecordingHandler()
    ingest, _ = make_ingest(engine, router=DeviceEventRouter([handler]))
    events = [ev("sos", device="cb100-55557", seq=1), ev("presence", device=BUTTON, seq=2)]
    await ingest.handle(message(EDGE, events))
    assert handler.seen == [(BUTTON, "presence")]
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(schema.quarantine))).mappings().all()
        refused = (
            await conn.execute(sa.select(schema.events.c.refused).order_by(schema.events.c.id))
        ).scalars()
        assert list(refused) == [True, False]
    assert [r["device_id"] for r in rows] == ["cb100-55557"]
    assert "not bound to a household" in rows[0]["reason"]
