"""What people do with the wellbeing watch (issue #15): consent, away periods, reading a
household's activity, recording a welfare check's outcome. Each is audited in the same
transaction, and reading activity is audited too: it is the most private thing the hub
keeps about a resident. Who may call what is decided by
:meth:`hub.domain.access.Principal.may_see_wellbeing` (grid worker, station, desk).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import (
    households,
    inserted_id,
    tasks,
    welfare_checks,
    wellbeing_activity,
    wellbeing_away,
    wellbeing_prompts,
    wellbeing_sources,
    wellbeing_watch,
)
from hub.domain.access import Principal
from hub.services.audit import record_audit
from hub.services.errors import Forbidden, InvalidAct, NotFound
from hub.services.tasks import advance_task

AWAY_REASONS = ("hospital", "travel", "family_visit", "other")
OUTCOMES = ("all_well", "helped", "hospital", "no_answer_door_opened")
MAX_AWAY = timedelta(days=180)
NOT_YOURS = "outside your grids / 不在您负责的网格内"


async def household_grid(conn: AsyncConnection, principal: Principal, household_id: int) -> int:
    """The household's grid, once the caller is allowed to see its wellbeing data."""
    grid: int | None = (
        await conn.execute(sa.select(households.c.grid_id).where(households.c.id == household_id))
    ).scalar()
    if grid is None:
        raise NotFound(f"household {household_id} not found / 住户 {household_id} 不存在")
    if not principal.may_see_wellbeing(grid):
        raise Forbidden(NOT_YOURS)
    return grid


async def set_consent(
    conn: AsyncConnection,
    principal: Principal,
    household_id: int,
    *,
    consent: bool,
    face_person_id: str | None,
    check_in_hour: int | None,
    note: str,
    now: datetime,
) -> dict[str, Any]:
    await household_grid(conn, principal, household_id)
    query = sa.select(wellbeing_watch).where(wellbeing_watch.c.household_id == household_id)
    before = (await conn.execute(query)).mappings().first()
    values = {
        "consent": consent,
        "consent_at": now,
        "consent_by": principal.actor,
        "consent_note": note,
        "face_person_id": face_person_id,
        "check_in_hour": check_in_hour,
    }
    if face_person_id is not None:
        taken = await conn.execute(
            sa.select(wellbeing_watch.c.household_id).where(
                wellbeing_watch.c.face_person_id == face_person_id,
                wellbeing_watch.c.household_id != household_id,
            )
        )
        if taken.first() is not None:
            raise InvalidAct(
                f"face id {face_person_id} belongs to another household / 人脸编号已被占用"
            )
    if before is None:
        await conn.execute(
            sa.insert(wellbeing_watch).values(household_id=household_id, started_at=now, **values)
        )
    else:
        if consent and not before["consent"]:
            values["started_at"] = now  # silence never counts from before consent
        await conn.execute(
            sa.update(wellbeing_watch)
            .where(wellbeing_watch.c.household_id == household_id)
            .values(**values)
        )
    after = _consent_view((await conn.execute(query)).mappings().one())
    await record_audit(
        conn,
        actor=principal,
        action="wellbeing.consent",
        target_type="household",
        target_id=household_id,
        before=_consent_view(before) if before is not None else None,
        after=after,
        at=now,
    )
    return after


def _consent_view(row: Any) -> dict[str, Any]:
    return {
        "household_id": row["household_id"],
        "consent": bool(row["consent"]),
        "consent_at": row["consent_at"].isoformat(),
        "consent_by": row["consent_by"],
        "consent_note": row["consent_note"],
        "face_person_id": row["face_person_id"],
        "check_in_hour": row["check_in_hour"],
        "started_at": row["started_at"].isoformat(),
    }


async def add_away(
    conn: AsyncConnection,
    principal: Principal,
    household_id: int,
    *,
    reason: str,
    starts_at: datetime | None,
    ends_at: datetime,
    note: str,
    now: datetime,
) -> dict[str, Any]:
    await household_grid(conn, principal, household_id)
    start = starts_at or now
    if reason not in AWAY_REASONS:
        raise InvalidAct(f"reason must be one of {', '.join(AWAY_REASONS)} / 原因无效")
    if ends_at <= start or ends_at <= now:
        raise InvalidAct(
            "ends_at must be after starts_at and in the future / 结束时间须晚于开始时间和现在"
        )
    if ends_at - start > MAX_AWAY:
        raise InvalidAct("an away period lasts at most 180 days / 外出最长 180 天")
    result = await conn.execute(
        sa.insert(wellbeing_away).values(
            household_id=household_id,
            reason=reason,
            starts_at=start,
            ends_at=ends_at,
            note=note,
            created_by=principal.actor,
            created_at=now,
        )
    )
    away_id = inserted_id(result)
    row = {
        "id": away_id,
        "household_id": household_id,
        "reason": reason,
        "starts_at": start.isoformat(),
        "ends_at": ends_at.isoformat(),
        "note": note,
    }
    await record_audit(
        conn,
        actor=principal,
        action="wellbeing.away",
        target_type="household",
        target_id=household_id,
        after=row,
        at=now,
    )
    return row


async def end_away(
    conn: AsyncConnection, principal: Principal, away_id: int, now: datetime
) -> dict[str, Any]:
    """The resident is back early: the period ends now."""
    row = (
        (await conn.execute(sa.select(wellbeing_away).where(wellbeing_away.c.id == away_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"away period {away_id} not found / 外出记录不存在")
    await household_grid(conn, principal, int(row["household_id"]))
    if row["ends_at"] <= now:
        raise InvalidAct("this away period has ended already / 该外出记录已结束")
    await conn.execute(
        sa.update(wellbeing_away).where(wellbeing_away.c.id == away_id).values(ends_at=now)
    )
    await record_audit(
        conn,
        actor=principal,
        action="wellbeing.away_ended",
        target_type="household",
        target_id=int(row["household_id"]),
        before={"ends_at": row["ends_at"].isoformat()},
        after={"ends_at": now.isoformat()},
        at=now,
    )
    return {"id": away_id, "ends_at": now.isoformat()}


async def read_activity(
    conn: AsyncConnection, principal: Principal, household_id: int, hours: int, now: datetime
) -> dict[str, Any]:
    """The household's watch, sources, activity and "are you OK?" prompts of the last
    ``hours``; audited (a prompt says when the resident was quiet, as private as activity)."""
    await household_grid(conn, principal, household_id)
    watch = (
        (
            await conn.execute(
                sa.select(wellbeing_watch).where(wellbeing_watch.c.household_id == household_id)
            )
        )
        .mappings()
        .first()
    )
    since = now - timedelta(hours=hours)
    activity = [
        {"source": r.source, "device_id": r.device_id, "at": r.at.isoformat()}
        for r in await conn.execute(
            sa.select(wellbeing_activity)
            .where(
                wellbeing_activity.c.household_id == household_id,
                wellbeing_activity.c.at >= since,
            )
            .order_by(wellbeing_activity.c.at.desc())
            .limit(2000)
        )
    ]
    sources = [
        {
            "source": r.source,
            "device_id": r.device_id,
            "last_report_at": r.last_report_at.isoformat() if r.last_report_at else None,
            "last_activity_at": r.last_activity_at.isoformat() if r.last_activity_at else None,
        }
        for r in await conn.execute(
            sa.select(wellbeing_sources).where(wellbeing_sources.c.household_id == household_id)
        )
    ]
    away = [
        {
            "id": r.id,
            "reason": r.reason,
            "starts_at": r.starts_at.isoformat(),
            "ends_at": r.ends_at.isoformat(),
            "note": r.note,
        }
        for r in await conn.execute(
            sa.select(wellbeing_away)
            .where(wellbeing_away.c.household_id == household_id, wellbeing_away.c.ends_at > now)
            .order_by(wellbeing_away.c.starts_at)
        )
    ]
    prompts = [
        {
            "id": r.id,
            "silence_since": r.silence_since.isoformat(),
            "asked_at": r.asked_at.isoformat(),
            "device_id": r.device_id,
            "answered_at": r.answered_at.isoformat() if r.answered_at else None,
            "answer": r.answer,
            "welfare_task_id": r.welfare_task_id,
        }
        for r in await conn.execute(
            sa.select(wellbeing_prompts)
            .where(
                wellbeing_prompts.c.household_id == household_id,
                wellbeing_prompts.c.asked_at >= since,
            )
            .order_by(wellbeing_prompts.c.asked_at.desc())
            .limit(500)
        )
    ]
    await record_audit(
        conn,
        actor=principal,
        action="wellbeing_activity.read",
        target_type="household",
        target_id=household_id,
        after={"hours": hours, "rows": len(activity), "prompts": len(prompts)},
        at=now,
    )
    return {
        "household_id": household_id,
        "watch": _consent_view(watch) if watch is not None else None,
        "sources": sources,
        "away": away,
        "activity": activity,
        "prompts": prompts,
    }


async def record_outcome(
    conn: AsyncConnection,
    principal: Principal,
    task_id: int,
    worker_id: int,
    outcome: str,
    note: str,
    now: datetime,
) -> dict[str, Any]:
    """What the visit found; closes the welfare check and its task."""
    if outcome not in OUTCOMES:
        raise InvalidAct(f"outcome must be one of {', '.join(OUTCOMES)} / 结果无效")
    row = (
        (await conn.execute(sa.select(welfare_checks).where(welfare_checks.c.task_id == task_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"welfare check {task_id} not found / 关爱探访 {task_id} 不存在")
    await household_grid(conn, principal, int(row["household_id"]))
    if row["closed_at"] is not None:
        raise InvalidAct(f"welfare check {task_id} is closed already / 该探访已结束")
    state = (await conn.execute(sa.select(tasks.c.state).where(tasks.c.id == task_id))).scalar()
    if state != "done":
        await advance_task(conn, task_id, worker_id, "done", now)
    await conn.execute(
        sa.update(welfare_checks)
        .where(welfare_checks.c.id == row["id"])
        .values(
            outcome=outcome,
            outcome_note=note,
            outcome_by=principal.actor,
            closed_at=now,
            next_escalation_at=None,
        )
    )
    after = {"task_id": task_id, "outcome": outcome, "note": note, "worker_id": worker_id}
    await record_audit(
        conn,
        actor=principal,
        action="welfare_check.outcome",
        target_type="task",
        target_id=task_id,
        before={"tier": row["tier"], "closed_at": None},
        after=after,
        at=now,
    )
    return after


async def list_checks(
    conn: AsyncConnection, principal: Principal, *, open_only: bool, limit: int
) -> list[dict[str, Any]]:
    query = sa.select(welfare_checks, tasks.c.state.label("task_state")).join_from(
        welfare_checks, tasks, welfare_checks.c.task_id == tasks.c.id
    )
    if open_only:
        query = query.where(welfare_checks.c.closed_at.is_(None))
    query = query.order_by(welfare_checks.c.opened_at.desc()).limit(limit)
    rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    return [r for r in rows if principal.may_see_wellbeing(r["grid_id"])]
