"""Live streams for the pages and phones, as Server-Sent Events with replay (issue #12).

``GET /api/v1/workers/{worker_id}/stream``: one worker's notifications and the case and
task changes of the worker's grids. A worker opens only their own; operators and admins
any worker's. ``GET /api/v1/stream/cases``: every case and task change (``grid_id`` narrows
it), for the desk (admins, operators, the hotline).

Every event carries an ``id:`` from the durable feed (``hub.notify.stream``); ``ready``'s
is the position the stream starts from.
A client that reconnects with the ``Last-Event-ID`` header (browsers do it by themselves)
or ``?since=<id>`` gets every event after that id first, even across a hub restart; a new
client starts at the present. The first event is ``ready`` (``{"last_event_id": ...}``:
subscribed from there on); ``reset`` means the client was further behind than the feed
keeps and must reload its lists. A comment line every 15 s keeps proxies from closing an
idle stream. The caller's token is checked again every :data:`AUTH_CHECK_S` seconds, so a
stream whose token expires or is revoked (logout, a disabled account) ends within that
time with ``event: unauthorized``. The format is documented in ``docs/web.md``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from hub.api.deps import (
    BearerToken,
    Principal,
    Role,
    RuntimeDep,
    forbidden,
    principal_of,
    require_roles,
)
from hub.runtime import HubRuntime
from hub.services.live_feed import events_after, grids_of_worker

router = APIRouter(prefix="/api/v1", tags=["notifications"])

KEEPALIVE_S = 15.0
#: How often a stream re-checks its token: a revoked or expired one ends it this soon.
AUTH_CHECK_S = 2.0
#: A browser reconnects this long after a dropped stream (the SSE ``retry:`` field).
RETRY_MS = 2000

Listener = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPERATOR, Role.WORKER))]
Desk = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPERATOR, Role.HOTLINE))]
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", include_in_schema=False)]
Since = Annotated[int | None, Query(ge=0, lt=2**63, description="replay events after this id")]

GridScope = Callable[[], Awaitable[frozenset[int] | None]]


def _start_id(last_event_id: str | None, since: int | None) -> int | None:
    if last_event_id is not None and last_event_id.strip().isdigit():
        return min(int(last_event_id.strip()), 2**63 - 1)
    return since


def _event(name: str, data: object, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


async def _feed(
    request: Request,
    runtime: HubRuntime,
    token: str | None,
    start: int | None,
    scope: GridScope,
    *,
    worker_id: int | None,
    notifications: bool,
) -> AsyncIterator[str]:
    streams = runtime.streams
    head = await streams.head()
    since = head if start is None else min(start, head)
    grid_ids = await scope()
    yield f"retry: {RETRY_MS}\n\n"
    if start is not None and since + 1 < await streams.oldest():
        yield _event("reset", {"reason": "older than the feed keeps / 超出保留范围，请刷新"})
        since = head
    # ready carries the position too, so a client that reconnects before any event came
    # (the browser sends the last id it saw) still resumes from here, not from "now".
    yield _event("ready", {"worker_id": worker_id, "last_event_id": since}, since)
    checked = sent = time.monotonic()
    while not await request.is_disconnected():
        now = time.monotonic()
        if now - checked >= AUTH_CHECK_S:
            checked = now
            if await principal_of(runtime, token) is None:
                yield _event("unauthorized", {})
                return
            grid_ids = await scope()
        async with runtime.engine.connect() as conn:
            events, since = await events_after(
                conn, since, worker_id=worker_id, grid_ids=grid_ids, notifications=notifications
            )
        for event in events:
            yield _event(event.event, event.data, event.id)
            sent = time.monotonic()
        if events:
            continue
        if time.monotonic() - sent >= KEEPALIVE_S:
            yield ": keepalive\n\n"
            sent = time.monotonic()
        await streams.wait_beyond(since, min(1.0, AUTH_CHECK_S))


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/workers/{worker_id}/stream",
    summary="Live notifications and case/task changes for one worker (text/event-stream)",
    response_class=StreamingResponse,
)
async def worker_stream(
    worker_id: int,
    request: Request,
    principal: Listener,
    token: BearerToken,
    runtime: RuntimeDep,
    last_event_id: LastEventId = None,
    since: Since = None,
) -> StreamingResponse:
    if principal.role is Role.WORKER and principal.worker_id != worker_id:
        raise forbidden("a worker streams only their own notifications / 只能接收本人的通知")

    async def scope() -> frozenset[int]:
        async with runtime.engine.connect() as conn:
            return await grids_of_worker(conn, worker_id)

    start = _start_id(last_event_id, since)
    return _sse(
        _feed(request, runtime, token, start, scope, worker_id=worker_id, notifications=True)
    )


@router.get(
    "/stream/cases",
    summary="Live case and task changes of every grid, for the desk (text/event-stream)",
    response_class=StreamingResponse,
)
async def desk_stream(
    request: Request,
    principal: Desk,
    token: BearerToken,
    runtime: RuntimeDep,
    grid_id: Annotated[int | None, Query(gt=0, lt=2**63)] = None,
    last_event_id: LastEventId = None,
    since: Since = None,
) -> StreamingResponse:
    only = None if grid_id is None else frozenset({grid_id})

    async def scope() -> frozenset[int] | None:
        return only

    start = _start_id(last_event_id, since)
    return _sse(_feed(request, runtime, token, start, scope, worker_id=None, notifications=False))
