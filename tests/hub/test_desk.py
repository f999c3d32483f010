"""The desk board's services on a real SQLite file with the demo community (issue #12).

Demo: workers 1 王丽 (grid 1), 2 赵敏 (grid 2), 3 孙强 (backup of both), 4 周洁 (community
station), 5 吴刚 (street centre), 6 郑芳 (hotline desk). Grid 1 holds households 1-3, grid 2
households 4-6; button cb100-77626 is in household 1 (张桂英), cb100-77628 in household 4.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import Event, Lane
from hub.api.csv_export import BOM, csv_text, safe_cell
from hub.api.kpi_table import COLUMNS, report_csv, report_json
from hub.db import schema
from hub.domain.access import Principal, Role
from hub.domain.effects import Effects
from hub.domain.escalation import EscalationPolicy
from hub.services import desk
from hub.services.areas import Level, load_areas
from hub.services.care_kpi import care_report
from hub.services.cases import REASSIGNED, CaseService
from hub.services.errors import Forbidden, InvalidAct, InvalidInput, InvalidTransition, NotFound

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai
TZ = ZoneInfo("Asia/Shanghai")
EDGE = "edge-demo"
OPERATOR = Principal(kind="user", name="op", role=Role.OPERATOR)
WORKER_1 = Principal(
    kind="user", name="wangli", role=Role.WORKER, worker_id=1, grid_ids=frozenset({1})
)


@pytest.fixture
def service() -> CaseService:
    return CaseService(EscalationPolicy(), TZ)


def sos(device: str = "cb100-77626", seq: int = 1, at: datetime = T0) -> Event:
    return Event(seq=seq, device_id=device, kind="sos", lane=Lane.ALARM, occurred_at=at, data={})


async def open_sos(
    engine: AsyncEngine, service: CaseService, device: str = "cb100-77626", at: datetime = T0
) -> int:
    async with engine.begin() as conn:
        await service.on_event(conn, EDGE, sos(device, at=at), at)
        found = await conn.execute(sa.select(sa.func.max(schema.cases.c.id)))
        return int(found.scalar_one())


async def row(engine: AsyncEngine, case_id: int) -> sa.RowMapping:
    async with engine.connect() as conn:
        query = sa.select(schema.cases).where(schema.cases.c.id == case_id)
        return (await conn.execute(query)).mappings().one()


async def audit(engine: AsyncEngine, case_id: int) -> list[tuple[str, str, str]]:
    async with engine.connect() as conn:
        query = (
            sa.select(
                schema.case_audit.c.action, schema.case_audit.c.actor, schema.case_audit.c.detail
            )
            .where(schema.case_audit.c.case_id == case_id)
            .order_by(schema.case_audit.c.id)
        )
        return [tuple(r) for r in await conn.execute(query)]  # type: ignore[misc]


# -- reassign -------------------------------------------------------------------------------


async def test_reassign_a_waiting_case_notifies_the_new_worker_and_restarts_the_clock(
    engine: AsyncEngine, service: CaseService
) -> None:
    case_id = await open_sos(engine, service)
    at = T0 + timedelta(seconds=30)
    async with engine.begin() as conn:
        effects = await service.reassign(conn, case_id, 2, "user:desk", "王丽在外地", at)
    case = await row(engine, case_id)
    assert (case["state"], case["assigned_worker_id"], case["tier"]) == ("dispatched", 2, 0)
    assert case["deadline_at"] == at + timedelta(seconds=60)  # the grid tier's timeout, anew
    assert (await audit(engine, case_id))[-1] == (
        "reassign",
        "user:desk",
        "to worker 2: 王丽在外地",
    )
    [notification] = effects.notifications
    assert (notification.worker_id, notification.case_id, notification.tier) == (
        2,
        case_id,
        REASSIGNED,
    )
    assert notification.message_zh.startswith("【热线改派】【一键通求助】张桂英")
    assert "王丽在外地" in notification.message_zh
    assert notification.message_en.startswith("[Reassigned by the hotline desk] SOS")
    assert effects.commands == [], "the button already said 'received'"
    async with engine.connect() as conn:
        told = (
            await conn.execute(
                sa.select(schema.case_notifications.c.worker_id, schema.case_notifications.c.tier)
                .where(schema.case_notifications.c.case_id == case_id)
                .order_by(schema.case_notifications.c.id)
            )
        ).all()
    assert [tuple(t) for t in told] == [(1, "grid_worker"), (2, REASSIGNED)]
    async with engine.begin() as conn:
        with pytest.raises(InvalidTransition, match="already with worker 2"):
            await service.reassign(conn, case_id, 2, "user:desk", "", at)


async def test_reassign_an_acknowledged_case_withdraws_the_acknowledgement(
    engine: AsyncEngine, service: CaseService
) -> None:
    case_id = await open_sos(engine, service)
    async with engine.begin() as conn:
        await service.acknowledge(conn, case_id, 1, T0 + timedelta(seconds=10))
        with pytest.raises(InvalidTransition, match="already with worker 1"):
            await service.reassign(conn, case_id, 1, "user:desk", "", T0 + timedelta(seconds=20))
        await service.reassign(conn, case_id, 3, "user:desk", "", T0 + timedelta(seconds=20))
    case = await row(engine, case_id)
    assert (case["state"], case["acknowledged_by"], case["acknowledged_at"]) == (
        "dispatched",
        None,
        None,
    )
    assert case["assigned_worker_id"] == 3
    assert (await audit(engine, case_id))[-1][2] == "to worker 3 (was acknowledged by worker 1)"
    async with engine.begin() as conn:  # the new worker takes it as usual
        await service.acknowledge(conn, case_id, 3, T0 + timedelta(seconds=40))
        assert await service.next_deadline(conn) is None
    assert (await row(engine, case_id))["acknowledged_by"] == 3


async def test_an_unconfirmed_reassignment_escalates_like_any_unanswered_call(
    engine: AsyncEngine, service: CaseService
) -> None:
    case_id = await open_sos(engine, service)
    at = T0 + timedelta(seconds=50)
    async with engine.begin() as conn:
        await service.reassign(conn, case_id, 2, "user:desk", "", at)
        old_deadline = await service.escalate_due(conn, T0 + timedelta(seconds=60))
        assert old_deadline == Effects(), "the deadline before the reassignment no longer applies"
        effects = await service.escalate_due(conn, at + timedelta(seconds=60))
    assert [n.worker_id for n in effects.notifications] == [3]  # the backup, as usual
    assert (await row(engine, case_id))["tier"] == 1


async def test_reassign_refusals(engine: AsyncEngine, service: CaseService) -> None:
    case_id = await open_sos(engine, service)
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(schema.workers).where(schema.workers.c.id == 5).values(active=False)
        )
    async with engine.begin() as conn:
        with pytest.raises(NotFound, match="worker 99 not found"):
            await service.reassign(conn, case_id, 99, "user:desk", "", T0)
        with pytest.raises(InvalidAct, match="worker 5 is not active"):
            await service.reassign(conn, case_id, 5, "user:desk", "", T0)
        with pytest.raises(NotFound, match="case 999"):
            await service.reassign(conn, 999, 2, "user:desk", "", T0)
        await service.arrive(conn, case_id, 1, T0 + timedelta(seconds=5))
        with pytest.raises(InvalidTransition, match="someone is with the resident"):
            await service.reassign(conn, case_id, 2, "user:desk", "", T0 + timedelta(seconds=9))


# -- notes ----------------------------------------------------------------------------------


async def test_a_note_is_audited_and_changes_no_state(
    engine: AsyncEngine, service: CaseService
) -> None:
    case_id = await open_sos(engine, service)
    before = await row(engine, case_id)
    at = T0 + timedelta(seconds=15)
    async with engine.begin() as conn:
        effects = await service.add_note(conn, case_id, "user:desk", "  女儿来电：已在路上  ", at)
    after = await row(engine, case_id)
    assert effects.notifications == [] and effects.commands == []
    assert (after["state"], after["deadline_at"], after["tier"]) == (
        before["state"],
        before["deadline_at"],
        before["tier"],
    )
    assert after["updated_at"] == at and after["version"] == before["version"] + 1
    assert (await audit(engine, case_id))[-1] == ("note", "user:desk", "女儿来电：已在路上")
    async with engine.begin() as conn:
        with pytest.raises(InvalidTransition, match="needs some text"):
            await service.add_note(conn, case_id, "user:desk", "   ", at)
        with pytest.raises(InvalidTransition, match="at most 2000"):
            await service.add_note(conn, case_id, "user:desk", "长" * 2001, at)


# -- the board ------------------------------------------------------------------------------


async def test_board_lists_open_cases_with_holder_wait_and_next_step(
    engine: AsyncEngine, service: CaseService
) -> None:
    first = await open_sos(engine, service)
    second = await open_sos(engine, service, "cb100-77628", T0 + timedelta(seconds=5))
    done = await open_sos(engine, service, "cb100-77627", T0 + timedelta(seconds=6))
    async with engine.begin() as conn:
        await service.acknowledge(conn, second, 2, T0 + timedelta(seconds=25))
        await service.acknowledge(conn, done, 1, T0 + timedelta(seconds=26))
        await service.resolve(conn, done, 1, "false_alarm", "", T0 + timedelta(seconds=27))
        await service.escalate_due(conn, T0 + timedelta(seconds=61))  # first → backup
    async with engine.connect() as conn:
        areas = await load_areas(conn)
        board = await desk.open_cases(conn, areas, None)
        grid_2 = await desk.open_cases(conn, areas, areas.filter_grids(grid_id=2))
        by_street = await desk.open_cases(conn, areas, areas.filter_grids(street_id=1))
        other_street = await desk.open_cases(conn, areas, areas.filter_grids(street_id=99))
    assert [c["id"] for c in board] == [first, second], "waiting first; resolved not shown"
    waiting, taken = board
    assert waiting["display"] == {"key": "escalated", "zh": "已升级", "en": "escalated"}
    assert waiting["holder_kind"] == "waiting"
    assert [(h["name"], h["tier"]) for h in waiting["holders"]] == [("孙强", "backup_worker")]
    assert waiting["tier_label"] == {"zh": "后备网格员", "en": "backup worker"}
    assert waiting["deadline_at"] == T0 + timedelta(seconds=121)
    assert waiting["next_step"] == {
        "zh": "升级至社区服务站",
        "en": "escalate to the community station",
    }
    assert (waiting["opened_at"], waiting["answered_at"]) == (T0, None)
    assert (waiting["resident_name"], waiting["lives_alone"]) == ("张桂英", True)
    assert (waiting["grid_name"], waiting["community_name"], waiting["street_name"]) == (
        "第一网格",
        "幸福里社区",
        "和平街道",
    )
    assert taken["holder_kind"] == "taken" and taken["holders"][0]["name"] == "赵敏"
    assert taken["answered_at"] == T0 + timedelta(seconds=25)
    assert taken["deadline_at"] is None and taken["next_step"] is None
    assert [c["id"] for c in grid_2] == [second]
    assert [c["id"] for c in by_street] == [first, second]
    assert other_street == []


# -- caller search --------------------------------------------------------------------------


async def test_household_search_by_name_phone_and_address(
    engine: AsyncEngine, service: CaseService
) -> None:
    case_id = await open_sos(engine, service)
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(schema.residents)
            .where(schema.residents.c.name == "刘建国")
            .values(phone="139-1234-5678")
        )
    async with engine.connect() as conn:
        areas = await load_areas(conn)

        async def find(q: str) -> list[dict[str, Any]]:
            return await desk.search_households(conn, areas, q)

        by_name = await find("张桂英")
        by_contact_phone = await find("13900000105")  # 孙磊, the son of 赵玉梅
        by_resident_phone = await find("13912345678")  # typed without the dashes
        by_address = await find("和平新村")
        nothing = await find("不存在的地址")
        wildcard = await find("%")
    assert [h["address"] for h in by_name] == ["幸福里小区3号楼2单元301室"]
    assert by_name[0]["active_case_id"] == case_id
    assert by_name[0]["emergency_contacts"] == [
        {"name": "李明", "relation": "儿子", "phone": "13900000101"}
    ]
    assert (by_name[0]["grid_name"], by_name[0]["lives_alone"]) == ("第一网格", True)
    assert "medical_notes" not in by_name[0]
    assert [h["address"] for h in by_contact_phone] == ["和平新村9号楼2单元601室"]
    assert [r["name"] for r in by_contact_phone[0]["residents"]] == ["赵玉梅", "孙志强"]
    assert by_contact_phone[0]["active_case_id"] is None
    assert [h["address"] for h in by_resident_phone] == ["和平新村8号楼3单元201室"]
    assert len(by_address) == 3
    assert nothing == [] and wildcard == []


# -- health ---------------------------------------------------------------------------------


async def test_health_panel(engine: AsyncEngine) -> None:
    now = T0 + timedelta(hours=1)
    async with engine.begin() as conn:
        d = schema.devices
        await conn.execute(
            sa.update(d).where(d.c.id == "cb100-77626").values(online=False, last_seen=T0)
        )
        await conn.execute(
            sa.update(d)
            .where(d.c.id == "cb100-77627")
            .values(online=True, last_seen=T0, battery_pct=12)
        )
        await conn.execute(
            sa.update(d)
            .where(d.c.id == "cb100-77628")
            .values(online=True, last_seen=T0, battery_pct=80)
        )
        await conn.execute(
            sa.insert(schema.edge_status),
            [
                {"edge_id": "edge-ok", "online": True, "at": now, "info": {"outbox_depth": 0}},
                {
                    "edge_id": "edge-slow",
                    "online": True,
                    "at": now,
                    "info": {
                        "outbox_depth": 5400,
                        "oldest_unsent_age_s": 620.5,
                        "buffer_pressure": True,
                        "fill_pct": 91.0,
                        "dropped": {"telemetry": 12, "normal": 0, "alarm": 0},
                    },
                },
                {"edge_id": "edge-gone", "online": False, "at": T0, "info": {}},
            ],
        )
        await conn.execute(
            sa.insert(schema.quarantine),
            [
                {
                    "received_at": T0 - timedelta(days=2),
                    "topic": "t",
                    "reason": "old",
                    "payload": "",
                },
                {
                    "received_at": now,
                    "edge_id": "edge-ok",
                    "topic": "t",
                    "reason": "bad json",
                    "payload": "",
                },
            ],
        )
        for kind, state, grid in [
            ("collection", "open", 1),
            ("collection", "acknowledged", 1),
            ("door_alert", "open", 2),
            ("outage", "done", 1),
            ("leak_check", "open", 1),
            ("welfare_check", "acknowledged", 1),
            ("check_in_call", "open", 2),
        ]:
            await conn.execute(
                sa.insert(schema.tasks).values(kind=kind, state=state, grid_id=grid, created_at=T0)
            )
    async with engine.connect() as conn:
        areas = await load_areas(conn)
        health = await desk.system_health(conn, None, now)
        grid_2 = await desk.system_health(conn, areas.filter_grids(grid_id=2), now)
    assert health["devices"] == {"total": 3, "never_seen": 0}
    assert [r["id"] for r in health["offline_devices"]["rows"]] == ["cb100-77626"]
    assert health["offline_devices"]["total"] == 1
    assert [(r["id"], r["battery_pct"]) for r in health["low_battery"]["rows"]] == [
        ("cb100-77627", 12)
    ]
    edges = {e["edge_id"]: e for e in health["edges"]}
    assert [e["edge_id"] for e in health["edges"]] == ["edge-gone", "edge-slow", "edge-ok"]
    assert edges["edge-slow"]["problems"] == ["backlog", "buffer_pressure", "dropped"]
    assert (edges["edge-slow"]["outbox_depth"], edges["edge-slow"]["dropped"]) == (5400, 12)
    assert edges["edge-gone"]["problems"] == ["offline"] and edges["edge-ok"]["problems"] == []
    assert health["quarantine"]["total"] == 2 and health["quarantine"]["last_24h"] == 1
    assert health["quarantine"]["latest"][0]["reason"] == "bad json"
    tasks = {t["kind"]: (t["open"], t["acknowledged"]) for t in health["open_tasks"]}
    assert tasks["collection"] == (1, 1) and tasks["door_alert"] == (1, 0)
    assert tasks["outage"] == (0, 0) and tasks["leak_check"] == (1, 0)
    # welfare checks are counted like the other tasks, but not for an admin (issue #15)
    assert tasks["welfare_check"] == (0, 1) and tasks["check_in_call"] == (1, 0)
    async with engine.connect() as conn:
        for_admin = await desk.system_health(conn, None, now, wellbeing=False)
    admin_kinds = {t["kind"] for t in for_admin["open_tasks"]}
    assert admin_kinds == set(tasks) - {"welfare_check", "check_in_call"}
    assert set(tasks) >= {
        "collection",
        "delivery",
        "maintenance",
        "door_alert",
        "leak_check",
        "outage",
    }
    # the grid filter narrows devices and tasks, not edges or quarantine
    assert grid_2["devices"]["total"] == 1 and grid_2["offline_devices"]["total"] == 0
    assert {t["kind"]: t["open"] for t in grid_2["open_tasks"]}["collection"] == 0
    assert len(grid_2["edges"]) == 3 and grid_2["quarantine"]["total"] == 2


# -- care KPIs from real case transitions ---------------------------------------------------


async def test_care_report_from_real_transitions(engine: AsyncEngine, service: CaseService) -> None:
    """Two calls in grid 1, one in grid 2; the figures per level, per worker, and as CSV."""
    fast = await open_sos(engine, service)  # grid 1: answered in 20 s, on site at 300 s
    slow = await open_sos(engine, service, "cb100-77627", T0 + timedelta(minutes=1))
    other = await open_sos(engine, service, "cb100-77628", T0 + timedelta(minutes=2))
    async with engine.begin() as conn:
        await service.acknowledge(conn, fast, 1, T0 + timedelta(seconds=20))
        await service.arrive(conn, fast, 1, T0 + timedelta(seconds=300))
        # slow: nobody answers; escalated to the backup, who answers 90 s after opening
        await service.escalate_due(conn, T0 + timedelta(minutes=2))
        await service.acknowledge(conn, slow, 3, T0 + timedelta(minutes=1, seconds=90))
        await service.resolve(conn, slow, 3, "false_alarm", "", T0 + timedelta(minutes=4))
        await service.acknowledge(conn, other, 2, T0 + timedelta(minutes=2, seconds=30))
        await conn.execute(
            sa.insert(schema.tasks).values(
                kind="service_request",
                category=1,
                grid_id=1,
                household_id=1,
                state="open",
                created_at=T0,
            )
        )
    now = T0 + timedelta(hours=1)
    day = date(2025, 3, 3)

    async def report(viewer: Principal, level: Level, unit: int | None) -> Any:
        async with engine.connect() as conn:
            return await care_report(
                conn, viewer, level=level, unit_id=unit, start=day, end=day, tz=TZ, now=now
            )

    everything = await report(OPERATOR, Level.ALL, None)
    total = everything.total.figures
    assert (total.help_calls, total.answered) == (3, 3)
    assert (total.share(60).met, total.share(60).decided) == (2, 3)  # 20 s, 30 s; not 90 s
    assert total.share(180).value == 1.0
    assert (total.answer_median_s, total.answer_p90_s) == (30, 90)
    assert (total.on_site_median_s, total.on_site_p90_s) == (300, 300)
    assert total.escalations["backup_worker"] == 1 and total.false_calls == 1
    assert dict(total.service_requests) == {1: 1}
    assert [(r.level, r.name) for r in everything.children] == [("district", "示范区")]
    community = await report(OPERATOR, Level.COMMUNITY, 1)
    assert [(r.name, r.figures.help_calls) for r in community.children] == [
        ("第一网格", 2),
        ("第二网格", 1),
    ]
    assert community.child_level == "grid"
    grid = await report(OPERATOR, Level.GRID, 1)
    assert grid.children == [] and grid.child_level == "worker"
    rows = {r.name: r.figures for r in grid.workers}
    assert set(rows) == {"王丽", "孙强"}
    assert (rows["王丽"].help_calls, rows["王丽"].answered_by_worker) == (2, 1)
    assert (rows["孙强"].help_calls, rows["孙强"].answered_by_worker) == (1, 1)
    assert [c.facts.case_id for c in grid.calls] == [slow, fast]
    assert grid.calls[1].answered_by_name == "王丽"

    own = await report(WORKER_1, Level.GRID, 1)
    assert [r.name for r in own.workers] == ["王丽"], "a worker sees only their own row"
    with pytest.raises(Forbidden):
        await report(WORKER_1, Level.GRID, 2)
    with pytest.raises(Forbidden):
        await report(WORKER_1, Level.COMMUNITY, 1)
    with pytest.raises(NotFound):
        await report(OPERATOR, Level.STREET, 99)
    async with engine.connect() as conn:
        with pytest.raises(InvalidInput, match="ends before it starts"):
            await care_report(
                conn,
                OPERATOR,
                level=Level.ALL,
                unit_id=None,
                start=day,
                end=day - timedelta(days=1),
                tz=TZ,
                now=now,
            )

    # the page and the CSV show the same cells
    page = report_json(grid)
    total_cells = page["rows"][0]["cells"]
    assert (total_cells["answer_median_s"], total_cells["answer_p90_s"]) == ("20", "90")
    assert total_cells["within_60"] == "50.0%"
    assert (total_cells["target_60"], total_cells["target_180"]) == ("97.5%", "99.0%")
    text = report_csv(grid)
    assert text.startswith(BOM)
    lines = text[1:].split("\r\n")
    header = lines[0].split(",")
    assert header[:3] == ["层级 / level", "名称 / name", "求助呼叫 / help calls"]
    assert len(header) == len(COLUMNS)
    first_row = lines[1].split(",")
    assert first_row[: len(total_cells)] == [total_cells[c.key] for c in COLUMNS][: len(first_row)]


async def test_a_day_is_a_local_day(engine: AsyncEngine, service: CaseService) -> None:
    """A call at 23:30 Shanghai time belongs to that local day, not the next UTC one."""
    late = datetime(2025, 3, 3, 15, 30, tzinfo=UTC)  # 23:30 on 3 March in Shanghai
    await open_sos(engine, service, at=late)
    async with engine.connect() as conn:
        on_the_3rd = await care_report(
            conn,
            OPERATOR,
            level=Level.ALL,
            unit_id=None,
            start=date(2025, 3, 3),
            end=date(2025, 3, 3),
            tz=TZ,
            now=late,
        )
        on_the_4th = await care_report(
            conn,
            OPERATOR,
            level=Level.ALL,
            unit_id=None,
            start=date(2025, 3, 4),
            end=date(2025, 3, 4),
            tz=TZ,
            now=late,
        )
    assert on_the_3rd.total.figures.help_calls == 1
    assert on_the_4th.total.figures.help_calls == 0


def test_csv_cells_cannot_carry_formulas() -> None:
    assert [safe_cell(v) for v in ("=1+1", "+86", "-3", "@SUM(A1)", "\tx", "张三", 5, None)] == [
        "'=1+1",
        "'+86",
        "'-3",
        "'@SUM(A1)",
        "'\tx",
        "张三",
        "5",
        "",
    ]
    text = csv_text(["名称 / name"], [['=HYPERLINK("http://x","点我")'], ["王丽"]])
    assert text == BOM + '名称 / name\r\n"\'=HYPERLINK(""http://x"",""点我"")"\r\n王丽\r\n'
