"""The wellbeing watch wired to a real, migrated database (issue #15): activity only with
consent, electricity above standby, coalescing, away periods, device faults, the welfare
check's own ladder, missed check-ins, retention, and the privacy rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import Event, Lane
from hub.db import schema
from hub.domain.access import Principal, Role
from hub.domain.effects import Effects
from hub.domain.wellbeing_settings import WellbeingSettings
from hub.handlers.router import DeviceEventRouter
from hub.services.errors import Forbidden
from hub.services.wellbeing import WellbeingActivityHandler, WellbeingWatch, records

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # the demo's seed time: Monday 09:00 Shanghai
HOUSEHOLD = 1  # 张桂英, lives alone, grid 1 (worker 王丽)
DESK = Principal("user", "desk", Role.HOTLINE, user_id=9)
ADMIN = Principal("token", "admin", Role.ADMIN)
SETTINGS = WellbeingSettings(
    fallback_h=3.0, check_every_s=60, backup_after_s=600, station_after_s=600, standby_w=150
)


@pytest.fixture
async def home(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        for row in (
            {"id": "wm-7", "profile": "water-meter", "household_id": HOUSEHOLD},
            {"id": "meter-7", "profile": "dlt645-meter", "household_id": HOUSEHOLD},
            {"id": "wm-8", "profile": "water-meter", "household_id": 2},  # not alone
            {"id": "door-gate-3", "profile": "fr-door", "grid_id": 1},
        ):
            await conn.execute(sa.insert(schema.devices).values(edge_id="edge-demo", **row))
    return engine


class Watch:
    def __init__(self, engine: AsyncEngine, settings: WellbeingSettings = SETTINGS) -> None:
        from zoneinfo import ZoneInfo

        self.engine = engine
        self.watch = WellbeingWatch(settings, ZoneInfo("Asia/Shanghai"))
        self.router = DeviceEventRouter([WellbeingActivityHandler(settings), self.watch])
        self.seq = 0

    async def events(self, at: datetime, *items: tuple[str, str, dict[str, Any]]) -> None:
        batch = []
        for device_id, kind, data in items:
            self.seq += 1
            batch.append(Event(self.seq, device_id, kind, Lane.TELEMETRY, at, data))
        async with self.engine.begin() as conn:
            await self.router.on_events(conn, batch, at)

    async def tick(self, now: datetime) -> Effects:
        async with self.engine.begin() as conn:
            return await self.router.on_tick(conn, now)

    async def consent(self, **kw: Any) -> None:
        async with self.engine.begin() as conn:
            fields: dict[str, Any] = {"face_person_id": "P-1", "check_in_hour": None} | kw
            await records.set_consent(
                conn, DESK, HOUSEHOLD, consent=True, note="", now=T0, **fields
            )

    async def rows(self, table: sa.Table) -> list[Any]:
        async with self.engine.connect() as conn:
            return list(await conn.execute(sa.select(table)))


async def test_no_activity_is_kept_without_consent(home: AsyncEngine) -> None:
    w = Watch(home)
    await w.events(T0, ("wm-7", "water_reading", {"flow_m3h": 0.5}))
    assert await w.rows(schema.wellbeing_activity) == []
    await w.consent()
    await w.events(T0, ("wm-8", "water_reading", {"flow_m3h": 0.5}))  # lives with family
    assert await w.rows(schema.wellbeing_activity) == []


async def test_activity_from_water_power_door_and_buttons_coalesced(home: AsyncEngine) -> None:
    w = Watch(home)
    await w.consent()
    await w.events(T0, ("wm-7", "water_reading", {"flow_m3h": 0.4}))
    await w.events(T0 + timedelta(seconds=10), ("wm-7", "water_reading", {"flow_m3h": 0.4}))
    await w.events(T0 + timedelta(seconds=20), ("wm-7", "water_reading", {"flow_m3h": 0}))
    await w.events(T0, ("meter-7", "meter_reading", {"energy_kwh": 100.0}))
    quarter = T0 + timedelta(minutes=15)
    await w.events(quarter, ("meter-7", "meter_reading", {"energy_kwh": 100.02}))  # 80 W
    half = T0 + timedelta(minutes=30)
    await w.events(half, ("meter-7", "meter_reading", {"energy_kwh": 100.2}))  # 720 W
    await w.events(half, ("door-gate-3", "face_pass", {"person_id": "P-1"}))
    await w.events(half, ("door-gate-3", "face_pass", {"person_id": "P-2"}))  # someone else
    await w.events(half, ("wm-7", "water_reading", {"flow_m3h": "lots"}))  # counted, ignored
    rows = sorted((r.source, r.at) for r in await w.rows(schema.wellbeing_activity))
    assert rows == [("door", half), ("electricity", half), ("water", T0)]
    [problem] = list(w.router.handlers[0].problems.counts)  # type: ignore[attr-defined]
    assert "flow_m3h" in problem


async def test_silence_raises_one_welfare_check_that_climbs_its_own_ladder(
    home: AsyncEngine,
) -> None:
    w = Watch(home)
    await w.consent()
    await w.events(T0, ("wm-7", "water_reading", {"flow_m3h": 0.4}))
    still = T0 + timedelta(hours=2.9)
    await w.events(still, ("wm-7", "water_reading", {"flow_m3h": 0}))  # alive, no use
    assert (await w.tick(still)).notifications == []
    alarm = T0 + timedelta(hours=3, minutes=5)
    await w.events(alarm, ("wm-7", "water_reading", {"flow_m3h": 0}))
    effects = await w.tick(alarm)
    assert {(n.tier, n.kind) for n in effects.notifications} == {("grid_worker", "welfare_check")}
    assert "no water since 09:00" in effects.notifications[0].message_en
    [task] = [t for t in await w.rows(schema.tasks) if t.kind == "welfare_check"]
    assert task.household_id == HOUSEHOLD and "关爱探访" in task.detail
    # the same silence judged again: no second check
    later = alarm + timedelta(minutes=2)
    await w.events(later, ("wm-7", "water_reading", {"flow_m3h": 0}))
    assert [n.tier for n in (await w.tick(later)).notifications] == []
    # unacknowledged: backup after 10 min, the station 10 min later, then no further
    tiers = []
    for minutes in (11, 22, 33):
        now = alarm + timedelta(minutes=minutes)
        await w.events(now, ("wm-7", "water_reading", {"flow_m3h": 0}))
        tiers.append(sorted({n.tier for n in (await w.tick(now)).notifications}))
    assert tiers == [["backup_worker"], ["community_station"], []]
    async with home.begin() as conn:
        worker = Principal("user", "wang", Role.WORKER, worker_id=1, grid_ids=frozenset({1}))
        closed = await records.record_outcome(
            conn, worker, task.id, 1, "helped", "扶起 / helped up", alarm + timedelta(hours=1)
        )
    assert closed["outcome"] == "helped"
    [check] = await w.rows(schema.welfare_checks)
    assert check.closed_at is not None and check.tier == 2


async def test_away_and_a_dead_meter_are_not_silence(home: AsyncEngine) -> None:
    w = Watch(home)
    await w.consent()
    await w.events(T0, ("wm-7", "water_reading", {"flow_m3h": 0.4}))
    async with home.begin() as conn:
        await records.add_away(
            conn,
            DESK,
            HOUSEHOLD,
            reason="hospital",
            starts_at=T0 + timedelta(hours=1),
            ends_at=T0 + timedelta(days=3),
            note="市一医院",
            now=T0,
        )
    for hours in (4, 30, 70):  # in hospital: nothing, however long
        now = T0 + timedelta(hours=hours)
        await w.events(now, ("wm-7", "water_reading", {"flow_m3h": 0}))
        assert (await w.tick(now)).notifications == []
    # back, then the water meter stops reporting: a device fault, not a welfare check
    back = T0 + timedelta(days=3)
    await w.events(back + timedelta(minutes=1), ("wm-7", "water_reading", {"flow_m3h": 0.3}))
    assert (await w.tick(back + timedelta(hours=4))).notifications == []
    assert [t for t in await w.rows(schema.tasks) if t.kind == "welfare_check"] == []


async def test_a_missed_check_in_prompts_the_desk_then_a_welfare_check(home: AsyncEngine) -> None:
    w = Watch(home, SETTINGS.model_copy(update={"check_in_welfare_after_s": 3600.0}))
    await w.consent(check_in_hour=10)  # 10:00 Shanghai = 02:00 UTC
    await w.events(T0, ("wm-7", "water_reading", {"flow_m3h": 0.4}))
    first = T0 + timedelta(hours=1, minutes=5)
    await w.events(first, ("wm-7", "water_reading", {"flow_m3h": 0.4}))
    await w.tick(first)
    [call] = [t for t in await w.rows(schema.tasks) if t.kind == "check_in_call"]
    assert "报平安" in call.detail
    # an hour later nobody reached her: a welfare check for the grid worker
    later = first + timedelta(hours=1, minutes=1)
    await w.events(later, ("wm-7", "water_reading", {"flow_m3h": 0.4}))
    effects = await w.tick(later)
    assert {n.kind for n in effects.notifications} == {"welfare_check"}
    # next day she checks in before the hour: the desk is not prompted again
    next_day = T0 + timedelta(days=1)
    await w.events(next_day - timedelta(minutes=30), ("cb100-77626", "check_in", {}))
    await w.tick(next_day + timedelta(hours=1, minutes=5))
    assert len([t for t in await w.rows(schema.tasks) if t.kind == "check_in_call"]) == 1


async def test_raw_activity_is_deleted_after_its_retention(home: AsyncEngine) -> None:
    w = Watch(home, SETTINGS.model_copy(update={"activity_kept_days": 30, "history_days": 28}))
    await w.consent()
    await w.events(T0, ("wm-7", "water_reading", {"flow_m3h": 0.4}))
    await w.tick(T0 + timedelta(days=29))
    assert len(await w.rows(schema.wellbeing_activity)) == 1
    await w.tick(T0 + timedelta(days=31))
    assert await w.rows(schema.wellbeing_activity) == []


async def test_only_the_grid_worker_station_and_desk_read_activity(home: AsyncEngine) -> None:
    w = Watch(home)
    await w.consent()
    other = Principal("user", "zhao", Role.WORKER, worker_id=2, grid_ids=frozenset({2}))
    async with home.begin() as conn:
        for who in (ADMIN, other):
            with pytest.raises(Forbidden):
                await records.read_activity(conn, who, HOUSEHOLD, 24, T0)
        await records.read_activity(conn, DESK, HOUSEHOLD, 24, T0)
    audit = [(r.actor, r.action) for r in await w.rows(schema.audit_log)]
    assert ("user:desk", "wellbeing_activity.read") in audit
    assert ("user:desk", "wellbeing.consent") in audit


def test_settings_refuse_retention_shorter_than_the_history() -> None:
    with pytest.raises(ValueError, match="activity_kept_days"):
        WellbeingSettings(activity_kept_days=10, history_days=28)
    with pytest.raises(ValueError, match="floor_h"):
        WellbeingSettings(floor_h=20, ceiling_h=12)


# -- the "are you OK?" prompt (关爱询问) before the welfare check ---------------------------

BUTTON = "cb100-77626"  # the demo's button by 张桂英's bed, behind edge-demo
PROMPTING = SETTINGS.model_copy(update={"prompt_enabled": True})  # off by default


async def learnt_rhythm(w: Watch, welfare_h: float = 6.0, prompt_h: float = 2.0) -> None:
    """A trained baseline of the day, as the watch stores it: the hand-set thresholds stand
    in for four weeks of history (the learning itself: tests/hub/test_wellbeing_prompt.py)."""
    from zoneinfo import ZoneInfo

    from hub.domain.wellbeing import SLOTS, Baseline
    from hub.services.wellbeing.watch import baseline_to_json

    def table(h: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return ((h,) * SLOTS, (h,) * SLOTS)

    welfare = Baseline(True, table(welfare_h), table(12.0), 28)
    prompt = Baseline(True, table(prompt_h), table(8.0), 28)
    async with w.engine.begin() as conn:
        await conn.execute(
            sa.update(schema.wellbeing_watch)
            .where(schema.wellbeing_watch.c.household_id == HOUSEHOLD)
            .values(
                baseline=baseline_to_json(welfare, prompt),
                baseline_day=T0.astimezone(ZoneInfo("Asia/Shanghai")).date(),
            )
        )


async def quiet_until(w: Watch, at: datetime) -> Effects:
    """The meter still reports (no flow) and the watch judges at ``at``."""
    await w.events(at, ("wm-7", "water_reading", {"flow_m3h": 0}))
    return await w.tick(at)


async def test_an_unanswered_prompt_becomes_the_welfare_check(home: AsyncEngine) -> None:
    w = Watch(home, PROMPTING)
    await w.consent()
    await learnt_rhythm(w)
    await w.events(T0, ("wm-7", "water_reading", {"flow_m3h": 0.4}))
    assert (await quiet_until(w, T0 + timedelta(hours=1, minutes=55))).commands == []
    asked = T0 + timedelta(hours=2, minutes=5)
    effects = await quiet_until(w, asked)
    assert effects.notifications == []  # nobody is called out yet
    [command] = effects.commands
    assert (command.device_id, command.name) == (BUTTON, "button_feedback")
    assert command.args == {"code": "are_you_ok", "ref_seq": 0, "edge_id": "edge-demo"}
    [stored] = [c for c in await w.rows(schema.commands) if c.device_id == BUTTON]
    assert stored.args["code"] == "are_you_ok" and stored.state == "pending"
    [prompt] = await w.rows(schema.wellbeing_prompts)
    assert (prompt.asked_at, prompt.silence_since, prompt.device_id) == (asked, T0, BUTTON)
    # waiting for the answer: neither a second prompt nor a welfare check
    waiting = await quiet_until(w, asked + timedelta(minutes=20))
    assert (waiting.commands, waiting.notifications) == ([], [])
    effects = await quiet_until(w, asked + timedelta(minutes=31))
    assert {(n.tier, n.kind) for n in effects.notifications} == {("grid_worker", "welfare_check")}
    assert 'no answer to "are you OK?"' in effects.notifications[0].message_en
    assert "无应答" in effects.notifications[0].message_zh
    [check] = await w.rows(schema.welfare_checks)
    [prompt] = await w.rows(schema.wellbeing_prompts)
    assert check.reason == "no_answer" and prompt.welfare_task_id == check.task_id
    assert prompt.answered_at is None
    # the same silence: no further prompt, no second check (only the ladder climbs)
    later = await quiet_until(w, asked + timedelta(hours=2))
    assert later.commands == [] and {n.tier for n in later.notifications} == {"backup_worker"}
    assert len([t for t in await w.rows(schema.tasks) if t.kind == "welfare_check"]) == 1
    assert len(await w.rows(schema.wellbeing_prompts)) == 1


@pytest.mark.parametrize(
    ("device", "kind", "data", "answer"),
    [
        (BUTTON, "check_in", {}, "answer"),  # the green key, as asked
        ("wm-7", "water_reading", {"flow_m3h": 0.3}, "water"),  # or simply up and about
    ],
)
async def test_an_answered_prompt_ends_the_silence(
    home: AsyncEngine, device: str, kind: str, data: dict[str, Any], answer: str
) -> None:
    w = Watch(home, PROMPTING)
    await w.consent()
    await learnt_rhythm(w)
    await w.events(T0, ("wm-7", "water_reading", {"flow_m3h": 0.4}))
    asked = T0 + timedelta(hours=2, minutes=5)
    assert len((await quiet_until(w, asked)).commands) == 1
    await w.events(asked + timedelta(minutes=4), (device, kind, data))
    [prompt] = await w.rows(schema.wellbeing_prompts)
    assert (prompt.answered_at, prompt.answer) == (asked + timedelta(minutes=4), answer)
    effects = await quiet_until(w, asked + timedelta(minutes=40))
    assert (effects.commands, effects.notifications) == ([], [])
    assert [t for t in await w.rows(schema.tasks) if t.kind == "welfare_check"] == []
    # an answer on the key is kept apart from the rhythm it must not teach
    sources = {r.source for r in await w.rows(schema.wellbeing_activity)}
    assert ("check_in" in sources) is False and answer in sources
    # the desk and the grid worker see the prompt in the audited activity read
    async with home.begin() as conn:
        seen = await records.read_activity(conn, DESK, HOUSEHOLD, 24, asked + timedelta(hours=1))
    assert [p["answer"] for p in seen["prompts"]] == [answer]


async def test_no_button_no_prompt_the_welfare_threshold_is_the_backstop(
    home: AsyncEngine,
) -> None:
    async with home.begin() as conn:
        await conn.execute(
            sa.update(schema.devices)
            .where(schema.devices.c.household_id == HOUSEHOLD, schema.devices.c.profile == "cb-100")
            .values(retired_at=T0)
        )
    w = Watch(home, PROMPTING)
    await w.consent()
    await learnt_rhythm(w)
    await w.events(T0, ("wm-7", "water_reading", {"flow_m3h": 0.4}))
    for minutes in (125, 160, 300):
        effects = await quiet_until(w, T0 + timedelta(minutes=minutes))
        assert (effects.commands, effects.notifications) == ([], [])
    assert await w.rows(schema.wellbeing_prompts) == []
    effects = await quiet_until(w, T0 + timedelta(hours=6, minutes=5))
    assert {n.kind for n in effects.notifications} == {"welfare_check"}
