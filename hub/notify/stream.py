"""Live notification streams, one per connected worker client (served as SSE by the API).

Each subscriber gets a bounded queue. If a client stops reading, the oldest notification
is dropped for that client (counted in ``dropped``): a stuck phone must not grow the hub's
memory, and on reconnect the client reads open cases from the API anyway.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from hub.domain.notification import Notification

QUEUE_SIZE = 256


class WorkerStreams:
    def __init__(self) -> None:
        self._subscribers: dict[int, set[asyncio.Queue[Notification]]] = defaultdict(set)
        self.dropped = 0
        self.delivered = 0

    def subscribe(self, worker_id: int) -> asyncio.Queue[Notification]:
        queue: asyncio.Queue[Notification] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers[worker_id].add(queue)
        return queue

    def unsubscribe(self, worker_id: int, queue: asyncio.Queue[Notification]) -> None:
        subscribers = self._subscribers.get(worker_id)
        if subscribers is not None:
            subscribers.discard(queue)
            if not subscribers:
                del self._subscribers[worker_id]

    async def notify(self, notification: Notification) -> None:
        for queue in list(self._subscribers.get(notification.worker_id, ())):
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(notification)
            self.delivered += 1
