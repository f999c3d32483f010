"""Request bodies are bounded before a byte of them is held in memory (issue #11).

Without this, FastAPI reads a whole JSON or form body into memory before any dependency
runs, the token check included: three anonymous 150 MiB posts took the hub from 130 MiB
to 1.13 GiB. :class:`BodyLimit` is a plain ASGI middleware in front of everything:

* a declared ``Content-Length`` above the route's limit gets 413 at once, unread;
* a chunked body (no length) is counted as it is received, and 413 is answered the moment
  it passes the limit (the part already read is dropped, never the whole);
* a request with a body to a route that needs a caller is answered 401 *before* the body
  is read, unless its credentials are good (:func:`hub.api.deps.credentials_are_good`).
  Only the login form is read from anonymous callers, under the same limit.

Limits: ``api.body_limits.default_bytes`` for every route; a route that needs more says so
where it is declared, with ``openapi_extra=larger_body("import")`` (a class of limit named
in :class:`hub.config.BodyLimits`), which also shows the limit in the OpenAPI document as
``x-body-limit``. The CSV import is the first; an XLSX import would add the same line.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.config import BodyLimits

BodyClass = Literal["import"]
LIMIT_KEY = "x-body-limit"
#: Routes that take a body from callers without credentials (the login form).
ANONYMOUS_BODY_KEY = "x-anonymous-body"

CheckCredentials = Callable[[Scope], Awaitable[bool]]


def larger_body(body_class: BodyClass) -> dict[str, Any]:
    """``openapi_extra`` for a route that takes bodies up to the ``body_class`` limit."""
    return {LIMIT_KEY: body_class}


def anonymous_body() -> dict[str, Any]:
    """``openapi_extra`` for a route that reads a body before knowing the caller (login)."""
    return {ANONYMOUS_BODY_KEY: True}


class BodyTooLarge(Exception):
    """The body passed its limit while being received."""


def _json_reply(status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> list[Message]:
    body = json.dumps({"detail": detail, "errors": []}, ensure_ascii=False).encode()
    return [
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        },
        {"type": "http.response.body", "body": body},
    ]


def too_large(limit: int) -> list[Message]:
    return _json_reply(
        413,
        f"request body larger than {limit} bytes / 请求体超过 {limit} 字节上限",
        [(b"connection", b"close")],
    )


UNAUTHENTICATED = _json_reply(
    401,
    "missing or invalid bearer token / 缺少或无效的访问令牌",
    [(b"www-authenticate", b"Bearer"), (b"connection", b"close")],
)


class _Route:
    def __init__(self, route: BaseRoute, limit_class: str | None, anonymous: bool) -> None:
        self.route, self.limit_class, self.anonymous = route, limit_class, anonymous


class BodyLimit:
    """The ASGI middleware; ``check_credentials`` decides, from headers only, whether the
    caller may send a body to a route that needs a caller."""

    def __init__(
        self, app: ASGIApp, *, limits: BodyLimits, check_credentials: CheckCredentials
    ) -> None:
        self.app = app
        self.limits = limits
        self.check_credentials = check_credentials
        self._special: list[_Route] | None = None

    def _routes(self, scope: Scope) -> list[_Route]:
        """Routes with a larger limit or an anonymous body, read once from the app."""
        if self._special is None:
            special = []
            for route in _flat_routes(getattr(scope.get("app"), "routes", [])):
                extra = getattr(route, "openapi_extra", None) or {}
                if LIMIT_KEY in extra or ANONYMOUS_BODY_KEY in extra:
                    special.append(
                        _Route(route, extra.get(LIMIT_KEY), bool(extra.get(ANONYMOUS_BODY_KEY)))
                    )
            self._special = special
        return self._special

    def _policy(self, scope: Scope) -> tuple[int, bool]:
        """(limit in bytes, whether anonymous callers may send a body) for this request."""
        for special in self._routes(scope):
            match, _ = special.route.matches(scope)
            if match is Match.FULL:
                limit = self.limits.default_bytes
                if special.limit_class is not None:
                    limit = getattr(self.limits, f"{special.limit_class}_bytes")
                return limit, special.anonymous
        return self.limits.default_bytes, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length_text = headers.get(b"content-length")
        has_body = length_text not in (None, b"0") or b"transfer-encoding" in headers
        if not has_body:
            await self.app(scope, receive, send)
            return
        limit, anonymous = self._policy(scope)
        if length_text is not None:
            try:
                declared = int(length_text)
            except ValueError:
                declared = limit + 1  # a length we cannot read is not one we accept
            if declared > limit:
                await _send_all(send, too_large(limit))
                return
        if not anonymous and not await self.check_credentials(scope):
            await _send_all(send, UNAUTHENTICATED)
            return
        await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to a body it never got whole: ours goes instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            pass
        if exceeded and not started:
            await _send_all(send, too_large(limit))


def _flat_routes(routes: list[BaseRoute]) -> list[Any]:
    """Every route as served, included routers flattened (FastAPI includes them lazily)."""
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # older FastAPI: the list is already flat
        return list(routes)
    return list(iter_route_contexts(routes))


async def _send_all(send: Send, messages: list[Message]) -> None:
    for message in messages:
        await send(message)
