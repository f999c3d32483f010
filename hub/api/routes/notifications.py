"""Delivery outcomes of the HTTP notification channels (WeCom, DingTalk, SMS, webhooks).

A failed delivery (after its retries) is listed here with the last error, so a desk
operator can see that a worker was not reached and call instead; the counts are also in
``/metrics``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from hub.api.deps import ReadConnection, Role, require_roles
from hub.services.notify_store import list_deliveries

router = APIRouter(
    prefix="/api/v1/notifications",
    tags=["notifications"],
    dependencies=[Depends(require_roles(Role.ADMIN, Role.OPERATOR, Role.HOTLINE))],
)


@router.get("/deliveries", summary="Notification deliveries, newest first (filter: failed)")
async def deliveries(
    conn: ReadConnection,
    state: Literal["sent", "failed"] | None = None,
    channel: Annotated[str | None, Query(max_length=16)] = None,
    case_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    return await list_deliveries(
        conn, state=state, channel=channel, case_id=case_id, limit=limit, offset=offset
    )
