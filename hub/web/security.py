"""Security headers on every answer of the hub: the pages' Content-Security-Policy above all.

The policy allows scripts, styles, images, fonts and connections from the hub itself and
nothing else: no inline script, no inline style attribute, no CDN, no font service, no
framing by another site. The pages are written for it (ES modules, classes instead of
``style=``). FastAPI's own ``/docs`` loads Swagger UI from a CDN with an inline script, so
it keeps its own looser policy; nothing else does.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "media-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_DOCS = ("/docs", "/redoc")
_ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class SecurityHeaders:
    """Plain ASGI middleware (not ``BaseHTTPMiddleware``: it must not buffer SSE streams)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(_ALWAYS)
        if not str(scope.get("path", "")).startswith(_DOCS):
            extra.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers.extend((k, v) for k, v in extra if k not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
