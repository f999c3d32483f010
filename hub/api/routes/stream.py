"""Live notification stream for one worker's phone, as Server-Sent Events.

The first event is ``ready`` (the client is subscribed from then on); each notification is
an ``event: notification`` with the JSON of :class:`hub.domain.notification.Notification`;
a comment line every 15 s keeps proxies from closing an idle stream.

A worker streams only their own notifications; operators and admins may open any worker's
stream. The caller's token is checked again at every keep-alive, so a stream opened with a
token that has since expired or been revoked ends (with an ``event: unauthorized``) within
:data:`KEEPALIVE_S` seconds instead of running on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
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

router = APIRouter(prefix="/api/v1/workers", tags=["notifications"])

KEEPALIVE_S = 15.0

Listener = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPERATOR, Role.WORKER))]


@router.get(
    "/{worker_id}/stream",
    summary="Live notifications for one worker (text/event-stream)",
    response_class=StreamingResponse,
)
async def worker_stream(
    worker_id: int,
    request: Request,
    principal: Listener,
    token: BearerToken,
    runtime: RuntimeDep,
) -> StreamingResponse:
    if principal.role is Role.WORKER and principal.worker_id != worker_id:
        raise forbidden("a worker streams only their own notifications / 只能接收本人的通知")
    streams = runtime.streams
    queue = streams.subscribe(worker_id)

    async def events() -> AsyncIterator[str]:
        try:
            yield f"event: ready\ndata: {json.dumps({'worker_id': worker_id})}\n\n"
            while not await request.is_disconnected():
                try:
                    notification = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    if await principal_of(runtime, token) is None:
                        yield "event: unauthorized\ndata: {}\n\n"
                        return
                    yield ": keepalive\n\n"
                    continue
                data = json.dumps(notification.to_json_obj(), ensure_ascii=False)
                yield f"event: notification\ndata: {data}\n\n"
        finally:
            streams.unsubscribe(worker_id, queue)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )
