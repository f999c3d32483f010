"""Prometheus metrics of this hub process (text exposition format), for staff and scrapers.

Prometheus sends the operator token as a bearer token (``authorization`` in its scrape
config). What the metrics are: :mod:`hub.metrics`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST

from hub.api.deps import Principal, ReadConnection, Role, require_roles
from hub.metrics import HubMetrics

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics: ingest, cases, escalations, notifications, edge outboxes",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(
    # Authentication first: an anonymous scrape is refused before a connection is opened.
    _principal: Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPERATOR))],
    request: Request,
    conn: ReadConnection,
) -> Response:
    hub_metrics = getattr(request.app.state, "metrics", None)
    if not isinstance(hub_metrics, HubMetrics):
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="metrics not ready / 指标尚未就绪"
        )
    return Response(await hub_metrics.render(conn), media_type=CONTENT_TYPE_LATEST)
