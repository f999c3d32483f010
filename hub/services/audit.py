"""The append-only audit log: who changed what, when, from what to what.

Writers call :func:`record_audit` inside the transaction that makes the change, so a
change and its audit row commit together or not at all. The table refuses UPDATE and
DELETE (triggers installed by migration 0002).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import audit_log
from hub.domain.access import Principal


async def record_audit(
    conn: AsyncConnection,
    *,
    actor: Principal,
    action: str,
    target_type: str,
    target_id: str | int,
    at: datetime,
    before: Any = None,
    after: Any = None,
) -> None:
    await conn.execute(
        audit_log.insert().values(
            at=at,
            actor=actor.actor,
            actor_role=str(actor.role),
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            before=before,
            after=after,
        )
    )
