"""The case service on a real database (SQLite, PostgreSQL): migrations, demo seed, events,
acts, escalation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contract import Event, Lane
from hub.db import schema
from hub.db.migrate import upgrade_to_head
from hub.domain.case import CaseState, Outcome
from hub.domain.effects import Effects
from hub.domain.escalation import EscalationPolicy
from hub.services.cases import CaseService
from hub.services.errors import InvalidAct, InvalidTransition, NotFound, UnknownDevice
from hub.services.org import (
    add_quarantine,
    advance_task,
    list_quarantine,
    list_tasks,
    seed_demo_community,
)

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai
EDGE = "edge-demo"
BUTTON = "cb100-77626"  # 张桂英, 幸福里小区3号楼2单元301室, 第一网格, lives alone
BUTTON_GRID2 = "cb100-77628"  # 刘建国, 第二网格


@pytest.fixture
def service() -> CaseService:
    return CaseService(EscalationPolicy(), ZoneInfo("Asia/Shanghai"))


def event(kind: str, device: str = BUTTON, seq: int = 1, at: datetime = T0, **data: Any) -> Event:
    lane = Lane.ALARM if kind in ("sos", "fall") else Lane.NORMAL
    return Event(seq=seq, device_id=device, kind=kind, lane=lane, occurred_at=at, data=data)


async def worker_id(conn: AsyncConnection, name: str) -> int:
    query = sa.select(schema.workers.c.id).where(schema.workers.c.name == name)
    return int((await conn.execute(query)).scalar_one())


async def case_row(conn: AsyncConnection, case_id: int) -> sa.RowMapping:
    query = sa.select(schema.cases).where(schema.cases.c.id == case_id)
    return (await conn.execute(query)).mappings().one()


async def command_rows(conn: AsyncConnection) -> list[sa.RowMapping]:
    query = sa.select(schema.commands).order_by(schema.commands.c.created_at)
    return list((await conn.execute(query)).mappings().all())


async def sos(engine: AsyncEngine, service: CaseService, **kwargs: Any) -> tuple[int, Effects]:
    async with engine.begin() as conn:
        effects = await service.on_event(conn, EDGE, event("sos", frame_seq=41, **kwargs), T0)
        cases = await service.list_cases(conn)
    return int(cases[0]["id"]), effects


# -- schema and seed -----------------------------------------------------------------------


async def test_migrations_are_idempotent_and_engine_sets_pragmas(
    engine: AsyncEngine, database_url: str
) -> None:
    upgrade_to_head(database_url)  # a second start-up is a no-op
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        if engine.dialect.name == "postgresql":
            settings = {
                name: (await conn.exec_driver_sql(f"SHOW {name}")).scalar()
                for name in ("synchronous_commit", "TimeZone", "application_name")
            }
        else:
            settings = {
                p: (await conn.exec_driver_sql(f"PRAGMA {p}")).scalar()
                for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    assert set(schema.metadata.tables) <= set(names)
    if engine.dialect.name == "postgresql":
        # on even where the server says off (the test cluster does): the SOS ack needs it
        assert settings == {
            "synchronous_commit": "on",
            "TimeZone": "UTC",
            "application_name": "hub",
        }
    else:
        assert settings == {
            "journal_mode": "wal",
            "synchronous": 2,
            "foreign_keys": 1,
            "busy_timeout": 5000,
        }


async def test_seed_is_idempotent(engine: AsyncEngine) -> None:
    async def counts() -> dict[str, int]:
        async with engine.connect() as conn:
            return {
                name: int(
                    (await conn.execute(sa.select(sa.func.count()).select_from(t))).scalar_one()
                )
                for name, t in schema.metadata.tables.items()
            }

    before = await counts()
    async with engine.begin() as conn:
        await seed_demo_community(conn, T0)
    assert await counts() == before
    assert before["households"] >= 6 and before["grids"] == 2 and before["devices"] == 3
    assert before["workers"] == 6


# -- SOS from a button ---------------------------------------------------------------------


async def test_sos_opens_a_dispatched_case_for_the_right_household(
    engine: AsyncEngine, service: CaseService
) -> None:
    case_id, effects = await sos(engine, service)
    async with engine.connect() as conn:
        case = await service.get_case(conn, case_id)
        wang_li = await worker_id(conn, "王丽")
        commands = await command_rows(conn)
        device = (
            (await conn.execute(sa.select(schema.devices).where(schema.devices.c.id == BUTTON)))
            .mappings()
            .one()
        )
    assert case["state"] == "dispatched" and case["tier"] == 0 and case["channel"] == "button"
    assert case["household"]["address"] == "幸福里小区3号楼2单元301室"
    assert case["household"]["grid_name"] == "第一网格"
    assert case["ref_seq"] == 41 and case["device_id"] == BUTTON
    assert case["deadline_at"] == T0 + timedelta(seconds=60)
    assert case["display"] == {"key": "dispatched", "zh": "已派单", "en": "dispatched"}
    assert [(n["worker_name"], n["tier"]) for n in case["notifications"]] == [
        ("王丽", "grid_worker")
    ]
    assert [a["action"] for a in case["audit"]] == ["open", "dispatch"]

    [notification] = effects.notifications
    assert (notification.worker_id, notification.case_id, notification.kind) == (
        wang_li,
        case_id,
        "sos",
    )
    assert notification.resident_name == "张桂英" and notification.lives_alone
    assert notification.ack_path == f"/api/v1/cases/{case_id}/acknowledge"
    assert "张桂英（独居）" in notification.message_zh and "09:00" in notification.message_zh
    assert notification.to_json_obj()["occurred_at"] == "2025-03-03T01:00:00.000Z"

    [command] = effects.commands
    assert (command.device_id, command.name) == (BUTTON, "button_feedback")
    assert command.args == {"code": "received", "ref_seq": 41, "case_id": case_id, "edge_id": EDGE}
    [row] = commands
    assert (row["id"], row["state"], row["edge_id"]) == (command.command_id, "pending", EDGE)
    assert row["args"] == {"code": "received", "ref_seq": 41, "case_id": case_id}
    assert device["last_seen"] == T0 and device["online"]


async def test_second_sos_within_the_window_joins_the_case(
    engine: AsyncEngine, service: CaseService
) -> None:
    case_id, _ = await sos(engine, service)
    later = T0 + timedelta(minutes=9)
    async with engine.begin() as conn:
        effects = await service.on_event(
            conn, EDGE, event("fall", seq=2, at=later, frame_seq=42), later
        )
        cases = await service.list_cases(conn)
        row = await case_row(conn, case_id)
    assert len(cases) == 1
    # The case keeps the first frame's seq (what "case closed" answers, issue #16) ...
    assert (row["press_count"], row["ref_seq"], row["last_press_at"]) == (2, 41, later)
    # ... the workers, told 9 minutes ago, hear of the repeat press (issue #11) ...
    assert [n.tier for n in effects.notifications] == ["grid_worker"]
    assert "pressed again (call 2)" in effects.notifications[0].message_en
    # ... and the repeat press's own frame is answered.
    assert [c.args["code"] for c in effects.commands] == ["received"]
    assert effects.commands[0].args["ref_seq"] == 42


async def test_sos_after_the_window_opens_a_new_case(
    engine: AsyncEngine, service: CaseService
) -> None:
    await sos(engine, service)
    later = T0 + timedelta(minutes=10, seconds=1)
    async with engine.begin() as conn:
        await service.on_event(conn, EDGE, event("sos", seq=2, at=later), later)
        assert len(await service.list_cases(conn)) == 2


async def test_acknowledge_sends_help_coming_and_stops_escalation(
    engine: AsyncEngine, service: CaseService
) -> None:
    case_id, _ = await sos(engine, service)
    async with engine.begin() as conn:
        wang_li = await worker_id(conn, "王丽")
        effects = await service.acknowledge(conn, case_id, wang_li, T0 + timedelta(seconds=20))
        assert await service.next_deadline(conn) is None
        row = await case_row(conn, case_id)
    assert (row["state"], row["acknowledged_by"], row["deadline_at"]) == (
        "acknowledged",
        wang_li,
        None,
    )
    [command] = effects.commands
    assert command.args == {
        "code": "help_coming",
        "ref_seq": 41,
        "case_id": case_id,
        "edge_id": EDGE,
    }
    async with engine.begin() as conn:
        assert (await service.escalate_due(conn, T0 + timedelta(hours=1))) == Effects()
        with pytest.raises(InvalidTransition, match="already acknowledged"):
            await service.acknowledge(conn, case_id, wang_li, T0 + timedelta(seconds=30))
        with pytest.raises(NotFound, match="case 999 not found"):
            await service.acknowledge(conn, 999, wang_li, T0)
        with pytest.raises(NotFound, match="worker 999 not found"):
            await service.acknowledge(conn, case_id, 999, T0)


async def test_no_ack_escalates_to_the_backup_worker_at_the_deadline(
    engine: AsyncEngine, service: CaseService
) -> None:
    case_id, _ = await sos(engine, service)
    async with engine.begin() as conn:
        deadline = await service.next_deadline(conn)
        assert deadline == T0 + timedelta(seconds=60)
        early = await service.escalate_due(conn, deadline - timedelta(milliseconds=1))
        effects = await service.escalate_due(conn, deadline)
        sun_qiang = await worker_id(conn, "孙强")
        case = await service.get_case(conn, case_id)
    assert early == Effects()
    assert [(n.worker_id, n.tier) for n in effects.notifications] == [(sun_qiang, "backup_worker")]
    assert "已升级至后备网格员" in effects.notifications[0].message_zh
    assert effects.commands == []
    assert (case["state"], case["tier"], case["display"]["zh"]) == ("dispatched", 1, "已升级")
    assert [(n["worker_name"], n["tier"]) for n in case["notifications"]] == [
        ("王丽", "grid_worker"),
        ("孙强", "backup_worker"),
    ]
    assert case["deadline_at"] == deadline + timedelta(seconds=60)


async def test_unanswered_case_reaches_the_hotline_and_keeps_ringing(
    engine: AsyncEngine, service: CaseService
) -> None:
    case_id, _ = await sos(engine, service)
    reached = []
    async with engine.begin() as conn:
        for _ in range(6):
            deadline = await service.next_deadline(conn)
            assert deadline is not None
            effects = await service.escalate_due(conn, deadline)
            reached.append([n.tier for n in effects.notifications])
        case = await service.get_case(conn, case_id)
    assert reached == [
        ["backup_worker"],
        ["community_station"],
        ["street_centre"],
        ["hotline_desk"],
        ["hotline_desk"],
        ["hotline_desk"],
    ]
    assert case["tier"] == 4
    assert [a["action"] for a in case["audit"]][-3:] == ["escalate", "renotify", "renotify"]


async def test_grid_worker_off_the_roster_is_skipped_and_audited(
    engine: AsyncEngine, service: CaseService
) -> None:
    async with engine.begin() as conn:
        wang_li = await worker_id(conn, "王丽")
        await conn.execute(
            sa.update(schema.workers).where(schema.workers.c.id == wang_li).values(active=False)
        )
    case_id, effects = await sos(engine, service)
    async with engine.connect() as conn:
        case = await service.get_case(conn, case_id)
    assert [n.tier for n in effects.notifications] == ["backup_worker"]
    assert [(a["action"], a["detail"]) for a in case["audit"]][1] == (
        "skip_tier",
        "grid_worker: nobody available",
    )


async def test_override_routes_to_the_covering_worker(
    engine: AsyncEngine, service: CaseService
) -> None:
    async with engine.begin() as conn:
        cover = await worker_id(conn, "赵敏")
        grid = await conn.execute(
            sa.select(schema.grids.c.id).where(schema.grids.c.name == "第一网格")
        )
        await conn.execute(
            sa.insert(schema.shift_overrides).values(
                worker_id=cover,
                grid_id=grid.scalar_one(),
                starts_at=T0 - timedelta(hours=1),
                ends_at=T0 + timedelta(hours=1),
                role="primary",
                note="王丽请假",
            )
        )
    _, effects = await sos(engine, service)
    assert [(n.worker_id, n.tier) for n in effects.notifications] == [(cover, "grid_worker")]


async def test_cancel_flags_the_case_but_keeps_it_running(
    engine: AsyncEngine, service: CaseService
) -> None:
    case_id, _ = await sos(engine, service)
    later = T0 + timedelta(seconds=10)
    async with engine.begin() as conn:
        effects = await service.on_event(conn, EDGE, event("cancel", seq=2, at=later), later)
        case = await service.get_case(conn, case_id)
        escalated = await service.escalate_due(conn, T0 + timedelta(seconds=60))
    assert effects == Effects()
    assert case["cancel_requested"] and case["state"] == "dispatched"
    assert case["display"]["zh"] == "申请取消"
    assert len(escalated.notifications) == 1, "a cancel does not stop escalation"


async def test_presence_marks_on_site(engine: AsyncEngine, service: CaseService) -> None:
    case_id, _ = await sos(engine, service)
    async with engine.begin() as conn:
        await service.acknowledge(conn, case_id, await worker_id(conn, "王丽"), T0)
        later = T0 + timedelta(minutes=8)
        await service.on_event(conn, EDGE, event("presence", seq=2, at=later), later)
        row = await case_row(conn, case_id)
        # A second presence press is harmless.
        await service.on_event(conn, EDGE, event("presence", seq=3, at=later), later)
    assert (row["state"], row["arrived_at"]) == ("on_site", later)


async def test_presence_before_acknowledgement_is_a_hint_and_escalation_goes_on(
    engine: AsyncEngine, service: CaseService
) -> None:
    """Issue #11: a presence press from any button used to stop escalation."""
    case_id, _ = await sos(engine, service)
    async with engine.begin() as conn:
        deadline = await service.next_deadline(conn)
        await service.on_event(conn, EDGE, event("presence", seq=2), T0)
        row = await case_row(conn, case_id)
        assert (row["state"], row["arrived_at"], row["deadline_at"]) == (
            "dispatched",
            None,
            deadline,
        )
        assert await service.next_deadline(conn) == deadline
        escalated = await service.escalate_due(conn, T0 + timedelta(seconds=60))
        case = await service.get_case(conn, case_id)
    assert len(escalated.notifications) == 1, "the backup worker is still called"
    [hint] = [a for a in case["audit"] if a["action"] == "presence_hint"]
    assert hint["actor"] == f"device:{BUTTON}" and "via edge edge-demo" in hint["detail"]
    assert "escalation continues" in hint["detail"]


async def test_resolve_and_close(engine: AsyncEngine, service: CaseService) -> None:
    case_id, _ = await sos(engine, service)
    async with engine.begin() as conn:
        wang_li = await worker_id(conn, "王丽")
        with pytest.raises(InvalidTransition, match="acknowledge it before resolving"):
            await service.resolve(conn, case_id, wang_li, Outcome.FALSE_ALARM, "", T0)
        await service.acknowledge(conn, case_id, wang_li, T0 + timedelta(seconds=20))
        await service.arrive(conn, case_id, wang_li, T0 + timedelta(minutes=7))
        with pytest.raises(InvalidTransition, match="unknown outcome"):
            await service.resolve(conn, case_id, wang_li, "eaten_by_bears", "", T0)
        await service.resolve(
            conn,
            case_id,
            wang_li,
            "helped_on_site",
            "老人跌倒，已扶起，无外伤",
            T0 + timedelta(minutes=20),
        )
        effects = await service.close(conn, case_id, "郑芳", T0 + timedelta(minutes=30))
        case = await service.get_case(conn, case_id)
        with pytest.raises(
            InvalidTransition, match=f"case {case_id} is closed; cannot acknowledge"
        ):
            await service.acknowledge(conn, case_id, wang_li, T0 + timedelta(hours=1))
    assert [c.args["code"] for c in effects.commands] == ["case_closed"]
    assert (case["state"], case["outcome"], case["resolution_note"]) == (
        "closed",
        "helped_on_site",
        "老人跌倒，已扶起，无外伤",
    )
    assert [a["action"] for a in case["audit"]] == [
        "open",
        "dispatch",
        "acknowledge",
        "arrive",
        "resolve",
        "close",
    ]
    assert case["audit"][-1]["actor"] == "郑芳" and case["audit"][3]["actor"] == f"worker:{wang_li}"
    assert [c["args"]["code"] for c in case["commands"]] == [
        "received",
        "help_coming",
        "case_closed",
    ]


async def test_phone_case_is_routed_without_button_feedback(
    engine: AsyncEngine, service: CaseService
) -> None:
    async with engine.begin() as conn:
        household = (
            await conn.execute(
                sa.select(schema.households.c.id).where(
                    schema.households.c.address == "和平新村8号楼3单元201室"
                )
            )
        ).scalar_one()
        case_id, effects = await service.open_phone_case(
            conn, household, "女儿来电：联系不上父亲", "郑芳", T0
        )
        zhao_min = await worker_id(conn, "赵敏")
        case = await service.get_case(conn, case_id)
        again, joined = await service.open_phone_case(conn, household, "又来电", "郑芳", T0)
        with pytest.raises(NotFound, match="household 999 not found"):
            await service.open_phone_case(conn, 999, "", "郑芳", T0)
    assert (case["channel"], case["kind"], case["state"]) == ("phone", "phone", "dispatched")
    assert case["household"]["grid_name"] == "第二网格"
    assert [(n.worker_id, n.kind) for n in effects.notifications] == [(zhao_min, "phone")]
    assert "联系不上父亲" in effects.notifications[0].message_zh
    assert effects.commands == []
    assert (again, joined) == (case_id, Effects())


async def test_service_request_creates_a_task_not_a_case(
    engine: AsyncEngine, service: CaseService
) -> None:
    async with engine.begin() as conn:
        effects = await service.on_event(conn, EDGE, event("service_request", category=1), T0)
        odd = await service.on_event(conn, EDGE, event("service_request", seq=2, category=42), T0)
        tasks = await list_tasks(conn, kind="service_request")
        wang_li = await worker_id(conn, "王丽")
        assert await service.list_cases(conn) == []
        await advance_task(conn, tasks[-1]["id"], wang_li, "acknowledged", T0)
        await advance_task(conn, tasks[-1]["id"], wang_li, "done", T0)
        with pytest.raises(InvalidAct, match="is done; cannot mark it done"):
            await advance_task(conn, tasks[-1]["id"], wang_li, "done", T0)
        done = await list_tasks(conn, state="done")
    assert len(tasks) == 2
    first = next(t for t in tasks if t["category"] == 1)
    assert (first["state"], first["assigned_worker_id"], first["detail"]) == (
        "open",
        wang_li,
        "助餐送餐 / meal delivery",
    )
    assert next(t for t in tasks if t is not first)["category"] == 11
    [notification] = effects.notifications
    assert (notification.kind, notification.case_id) == ("service_request", None)
    assert notification.ack_path == f"/api/v1/tasks/{first['id']}/acknowledge"
    assert "申请助餐送餐" in notification.message_zh
    assert effects.commands == [] and len(odd.notifications) == 1
    assert [t["id"] for t in done] == [tasks[-1]["id"]]


async def test_low_battery_files_one_maintenance_task_and_heartbeats_update_the_device(
    engine: AsyncEngine, service: CaseService
) -> None:
    async with engine.begin() as conn:
        for seq in (1, 2):
            await service.on_event(conn, EDGE, event("low_battery", seq=seq, battery_pct=9), T0)
        later = T0 + timedelta(minutes=5)
        await service.on_event(
            conn, EDGE, event("heartbeat", seq=3, at=later, battery_pct=8), later
        )
        tasks = await list_tasks(conn, kind="maintenance")
        device = (
            (await conn.execute(sa.select(schema.devices).where(schema.devices.c.id == BUTTON)))
            .mappings()
            .one()
        )
    assert len(tasks) == 1 and "9%" in tasks[0]["detail"] and tasks[0]["device_id"] == BUTTON
    assert (device["battery_pct"], device["last_seen"]) == (8, later)


async def test_unknown_and_unbound_devices_are_refused(
    engine: AsyncEngine, service: CaseService
) -> None:
    async with engine.begin() as conn:
        with pytest.raises(UnknownDevice, match="device cb100-00000 is not registered") as caught:
            await service.on_event(conn, EDGE, event("sos", device="cb100-00000"), T0)
        assert caught.value.device_id == "cb100-00000"
        await conn.execute(
            sa.insert(schema.devices).values(id="cb100-99999", profile="cb100", edge_id=EDGE)
        )
        with pytest.raises(UnknownDevice, match="not bound to a household"):
            await service.on_event(conn, EDGE, event("sos", device="cb100-99999"), T0)
        # Follow-ups and heartbeats from such a device are harmless.
        assert (
            await service.on_event(conn, EDGE, event("cancel", device="cb100-99999"), T0)
            == Effects()
        )
        assert (
            await service.on_event(conn, EDGE, event("heartbeat", device="cb100-99999"), T0)
            == Effects()
        )
        assert await service.list_cases(conn) == []


async def test_list_cases_filters(engine: AsyncEngine, service: CaseService) -> None:
    await sos(engine, service)
    async with engine.begin() as conn:
        await service.on_event(conn, EDGE, event("sos", device=BUTTON_GRID2, seq=2), T0)
        await service.escalate_due(conn, T0 + timedelta(seconds=60))
        everything = await service.list_cases(conn)
        grids = {c["grid_name"] for c in everything}
        escalated = await service.list_cases(conn, state="escalated")
        dispatched = await service.list_cases(conn, state=CaseState.DISPATCHED)
        by_household = await service.list_cases(conn, household_id=everything[0]["household_id"])
        none_since = await service.list_cases(conn, since=T0 + timedelta(seconds=1))
        paged = await service.list_cases(conn, limit=1, offset=1)
    assert grids == {"第一网格", "第二网格"}
    assert len(escalated) == 2 and len(dispatched) == 2 and len(by_household) == 1
    assert none_since == [] and len(paged) == 1


async def test_quarantine_keeps_payloads_readable(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await add_quarantine(
            conn, EDGE, "community/v1/edge/edge-demo/events/alarm", "bad json", b"{\xff", T0
        )
        await add_quarantine(conn, None, "x", "why", "中文", T0)
        rows = await list_quarantine(conn, limit=10, offset=0)
    assert [r["payload"] for r in rows] == ["中文", "base64:e/8="]
    assert rows[1]["edge_id"] == EDGE and rows[1]["received_at"] == T0
