"""Generic JSON webhook: POSTs each notification to a URL, retrying with backoff.

Deliveries run as background tasks (at most ``MAX_CONCURRENT`` at once) so a slow receiver
never delays ingest or escalation. Failures after the last attempt are counted and logged
without the URL's query string (it may carry a secret key).
"""

from __future__ import annotations

import asyncio
import logging
import random
from urllib.parse import urlsplit

import httpx

from hub.domain.notification import Notification

log = logging.getLogger(__name__)

MAX_CONCURRENT = 16


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


class WebhookNotifier:
    def __init__(self, url: str, *, timeout_s: float = 5.0, attempts: int = 3) -> None:
        self._url = url
        self._attempts = attempts
        self._client = httpx.AsyncClient(timeout=timeout_s)
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0

    async def notify(self, notification: Notification) -> None:
        task = asyncio.create_task(self._deliver(notification), name="webhook-delivery")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, notification: Notification) -> None:
        body = notification.to_json_obj()
        async with self._slots:
            for attempt in range(1, self._attempts + 1):
                try:
                    response = await self._client.post(self._url, json=body)
                    if response.status_code < 300:
                        self.sent += 1
                        return
                    reason = f"HTTP {response.status_code}"
                except httpx.HTTPError as err:
                    reason = type(err).__name__
                if attempt < self._attempts:
                    await asyncio.sleep(min(10.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0))
            self.failed += 1
            log.warning(
                "webhook %s failed for case %s after %d attempts: %s",
                _safe_url(self._url),
                notification.case_id,
                self._attempts,
                reason,
            )

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()
