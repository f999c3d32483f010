"""Households, their residents and emergency contacts: create, change, list, with audit.

Who sees what (rules in :mod:`hub.domain.access`): staff see every grid, a grid worker
only the households of their grids (others: :class:`Forbidden`, lists are narrowed).
Medical notes are narrower still: they are shown only to callers that
``may_read_medical_notes`` the household's grid, and each showing is recorded in the audit
log as ``medical_notes.read``; writing them needs the same right. The audit log itself
never holds the notes (they appear as ``[redacted]``), because more people read it.

Automation (an import of the office's register, run by an admin or with the static token)
may write medical notes only through the explicitly authorised path: the caller passes
``notes_authorised=True`` (the import's ``--medical-notes`` flag / ``medical_notes=true``),
an admin or operator is then allowed, and every household whose notes it writes gets a
``medical_notes.write`` audit row (issue #16). Nobody else gains a right.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import devices, emergency_contacts, grids, households, inserted_id, residents
from hub.domain.access import Principal, Role
from hub.services.audit import record_audit
from hub.services.errors import AlreadyExists, Forbidden, NotFound
from hub.services.records import REDACTED, contains, invalid, page, require_grid, snapshot

_SUMMARY = (households.c.id, households.c.grid_id, households.c.address, households.c.lives_alone)
_MEDICAL = ("medical_notes",)


async def list_households(
    conn: AsyncConnection,
    viewer: Principal,
    *,
    grid_id: int | None = None,
    q: str | None = None,
    lives_alone: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Households the viewer may see; ``q`` searches the address and residents' names."""
    query = select(*_SUMMARY).order_by(households.c.id)
    if not viewer.sees_all_grids():
        query = query.where(households.c.grid_id.in_(sorted(viewer.grid_ids)))
    if grid_id is not None:
        query = query.where(households.c.grid_id == grid_id)
    if lives_alone is not None:
        query = query.where(households.c.lives_alone.is_(lives_alone))
    if q:
        named = exists().where(
            residents.c.household_id == households.c.id, contains(residents.c.name, q)
        )
        query = query.where(or_(contains(households.c.address, q), named))
    rows, total = await page(conn, query, limit, offset)
    names = await conn.execute(
        select(residents.c.household_id, residents.c.name)
        .where(residents.c.household_id.in_([r["id"] for r in rows]))
        .order_by(residents.c.id)
    )
    by_household: dict[int, list[str]] = {}
    for household_id, name in names:
        by_household.setdefault(household_id, []).append(name)
    for row in rows:
        row["residents"] = by_household.get(row["id"], [])
    return rows, total


async def get_household(
    conn: AsyncConnection, viewer: Principal, household_id: int, now: datetime
) -> dict[str, Any]:
    """One household with residents, contacts and device ids.

    ``medical_notes`` is ``None`` unless the viewer may read it; when it is shown, the read
    is audited in ``conn``'s transaction, so call this in a writing transaction.
    """
    household = await _household(conn, household_id)
    require_grid(viewer, household["grid_id"], f"household {household_id}")
    household["residents"] = [
        dict(r)
        for r in (
            await conn.execute(
                select(residents)
                .where(residents.c.household_id == household_id)
                .order_by(residents.c.id)
            )
        ).mappings()
    ]
    household["emergency_contacts"] = [
        dict(r)
        for r in (
            await conn.execute(
                select(emergency_contacts)
                .where(emergency_contacts.c.household_id == household_id)
                .order_by(emergency_contacts.c.id)
            )
        ).mappings()
    ]
    household["device_ids"] = list(
        (
            await conn.execute(
                select(devices.c.id)
                .where(devices.c.household_id == household_id, devices.c.retired_at.is_(None))
                .order_by(devices.c.id)
            )
        ).scalars()
    )
    if viewer.may_read_medical_notes(household["grid_id"]):
        await record_audit(
            conn,
            actor=viewer,
            action="medical_notes.read",
            target_type="household",
            target_id=household_id,
            at=now,
        )
    else:
        household["medical_notes"] = None
    return household


async def create_household(
    conn: AsyncConnection,
    actor: Principal,
    *,
    grid_id: int,
    address: str,
    lives_alone: bool = False,
    medical_notes: str = "",
    notes: str = "",
    now: datetime,
    notes_authorised: bool = False,
) -> dict[str, Any]:
    values = {
        "grid_id": grid_id,
        "address": address,
        "lives_alone": lives_alone,
        "medical_notes": medical_notes,
        "notes": notes,
    }
    await _check_household(
        conn,
        actor,
        values,
        household_id=None,
        writes_notes=bool(medical_notes),
        notes_authorised=notes_authorised,
    )
    household_id = inserted_id(await conn.execute(insert(households).values(**values)))
    after = await _household(conn, household_id)
    await record_audit(
        conn,
        actor=actor,
        action="household.create",
        target_type="household",
        target_id=household_id,
        at=now,
        after=snapshot(after, redact=_MEDICAL),
    )
    if medical_notes and notes_authorised:
        await _audit_notes_written(conn, actor, household_id, now)
    return _without_notes(after)


async def update_household(
    conn: AsyncConnection,
    actor: Principal,
    household_id: int,
    changes: Mapping[str, Any],
    now: datetime,
    *,
    notes_authorised: bool = False,
) -> dict[str, Any]:
    """Change fields; a new ``grid_id`` moves the household and its devices to that grid."""
    before = await _household(conn, household_id)
    require_grid(actor, before["grid_id"], f"household {household_id}")
    values = before | dict(changes)
    writes_notes = (
        "medical_notes" in changes and changes["medical_notes"] != before["medical_notes"]
    )
    await _check_household(
        conn,
        actor,
        values,
        household_id,
        writes_notes=writes_notes,
        notes_authorised=notes_authorised,
    )
    if writes_notes and not may_write_medical_notes(actor, before["grid_id"], notes_authorised):
        raise _no_medical_notes()
    if changes:
        await conn.execute(
            update(households).where(households.c.id == household_id).values(**changes)
        )
    after = await _household(conn, household_id)
    await record_audit(
        conn,
        actor=actor,
        action="household.update",
        target_type="household",
        target_id=household_id,
        at=now,
        before=snapshot(before, redact=_MEDICAL),
        after=snapshot(after, redact=_MEDICAL),
    )
    if writes_notes and notes_authorised:
        await _audit_notes_written(conn, actor, household_id, now)
    return _without_notes(after)


def may_write_medical_notes(actor: Principal, grid_id: int | None, authorised: bool) -> bool:
    """Who reads them may write them; an admin or operator also through the authorised path."""
    if actor.may_read_medical_notes(grid_id):
        return True
    return authorised and actor.role in (Role.ADMIN, Role.OPERATOR)


async def _audit_notes_written(
    conn: AsyncConnection, actor: Principal, household_id: int, now: datetime
) -> None:
    await record_audit(
        conn,
        actor=actor,
        action="medical_notes.write",
        target_type="household",
        target_id=household_id,
        at=now,
        after={"medical_notes": REDACTED, "path": "authorised import"},
    )


async def _check_household(
    conn: AsyncConnection,
    actor: Principal,
    values: Mapping[str, Any],
    household_id: int | None,
    *,
    writes_notes: bool,
    notes_authorised: bool = False,
) -> None:
    grid_id = values["grid_id"]
    if (await conn.execute(select(grids.c.id).where(grids.c.id == grid_id))).first() is None:
        raise invalid("grid_id", f"grid {grid_id} does not exist / 网格 {grid_id} 不存在")
    require_grid(actor, grid_id, f"grid {grid_id}")
    if writes_notes and not may_write_medical_notes(actor, grid_id, notes_authorised):
        raise _no_medical_notes()
    query = select(households.c.id).where(
        households.c.grid_id == grid_id, households.c.address == values["address"]
    )
    if household_id is not None:
        query = query.where(households.c.id != household_id)
    other = (await conn.execute(query)).scalar()
    if other is not None:
        raise AlreadyExists(
            f"household {other} already has the address {values['address']!r} in grid "
            f"{grid_id} / 网格 {grid_id} 中已有该地址的住户 {other}"
        )


def _no_medical_notes() -> Forbidden:
    return Forbidden(
        "only operators and the household's grid workers may write medical notes; an admin "
        "or the API token writes them only through an import with medical notes authorised "
        "(python -m hub import --medical-notes) / 只有运营人员和该住户所在网格的网格员可以填写"
        "健康备注；管理员须通过授权的导入（--medical-notes）写入"
    )


# --- residents and emergency contacts -------------------------------------------------


async def list_residents(
    conn: AsyncConnection,
    viewer: Principal,
    *,
    household_id: int | None = None,
    grid_id: int | None = None,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Residents with their household's grid and address; ``q`` searches name and phone."""
    query = (
        select(residents, households.c.grid_id, households.c.address)
        .join(households, households.c.id == residents.c.household_id)
        .order_by(residents.c.id)
    )
    if not viewer.sees_all_grids():
        query = query.where(households.c.grid_id.in_(sorted(viewer.grid_ids)))
    if household_id is not None:
        query = query.where(residents.c.household_id == household_id)
    if grid_id is not None:
        query = query.where(households.c.grid_id == grid_id)
    if q:
        query = query.where(or_(contains(residents.c.name, q), contains(residents.c.phone, q)))
    return await page(conn, query, limit, offset)


@dataclass(frozen=True)
class _Member:
    """A kind of record that belongs to one household (a resident, an emergency contact)."""

    table: Table
    kind: str  # audit target type and action prefix
    what: str
    zh: str


_RESIDENT = _Member(residents, "resident", "resident", "居民")
_CONTACT = _Member(emergency_contacts, "emergency_contact", "emergency contact", "紧急联系人")


async def create_resident(
    conn: AsyncConnection,
    actor: Principal,
    household_id: int,
    values: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    return await _create_member(conn, _RESIDENT, actor, household_id, values, now)


async def update_resident(
    conn: AsyncConnection,
    actor: Principal,
    resident_id: int,
    changes: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """Change fields; a new ``household_id`` moves the resident (both must be in scope)."""
    return await _update_member(conn, _RESIDENT, actor, resident_id, changes, now)


async def delete_resident(
    conn: AsyncConnection, actor: Principal, resident_id: int, now: datetime
) -> None:
    """For a resident who moved out or died; the audit row keeps what was recorded."""
    await _delete_member(conn, _RESIDENT, actor, resident_id, now)


async def create_contact(
    conn: AsyncConnection,
    actor: Principal,
    household_id: int,
    values: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    return await _create_member(conn, _CONTACT, actor, household_id, values, now)


async def update_contact(
    conn: AsyncConnection,
    actor: Principal,
    contact_id: int,
    changes: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    return await _update_member(conn, _CONTACT, actor, contact_id, changes, now)


async def delete_contact(
    conn: AsyncConnection, actor: Principal, contact_id: int, now: datetime
) -> None:
    await _delete_member(conn, _CONTACT, actor, contact_id, now)


async def _create_member(
    conn: AsyncConnection,
    member: _Member,
    actor: Principal,
    household_id: int,
    values: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    await _writable_household(conn, actor, household_id)
    table = member.table
    row_id = inserted_id(
        await conn.execute(insert(table).values(household_id=household_id, **values))
    )
    after = await _one(conn, table, row_id, member.what, member.zh)
    await record_audit(
        conn,
        actor=actor,
        action=f"{member.kind}.create",
        target_type=member.kind,
        target_id=row_id,
        at=now,
        after=snapshot(after),
    )
    return after


async def _update_member(
    conn: AsyncConnection,
    member: _Member,
    actor: Principal,
    row_id: int,
    changes: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    table = member.table
    before = await _one(conn, table, row_id, member.what, member.zh)
    await _writable_household(conn, actor, before["household_id"])
    if "household_id" in changes and changes["household_id"] != before["household_id"]:
        await _writable_household(conn, actor, changes["household_id"], field="household_id")
    if changes:
        await conn.execute(update(table).where(table.c.id == row_id).values(**changes))
    after = await _one(conn, table, row_id, member.what, member.zh)
    await record_audit(
        conn,
        actor=actor,
        action=f"{member.kind}.update",
        target_type=member.kind,
        target_id=row_id,
        at=now,
        before=snapshot(before),
        after=snapshot(after),
    )
    return after


async def _delete_member(
    conn: AsyncConnection, member: _Member, actor: Principal, row_id: int, now: datetime
) -> None:
    table = member.table
    before = await _one(conn, table, row_id, member.what, member.zh)
    await _writable_household(conn, actor, before["household_id"])
    await conn.execute(delete(table).where(table.c.id == row_id))
    await record_audit(
        conn,
        actor=actor,
        action=f"{member.kind}.delete",
        target_type=member.kind,
        target_id=row_id,
        at=now,
        before=snapshot(before),
    )


# --- shared ---------------------------------------------------------------------------


async def _household(conn: AsyncConnection, household_id: int) -> dict[str, Any]:
    query = select(households).where(households.c.id == household_id)
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"household {household_id} not found / 住户 {household_id} 不存在")
    return dict(row)


async def _writable_household(
    conn: AsyncConnection, actor: Principal, household_id: int, *, field: str | None = None
) -> None:
    """The household exists (else 404, or 422 on ``field``) and is in the actor's grids."""
    row = (
        await conn.execute(select(households.c.grid_id).where(households.c.id == household_id))
    ).first()
    if row is None:
        message = f"household {household_id} does not exist / 住户 {household_id} 不存在"
        if field is not None:
            raise invalid(field, message)
        raise NotFound(message)
    require_grid(actor, row.grid_id, f"household {household_id}")


async def _one(
    conn: AsyncConnection, table: Any, row_id: int, what: str, zh: str
) -> dict[str, Any]:
    row = (await conn.execute(select(table).where(table.c.id == row_id))).mappings().first()
    if row is None:
        raise NotFound(f"{what} {row_id} not found / {zh} {row_id} 不存在")
    return dict(row)


def _without_notes(household: dict[str, Any]) -> dict[str, Any]:
    """Write answers do not echo medical notes (a read is what gets audited)."""
    return {k: v for k, v in household.items() if k != "medical_notes"}
