"""Live notification stream for one worker's phone, as Server-Sent Events.

The first event is ``ready`` (the client is subscribed from then on); each notification is
an ``event: notification`` with the JSON of :class:`hub.domain.notification.Notification`;
a comment line every 15 s keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from hub.api.deps import Authenticated, RuntimeDep

router = APIRouter(prefix="/api/v1/workers", tags=["notifications"], dependencies=[Authenticated])

KEEPALIVE_S = 15.0


@router.get(
    "/{worker_id}/stream",
    summary="Live notifications for one worker (text/event-stream)",
    response_class=StreamingResponse,
)
async def worker_stream(worker_id: int, request: Request, runtime: RuntimeDep) -> StreamingResponse:
    streams = runtime.streams
    queue = streams.subscribe(worker_id)

    async def events() -> AsyncIterator[str]:
        try:
            yield f"event: ready\ndata: {json.dumps({'worker_id': worker_id})}\n\n"
            while not await request.is_disconnected():
                try:
                    notification = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                data = json.dumps(notification.to_json_obj(), ensure_ascii=False)
                yield f"event: notification\ndata: {data}\n\n"
        finally:
            streams.unsubscribe(worker_id, queue)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )
