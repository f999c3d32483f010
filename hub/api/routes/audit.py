"""Reading the append-only audit log: who changed what, when, from what to what.

Operators and admins only. Filters combine (AND); ``since`` is inclusive, ``until``
exclusive; newest first. Reading medical notes shows up here as ``medical_notes.read``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime
from sqlalchemy import select

from hub.api.deps import STAFF, ReadConnection, require_roles
from hub.db.schema import audit_log

router = APIRouter(
    prefix="/api/v1/audit", tags=["audit"], dependencies=[Depends(require_roles(*STAFF))]
)


@router.get("", summary="Audit log entries, newest first (operators and admins)")
async def list_audit(
    conn: ReadConnection,
    target_type: Annotated[str | None, Query(max_length=32, examples=["case"])] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=100, examples=["user:alice"])] = None,
    action: Annotated[str | None, Query(max_length=64, examples=["medical_notes.read"])] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    query = select(audit_log)
    for column, value in (
        (audit_log.c.target_type, target_type),
        (audit_log.c.target_id, target_id),
        (audit_log.c.actor, actor),
        (audit_log.c.action, action),
    ):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    if until is not None:
        query = query.where(audit_log.c.at < until)
    query = query.order_by(audit_log.c.id.desc()).limit(limit).offset(offset)
    return [dict(row) for row in (await conn.execute(query)).mappings()]
