"""Generic JSON webhook: POSTs each notification, as its JSON object, to a URL.

The body is :meth:`hub.domain.notification.Notification.to_json_obj` (both languages); any
2xx answer is a delivery. Retries, counting and recording are :class:`~hub.notify.http.
HttpChannel`'s, shared with the WeCom, DingTalk and SMS channels.
"""

from __future__ import annotations

import httpx

from hub.domain.notification import Notification
from hub.notify.http import HttpRequest, http_failure


class JsonWebhook:
    channel = "webhook"

    def __init__(self, url: str) -> None:
        self.url = url

    async def request(self, notification: Notification) -> HttpRequest:
        return HttpRequest(self.url, notification.to_json_obj())

    def failure(self, response: httpx.Response) -> str | None:
        return http_failure(response)
