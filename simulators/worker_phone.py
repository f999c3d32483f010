"""A grid worker's phone: reads the hub's live notification stream (Server-Sent Events).

One reader for the demo, the benchmarks and the acceptance tests, so all three consume the
stream exactly as a phone app would (``GET /api/v1/workers/<id>/stream``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx


async def stream_events(
    client: httpx.AsyncClient, worker_id: int
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yield ``(event name, data)`` for every event: first ``ready``, then ``notification``s."""
    event = ""
    async with client.stream(
        "GET", f"/api/v1/workers/{worker_id}/stream", timeout=None
    ) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                yield event, json.loads(line[6:])
