"""DingTalk (钉钉) group robot: a markdown message in the community's group chat.

The robot's address is ``https://oapi.dingtalk.com/robot/send?access_token=<token>``; the
token is a secret (``HUB__NOTIFY__DINGTALK__ACCESS_TOKEN``). A robot with "加签" security
also needs ``timestamp`` (ms) and ``sign`` = base64(HMAC-SHA256(key=secret,
msg="<timestamp>\\n<secret>")) in the query; the signature is made afresh for every attempt
because DingTalk refuses one older than an hour. The body is
``{"msgtype": "markdown", "markdown": {"title": ..., "text": ...}}``; DingTalk answers HTTP
200 with ``errcode`` 0 on success and a non-zero ``errcode`` otherwise (310000: bad
signature or keyword), which is a failed attempt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import httpx

from hub.domain.notification import Language, Notification, markdown_in, title_in
from hub.notify.http import HttpRequest, robot_failure
from hub.notify.wecom import clip_utf8

DEFAULT_URL = "https://oapi.dingtalk.com/robot/send"
MAX_TEXT_BYTES = 16_000  # DingTalk allows about 20,000


def sign(secret: str, timestamp_ms: str) -> str:
    """The ``sign`` query value for ``timestamp_ms`` (before URL encoding)."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


class DingTalkRobot:
    channel = "dingtalk"

    def __init__(
        self,
        access_token: str,
        *,
        secret: str | None = None,
        url: str = DEFAULT_URL,
        language: Language = "zh",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._token = access_token
        self._secret = secret
        self._language: Language = language
        self._clock = clock

    def body(self, notification: Notification) -> dict[str, Any]:
        return {
            "msgtype": "markdown",
            "markdown": {
                "title": title_in(notification, self._language),
                "text": clip_utf8(markdown_in(notification, self._language), MAX_TEXT_BYTES),
            },
        }

    async def request(self, notification: Notification) -> HttpRequest:
        params = {"access_token": self._token}
        if self._secret:
            timestamp = str(round(self._clock() * 1000))
            params |= {"timestamp": timestamp, "sign": sign(self._secret, timestamp)}
        return HttpRequest(self.url, self.body(notification), params=params)

    def failure(self, response: httpx.Response) -> str | None:
        return robot_failure(response)
