"""The periodic wellbeing check (issue #15): judge each watched household, raise welfare
checks (关爱探访), escalate the unanswered ones, prompt the desk about missed check-ins.

Runs as a device handler's ``on_tick`` (``hub.device_timer``) in its own transaction:

* every ``check_every_s``, each consenting household of a resident living alone is judged
  by :func:`hub.domain.wellbeing.judge` against its baseline (relearnt once a local day
  from the raw activity of the last ``history_days``). Past the lower *prompt* threshold
  (and outside the resident's learnt sleep window) the resident is asked first, "are you
  OK?" (关爱询问): a ``button_feedback`` ``are_you_ok`` command to the household's CB-100,
  recorded in ``wellbeing_prompts``; a press of the green key or any other activity answers
  it (``.activity``); unanswered after ``prompt_wait_min``, or a household without a button
  past the welfare threshold, it becomes a welfare check. An alert opens one ``welfare_check``
  task (the existing task list, so the worker page and desk board show it) with the
  evidence, and the grid's on-duty worker is told, with the resident's phone as a ``tel:``
  link to call first. One welfare check per silence: a worker who found all well is not
  asked again until the resident has moved and gone quiet again;
* a welfare check nobody acknowledges escalates on its own, slower timetable: to the
  backup worker after ``backup_after_s``, to the community station ``station_after_s``
  later (a help call's ladder is minutes; this one is an hour or so);
* a daily check-in (报平安) missed by the resident's chosen hour files a ``check_in_call``
  task for the desk to phone; still pending ``check_in_welfare_after_s`` later, it becomes
  a welfare check;
* raw activity older than ``activity_kept_days`` is deleted.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from contract import Command, Event
from hub.db.schema import (
    commands,
    devices,
    households,
    offline_devices,
    residents,
    tasks,
    welfare_checks,
    wellbeing_activity,
    wellbeing_away,
    wellbeing_prompts,
    wellbeing_sources,
    wellbeing_watch,
)
from hub.domain.effects import Effects
from hub.domain.escalation import Tier
from hub.domain.notification import Notification
from hub.domain.wellbeing import (
    METERED,
    Activity,
    AwayPeriod,
    Baseline,
    MeterHealth,
    Source,
    Verdict,
    evidence,
    judge,
    learn_baseline,
    learn_prompt_baseline,
    missed_check_in,
    quiet_history,
)
from hub.domain.wellbeing_settings import WellbeingSettings
from hub.handlers.router import DeviceRow
from hub.services.alerts import notify_grid_worker
from hub.services.org import available_by_tier, household_place
from hub.services.tasks import file_device_task

log = logging.getLogger(__name__)

#: The welfare check's ladder after the grid worker (``welfare_checks.tier`` indexes it).
LADDER = (Tier.GRID_WORKER, Tier.BACKUP_WORKER, Tier.COMMUNITY_STATION)
#: The CB-100 ``button_feedback`` code that asks "are you OK?" (device_profiles/cb-100.yaml).
PROMPT_CODE = "are_you_ok"
BUTTON_PROFILES = frozenset({"cb-100"})


def baseline_to_json(b: Baseline, prompt: Baseline | None = None) -> dict[str, Any]:
    """The day's baseline as stored; with the prompt's thresholds under ``prompt``."""
    raw: dict[str, Any] = {"trained": b.trained, "home": b.home, "out": b.out, "days": b.days}
    if b.unanswered != (0.0, 0.0):
        raw["unanswered"] = b.unanswered
    if prompt is not None:
        raw["prompt"] = baseline_to_json(prompt)
    return raw


def prompt_baseline_from_json(raw: dict[str, Any]) -> Baseline | None:
    """The prompt's thresholds stored beside the baseline (none in rows stored before)."""
    prompt = raw.get("prompt")
    return baseline_from_json(prompt) if isinstance(prompt, dict) else None


def baseline_from_json(raw: dict[str, Any]) -> Baseline:
    def table(rows: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return (tuple(float(v) for v in rows[0]), tuple(float(v) for v in rows[1]))

    hold = raw.get("unanswered") or (0.0, 0.0)
    return Baseline(
        bool(raw["trained"]),
        table(raw["home"]),
        table(raw["out"]),
        int(raw["days"]),
        (float(hold[0]), float(hold[1])),
    )


class WellbeingWatch:
    """The time-driven half of the wellbeing watch (the event half: ``.activity``)."""

    kinds: frozenset[str] | None = frozenset()
    ignored_kinds: frozenset[str] = frozenset()

    def __init__(self, settings: WellbeingSettings, tz: tzinfo, ack_base_url: str = "") -> None:
        self.settings = settings
        self.rules = settings.rules()
        self.tz = tz
        self.ack_base_url = ack_base_url
        self._judged_at: datetime | None = None
        self.alerts = 0
        self.prompts = 0

    async def on_events(
        self, conn: AsyncConnection, events: Sequence[tuple[DeviceRow, Event]], now: datetime
    ) -> Effects:
        return Effects()

    async def on_tick(self, conn: AsyncConnection, now: datetime) -> Effects:
        effects = Effects()
        if not self.settings.enabled:
            return effects
        due = self._judged_at is None or (now - self._judged_at).total_seconds() >= (
            self.settings.check_every_s
        )
        if due:
            self._judged_at = now
            await conn.execute(
                sa.delete(wellbeing_activity).where(
                    wellbeing_activity.c.at < now - timedelta(days=self.settings.activity_kept_days)
                )
            )
            query = (
                sa.select(wellbeing_watch, households.c.grid_id)
                .join_from(
                    wellbeing_watch, households, wellbeing_watch.c.household_id == households.c.id
                )
                .where(wellbeing_watch.c.consent.is_(True), households.c.lives_alone.is_(True))
                .order_by(wellbeing_watch.c.household_id)
            )
            for watch in list((await conn.execute(query)).mappings()):
                effects.extend(await self._judge(conn, watch, now))
                effects.extend(await self._check_in(conn, watch, now))
        effects.extend(await self._escalate(conn, now))
        return effects

    # -- the judgement ---------------------------------------------------------------

    async def _baseline(
        self, conn: AsyncConnection, watch: Any, now: datetime
    ) -> tuple[Baseline, Baseline | None]:
        """The day's welfare and prompt thresholds, learnt once a local day and stored."""
        today = now.astimezone(self.tz).date()
        if watch["baseline"] is not None and watch["baseline_day"] == today:
            raw = watch["baseline"]
            return baseline_from_json(raw), prompt_baseline_from_json(raw)
        start_day = today - timedelta(days=self.rules.history_days)
        start = _local_midnight(start_day, self.tz)
        end = _local_midnight(today, self.tz)
        household = watch["household_id"]
        rows = await conn.execute(
            sa.select(wellbeing_activity.c.source, wellbeing_activity.c.at)
            .where(
                wellbeing_activity.c.household_id == household,
                wellbeing_activity.c.at >= start,
                wellbeing_activity.c.at < end,
            )
            .order_by(wellbeing_activity.c.at)
        )
        activity = [Activity(r.at, Source(r.source)) for r in rows]
        away = await _away(conn, household, start)
        history = quiet_history(activity, max(start, watch["started_at"]), end, self.tz, away)
        baseline = learn_baseline(history, self.rules, until=today)
        prompt = learn_prompt_baseline(history, self.rules, until=today)
        await conn.execute(
            sa.update(wellbeing_watch)
            .where(wellbeing_watch.c.household_id == household)
            .values(baseline=baseline_to_json(baseline, prompt), baseline_day=today)
        )
        return baseline, prompt

    async def _judge(self, conn: AsyncConnection, watch: Any, now: datetime) -> Effects:
        household = int(watch["household_id"])
        baseline, prompt_baseline = await self._baseline(conn, watch, now)
        sources = list(
            await conn.execute(
                sa.select(wellbeing_sources).where(wellbeing_sources.c.household_id == household)
            )
        )
        last: dict[Source, datetime] = {}
        for r in sources:
            if r.last_activity_at is not None:
                src = Source(r.source)
                last[src] = max(r.last_activity_at, last.get(src, r.last_activity_at))
        metered = [r for r in sources if Source(r.source) in METERED]
        offline = {
            str(r.device_id)
            for r in await conn.execute(
                sa.select(offline_devices.c.device_id).where(
                    offline_devices.c.device_id.in_(sorted({str(r.device_id) for r in metered}))
                )
            )
        }
        meters = [
            MeterHealth(Source(r.source), r.device_id, r.last_report_at, r.device_id in offline)
            for r in metered
        ]
        away = await _away(conn, household, now - timedelta(days=self.rules.history_days))
        buttons = await _buttons(conn, household)
        latest_prompt = (
            (
                await conn.execute(
                    sa.select(wellbeing_prompts)
                    .where(wellbeing_prompts.c.household_id == household)
                    .order_by(wellbeing_prompts.c.asked_at.desc(), wellbeing_prompts.c.id.desc())
                    .limit(1)
                )
            )
            .mappings()
            .first()
        )
        j = judge(
            now,
            last,
            baseline,
            self.tz,
            self.rules,
            watch_started_at=watch["started_at"],
            away=away,
            meters=meters,
            prompt_baseline=prompt_baseline if self.settings.prompt_enabled else None,
            prompted_at=None if latest_prompt is None else latest_prompt["asked_at"],
            prompt_home=bool(buttons),
            prompt_out=False,  # no automated-call channel yet: a button cannot ask an outing
        )
        await conn.execute(
            sa.update(wellbeing_watch)
            .where(wellbeing_watch.c.household_id == household)
            .values(judged_at=now)
        )
        if j.verdict is Verdict.PROMPT:
            return await self._prompt(conn, household, j.silent_since or now, buttons, now)
        if j.verdict is not Verdict.ALERT or j.silent_since == watch["alerted_silence_since"]:
            if j.verdict is Verdict.DEVICE_FAULT:
                log.debug(  # every check while it lasts: supervision reports the device
                    "wellbeing: household %d silent but %s not reporting",
                    household,
                    ", ".join(j.faulty_meters),
                )
            return Effects()
        present = {Source(r.source) for r in sources}
        if watch["face_person_id"]:
            present.add(Source.DOOR)
        zh, en = evidence(j, self.tz, present)
        reason = "silence"
        if j.prompted_at is not None:
            asked = j.prompted_at.astimezone(self.tz)
            zh += f"；{asked:%H:%M} 按键询问“您还好吗”无应答"
            en += f'; no answer to "are you OK?" asked on the button at {asked:%H:%M}'
            reason = "no_answer"
        effects, task_id = await self.open_welfare_check(
            conn, household, watch["grid_id"], reason, zh, en, now
        )
        await conn.execute(
            sa.update(wellbeing_watch)
            .where(wellbeing_watch.c.household_id == household)
            .values(alerted_silence_since=j.silent_since)
        )
        if j.prompted_at is not None and latest_prompt is not None and task_id is not None:
            await conn.execute(
                sa.update(wellbeing_prompts)
                .where(wellbeing_prompts.c.id == latest_prompt["id"])
                .values(welfare_task_id=task_id)
            )
        return effects

    async def _prompt(
        self,
        conn: AsyncConnection,
        household: int,
        silent_since: datetime,
        buttons: list[tuple[str, str]],
        now: datetime,
    ) -> Effects:
        """Ask the resident "are you OK?" on the household's button(s): one prompt row, one
        ``button_feedback`` command per button (the first one's id is kept on the row)."""
        effects = Effects()
        command_ids: list[str] = []
        for device_id, edge_id in buttons:
            command_id = str(uuid.uuid4())
            args: dict[str, Any] = {"code": PROMPT_CODE, "ref_seq": 0}
            await conn.execute(
                sa.insert(commands).values(
                    id=command_id,
                    edge_id=edge_id,
                    device_id=device_id,
                    name="button_feedback",
                    args=args,
                    state="pending",
                    created_at=now,
                )
            )
            effects.commands.append(
                Command(command_id, device_id, "button_feedback", {**args, "edge_id": edge_id})
            )
            command_ids.append(command_id)
        await conn.execute(
            sa.insert(wellbeing_prompts).values(
                household_id=household,
                silence_since=silent_since,
                asked_at=now,
                device_id=buttons[0][0] if buttons else None,
                command_id=command_ids[0] if command_ids else None,
            )
        )
        self.prompts += 1
        log.info(
            'wellbeing: household %d asked "are you OK?" (%d button(s))', household, len(buttons)
        )
        return effects

    # -- welfare checks --------------------------------------------------------------

    async def open_welfare_check(
        self,
        conn: AsyncConnection,
        household: int,
        grid_id: int | None,
        reason: str,
        evidence_zh: str,
        evidence_en: str,
        now: datetime,
    ) -> tuple[Effects, int | None]:
        """One open welfare check per household: a task, its escalation row, the worker
        told. The effects, and the task's id (none when one was open already)."""
        open_check = await conn.execute(
            sa.select(welfare_checks.c.id)
            .join_from(welfare_checks, tasks, welfare_checks.c.task_id == tasks.c.id)
            .where(
                welfare_checks.c.household_id == household,
                welfare_checks.c.closed_at.is_(None),
                tasks.c.state != "done",  # a task marked done without an outcome is over too
            )
        )
        if open_check.first() is not None:
            return Effects(), None
        phone = await _phone(conn, household)
        call = f"tel:{phone}" if phone else ""
        zh = f"关爱探访：{evidence_zh}。请先电话联系{f'（{call}）' if call else ''}，再上门查看"
        en = f"welfare check: {evidence_en}. Call first{f' ({call})' if call else ''}, then visit"
        task_id = await file_device_task(
            conn,
            kind="welfare_check",
            device_id=None,
            household_id=household,
            grid_id=grid_id,
            detail=f"{zh} / {en}",
            now=now,
        )
        assert task_id is not None  # no device: never deduplicated by file_device_task
        await conn.execute(
            sa.insert(welfare_checks).values(
                task_id=task_id,
                household_id=household,
                grid_id=grid_id,
                reason=reason,
                evidence=f"{evidence_zh} / {evidence_en}",
                opened_at=now,
                tier=0,
                next_escalation_at=now + timedelta(seconds=self.settings.backup_after_s),
            )
        )
        self.alerts += 1
        notifications = await notify_grid_worker(
            conn,
            grid_id=grid_id,
            kind="welfare_check",
            message_zh=zh,
            message_en=en,
            task_id=task_id,
            household_id=household,
            device_id=None,
            now=now,
            tz=self.tz,
            ack_base_url=self.ack_base_url,
        )
        return Effects(notifications=notifications), task_id

    async def _escalate(self, conn: AsyncConnection, now: datetime) -> Effects:
        """Unacknowledged welfare checks climb the ladder, one rung per due time."""
        due = (
            await conn.execute(
                sa.select(welfare_checks, tasks.c.detail)
                .join_from(welfare_checks, tasks, welfare_checks.c.task_id == tasks.c.id)
                .where(
                    welfare_checks.c.closed_at.is_(None),
                    welfare_checks.c.next_escalation_at <= now,
                    tasks.c.state == "open",
                )
                .order_by(welfare_checks.c.next_escalation_at)
            )
        ).mappings()
        effects = Effects()
        for row in list(due):
            tier = int(row["tier"]) + 1
            if tier >= len(LADDER):
                continue
            place = await household_place(conn, int(row["household_id"]))
            by_tier = await available_by_tier(conn, place, now, self.tz)
            nxt = (
                now + timedelta(seconds=self.settings.station_after_s)
                if tier + 1 < len(LADDER)
                else None
            )
            await conn.execute(
                sa.update(welfare_checks)
                .where(welfare_checks.c.id == row["id"])
                .values(tier=tier, next_escalation_at=nxt)
            )
            zh, _, en = str(row["detail"]).partition(" / ")
            waited = round((now - row["opened_at"]).total_seconds() / 60)
            for worker_id in by_tier[LADDER[tier]]:
                effects.notifications.append(
                    Notification(
                        case_id=None,
                        worker_id=worker_id,
                        tier=LADDER[tier].value,
                        kind="welfare_check",
                        resident_name=place.resident_name,
                        address=place.address,
                        grid_name=place.grid_name,
                        household_id=place.household_id,
                        occurred_at=now,
                        message_zh=f"{zh}（{waited} 分钟无人接单，已升级）",
                        message_en=f"{en} (unacknowledged for {waited} min, escalated)",
                        ack_path=f"{self.ack_base_url.rstrip('/')}/api/v1/tasks/"
                        f"{row['task_id']}/acknowledge",
                        task_id=int(row["task_id"]),
                        lives_alone=place.lives_alone,
                    )
                )
            log.info(
                "welfare check %s escalated to %s (%d people)",
                row["task_id"],
                LADDER[tier].value,
                len(by_tier[LADDER[tier]]),
            )
        return effects

    # -- daily check-in ---------------------------------------------------------------

    async def _check_in(self, conn: AsyncConnection, watch: Any, now: datetime) -> Effects:
        hour = watch["check_in_hour"]
        if hour is None:
            return Effects()
        household = int(watch["household_id"])
        pending = watch["check_in_task_id"]
        prompted = watch["check_in_prompted_at"]
        after = timedelta(seconds=self.settings.check_in_welfare_after_s)
        if pending is not None and prompted is not None and now >= prompted + after:
            state = (
                await conn.execute(sa.select(tasks.c.state).where(tasks.c.id == pending))
            ).scalar()
            await conn.execute(
                sa.update(wellbeing_watch)
                .where(wellbeing_watch.c.household_id == household)
                .values(check_in_task_id=None)
            )
            if state != "done":
                local = prompted.astimezone(self.tz)
                effects, _ = await self.open_welfare_check(
                    conn,
                    household,
                    watch["grid_id"],
                    "check_in",
                    f"今天 {hour:02d}:00 前未报平安，热线 {local:%H:%M} 起未能确认平安",
                    f"no daily check-in by {hour:02d}:00; the desk could not confirm since "
                    f"{local:%H:%M}",
                    now,
                )
                return effects
            return Effects()
        last = (
            await conn.execute(
                sa.select(sa.func.max(wellbeing_sources.c.last_activity_at)).where(
                    wellbeing_sources.c.household_id == household,
                    wellbeing_sources.c.source.in_([Source.CHECK_IN.value, Source.ANSWER.value]),
                )
            )
        ).scalar()
        day = missed_check_in(now, int(hour), last, self.tz, watch["started_at"])
        if day is None or day == watch["check_in_day"] or pending is not None:
            return Effects()
        phone = await _phone(conn, household)
        call = f"（tel:{phone}）" if phone else ""
        task_id = await file_device_task(
            conn,
            kind="check_in_call",
            device_id=None,
            household_id=household,
            grid_id=watch["grid_id"],
            detail=f"未按时报平安（{hour:02d}:00），请致电确认{call} / "
            f"missed daily check-in ({hour:02d}:00): please phone the resident"
            f"{f' (tel:{phone})' if phone else ''}",
            now=now,
        )
        await conn.execute(
            sa.update(wellbeing_watch)
            .where(wellbeing_watch.c.household_id == household)
            .values(check_in_day=day, check_in_task_id=task_id, check_in_prompted_at=now)
        )
        return Effects()


def _local_midnight(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


async def _away(conn: AsyncConnection, household: int, since: datetime) -> list[AwayPeriod]:
    rows = await conn.execute(
        sa.select(wellbeing_away).where(
            wellbeing_away.c.household_id == household, wellbeing_away.c.ends_at >= since
        )
    )
    return [AwayPeriod(r.starts_at, r.ends_at, r.reason) for r in rows]


async def _buttons(conn: AsyncConnection, household: int) -> list[tuple[str, str]]:
    """The household's CB-100 buttons behind an edge, as (device id, edge id)."""
    rows = await conn.execute(
        sa.select(devices.c.id, devices.c.edge_id)
        .where(
            devices.c.household_id == household,
            devices.c.profile.in_(sorted(BUTTON_PROFILES)),
            devices.c.edge_id.is_not(None),
            devices.c.retired_at.is_(None),
        )
        .order_by(devices.c.id)
    )
    return [(str(r.id), str(r.edge_id)) for r in rows]


async def _phone(conn: AsyncConnection, household: int) -> str | None:
    phone: str | None = (
        await conn.execute(
            sa.select(residents.c.phone)
            .where(residents.c.household_id == household, residents.c.phone.is_not(None))
            .order_by(residents.c.id)
            .limit(1)
        )
    ).scalar()
    return phone
