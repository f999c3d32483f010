"""Cases as rows and as pages: the mapping to and from ``cases`` rows, and the read side.

Kept apart from :mod:`hub.services.cases` so the write path (state changes, escalation)
reads without the display plumbing. The dictionaries returned here are what the API
serves: times stay aware UTC ``datetime`` objects, enums become their string values, and
every case carries its display label in Chinese and English (see ``hub.domain.case``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import (
    case_audit,
    case_notifications,
    cases,
    commands,
    emergency_contacts,
    grids,
    households,
    residents,
    workers,
)
from hub.domain.case import (
    ACTIVE_STATES,
    LABELS,
    AuditRecord,
    Case,
    CaseState,
    Outcome,
    display_key,
)

CASE_COLUMNS = tuple(f.name for f in fields(Case) if f.name != "id")


def case_from_row(row: Mapping[Any, Any]) -> Case:
    values = {name: row[name] for name in CASE_COLUMNS}
    values["state"] = CaseState(values["state"])
    values["outcome"] = Outcome(values["outcome"]) if values["outcome"] else None
    values["cancel_requested"] = bool(values["cancel_requested"])
    return Case(id=int(row["id"]), **values)


def case_values(case: Case) -> dict[str, Any]:
    """Column values of a case, without ``id`` (assigned by the database)."""
    values = {name: getattr(case, name) for name in CASE_COLUMNS}
    values["state"] = case.state.value
    values["outcome"] = case.outcome.value if case.outcome is not None else None
    return values


def audit_values(record: AuditRecord) -> dict[str, Any]:
    return {
        "case_id": record.case_id,
        "at": record.at,
        "actor": record.actor,
        "action": record.action,
        "from_state": record.from_state.value,
        "to_state": record.to_state.value,
        "detail": record.detail,
    }


def case_summary(case: Case) -> dict[str, Any]:
    """The case's fields plus its display label, ready for JSON."""
    summary = {"id": case.id, **case_values(case), "escalated": case.escalated}
    key = display_key(case)
    zh, en = LABELS[key]
    summary["display"] = {"key": key, "zh": zh, "en": en}
    return summary


async def case_detail(conn: AsyncConnection, case: Case) -> dict[str, Any]:
    """Everything a responder or reviewer needs on one page."""
    detail = case_summary(case)
    household = (
        (
            await conn.execute(
                select(
                    households.c.grid_id,
                    households.c.address,
                    households.c.lives_alone,
                    households.c.medical_notes,
                    households.c.notes,
                    grids.c.name.label("grid_name"),
                )
                .join_from(households, grids, households.c.grid_id == grids.c.id)
                .where(households.c.id == case.household_id)
            )
        )
        .mappings()
        .one()
    )
    detail["household"] = {
        "id": case.household_id,
        **dict(household),
        "lives_alone": bool(household["lives_alone"]),
        "residents": await _rows(
            conn,
            select(residents.c.name, residents.c.phone)
            .where(residents.c.household_id == case.household_id)
            .order_by(residents.c.id),
        ),
        "emergency_contacts": await _rows(
            conn,
            select(
                emergency_contacts.c.name, emergency_contacts.c.relation, emergency_contacts.c.phone
            )
            .where(emergency_contacts.c.household_id == case.household_id)
            .order_by(emergency_contacts.c.id),
        ),
    }
    detail["audit"] = await _rows(
        conn,
        select(
            case_audit.c.at,
            case_audit.c.actor,
            case_audit.c.action,
            case_audit.c.from_state,
            case_audit.c.to_state,
            case_audit.c.detail,
        )
        .where(case_audit.c.case_id == case.id)
        .order_by(case_audit.c.id),
    )
    detail["notifications"] = await _rows(
        conn,
        select(
            case_notifications.c.worker_id,
            workers.c.name.label("worker_name"),
            case_notifications.c.tier,
            case_notifications.c.notified_at,
        )
        .join_from(case_notifications, workers, case_notifications.c.worker_id == workers.c.id)
        .where(case_notifications.c.case_id == case.id)
        .order_by(case_notifications.c.id),
    )
    detail["commands"] = await _rows(
        conn,
        select(
            commands.c.id,
            commands.c.name,
            commands.c.args,
            commands.c.state,
            commands.c.created_at,
            commands.c.sent_at,
            commands.c.result_at,
            commands.c.detail,
        )
        .where(commands.c.case_id == case.id)
        .order_by(commands.c.created_at, commands.c.id),
    )
    return detail


def redact_medical_notes(detail: dict[str, Any], may_read: bool) -> bool:
    """Blank the household's medical notes in a case detail unless the reader ``may_read``.

    Returns True when notes were left in and are not empty: the caller must then record
    ``medical_notes.read`` in the audit log (issue #4). Redacted notes become ``None`` with
    ``medical_notes_redacted: true``, so a client can tell "hidden" from "none recorded".
    """
    household = detail["household"]
    household["medical_notes_redacted"] = not may_read
    if not may_read:
        household["medical_notes"] = None
        return False
    return bool(household["medical_notes"])


async def case_list(
    conn: AsyncConnection,
    *,
    state: CaseState | str | None = None,
    grid_id: int | None = None,
    household_id: int | None = None,
    since: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
    grid_ids: Collection[int] | None = None,
) -> list[dict[str, Any]]:
    """Cases newest first. ``state`` also accepts the overlays "escalated", "cancel_requested".

    ``grid_ids`` narrows to those grids (a grid worker's scope); ``None`` means every grid.
    """
    query = select(cases, households.c.address, grids.c.name.label("grid_name")).join_from(
        cases, households, cases.c.household_id == households.c.id
    )
    query = query.join(grids, cases.c.grid_id == grids.c.id)
    if state == "escalated":
        query = query.where(cases.c.state == CaseState.DISPATCHED.value, cases.c.tier > 0)
    elif state == "cancel_requested":
        query = query.where(
            cases.c.cancel_requested.is_(True),
            cases.c.state.in_([s.value for s in ACTIVE_STATES]),
        )
    elif state is not None:
        query = query.where(cases.c.state == str(state))
    if grid_id is not None:
        query = query.where(cases.c.grid_id == grid_id)
    if household_id is not None:
        query = query.where(cases.c.household_id == household_id)
    if grid_ids is not None:
        query = query.where(cases.c.grid_id.in_(sorted(grid_ids)))
    if since is not None:
        query = query.where(cases.c.opened_at >= since)
    query = query.order_by(cases.c.opened_at.desc(), cases.c.id.desc()).limit(limit).offset(offset)
    listed = []
    for row in (await conn.execute(query)).mappings():
        summary = case_summary(case_from_row(row))
        summary["address"] = row["address"]
        summary["grid_name"] = row["grid_name"]
        listed.append(summary)
    return listed


async def _rows(conn: AsyncConnection, query: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in (await conn.execute(query)).mappings()]
