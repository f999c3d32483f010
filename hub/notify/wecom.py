"""WeCom (企业微信) group robot: a message in the community's work group chat.

The robot's address is ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<key>``; the
key is a secret (``HUB__NOTIFY__WECOM__KEY``) and only ever travels in the query. The body
is ``{"msgtype": "markdown", "markdown": {"content": ...}}`` (or ``"text"``). WeCom answers
HTTP 200 with ``errcode`` 0 on success and a non-zero ``errcode`` otherwise (93000 bad key,
45009 rate limited: 20 messages a minute per robot), which is a failed attempt.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx

from hub.domain.notification import Language, Notification, markdown_in, text_in
from hub.notify.http import HttpRequest, robot_failure

DEFAULT_URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
#: WeCom's limits on ``content``, in UTF-8 bytes.
MAX_MARKDOWN_BYTES = 4096
MAX_TEXT_BYTES = 2048


def clip_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, never inside a character."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    return data[: max_bytes - 3].decode(errors="ignore") + "…"


class WeComRobot:
    channel = "wecom"

    def __init__(
        self,
        key: str,
        *,
        url: str = DEFAULT_URL,
        language: Language = "zh",
        msgtype: Literal["markdown", "text"] = "markdown",
    ) -> None:
        self.url = url
        self._key = key
        self._language: Language = language
        self._msgtype = msgtype

    def body(self, notification: Notification) -> dict[str, Any]:
        if self._msgtype == "markdown":
            content = clip_utf8(markdown_in(notification, self._language), MAX_MARKDOWN_BYTES)
            return {"msgtype": "markdown", "markdown": {"content": content}}
        content = clip_utf8(text_in(notification, self._language), MAX_TEXT_BYTES)
        return {"msgtype": "text", "text": {"content": content}}

    async def request(self, notification: Notification) -> HttpRequest:
        return HttpRequest(self.url, self.body(notification), params={"key": self._key})

    def failure(self, response: httpx.Response) -> str | None:
        return robot_failure(response)
