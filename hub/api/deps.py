"""Shared FastAPI dependencies: the runtime, a database connection, who is asking.

Every route declares the roles that may call it with :func:`require_roles`; the dependency
answers 401 when nobody is authenticated and 403 when the caller's role is not listed.
The resulting :class:`~hub.domain.access.Principal` carries the caller's grids, so
services can narrow what a grid worker sees.

Two kinds of bearer token are accepted. The normal way in is an account's token from
``POST /api/v1/auth/token`` (OAuth2 password flow), which expires and can be revoked and
is checked against the database on every request, so a revocation or a disabled account
takes effect at once. The configured static token (``HUB__API__TOKEN``) authenticates as
an admin, for bootstrap and automation. Both answer the same 401 when wrong: the reply
does not tell an expired token from a revoked or an invented one.

The web pages (:mod:`hub.web`) carry the same account token in an HttpOnly session cookie
instead of the header (issue #12). A request authenticated by that cookie must, for any
method but GET/HEAD/OPTIONS, also carry the session's CSRF token in ``X-CSRF-Token``
(:func:`hub.web.session_cookie.csrf_for`): a page of another site cannot read it, so it
cannot make the browser act for the worker. A bearer header wins over the cookie.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.auth.login import Authenticator
from hub.auth.tokens import principal_for_token
from hub.domain.access import Principal, Role
from hub.runtime import HubRuntime
from hub.web.session_cookie import SESSION_COOKIE, csrf_matches

TOKEN_URL = "/api/v1/auth/token"
_bearer = OAuth2PasswordBearer(
    tokenUrl=TOKEN_URL,
    auto_error=False,
    description="An account's token from the login endpoint, or the static API token",
)

__all__ = ["HUMANS", "STAFF", "Principal", "Role", "require_roles"]


STAFF = (Role.ADMIN, Role.OPERATOR)
#: Every role a person can have (everyone but edges).
HUMANS = (Role.ADMIN, Role.OPERATOR, Role.HOTLINE, Role.WORKER)


def get_runtime(request: Request) -> HubRuntime:
    runtime: HubRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[HubRuntime, Depends(get_runtime)]

_UNAUTHENTICATED = HTTPException(
    status.HTTP_401_UNAUTHORIZED,
    detail="missing or invalid bearer token / 缺少或无效的访问令牌",
    headers={"WWW-Authenticate": "Bearer"},
)


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CSRF_MISSING = HTTPException(
    status.HTTP_403_FORBIDDEN,
    detail="missing or wrong X-CSRF-Token for a cookie session / 缺少或错误的 CSRF 令牌",
)


def request_token(request: Request, bearer: Annotated[str | None, Depends(_bearer)]) -> str | None:
    """The bearer token, else the web session cookie's (CSRF-checked for unsafe methods)."""
    if bearer:
        return bearer
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    if request.method not in _SAFE_METHODS and not csrf_matches(
        cookie, request.headers.get("x-csrf-token")
    ):
        raise _CSRF_MISSING
    return cookie


BearerToken = Annotated[str | None, Depends(request_token)]


def get_authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]


def is_static_token(runtime: HubRuntime, token: str) -> bool:
    expected = runtime.config.api.token.get_secret_value()
    return secrets.compare_digest(token.encode(), expected.encode())


async def principal_of(runtime: HubRuntime, token: str | None) -> Principal | None:
    """Who ``token`` belongs to right now, or None (missing, unknown, expired, revoked)."""
    if not token:
        return None
    if is_static_token(runtime, token):
        return Principal(kind="token", name="api", role=Role.ADMIN)
    async with runtime.engine.connect() as conn:
        found = await principal_for_token(conn, token, runtime.clock())
    return found[0] if found is not None else None


async def authenticate(runtime: RuntimeDep, token: BearerToken) -> Principal:
    principal = await principal_of(runtime, token)
    if principal is None:
        raise _UNAUTHENTICATED
    return principal


def require_roles(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency admitting only ``roles``; its ``roles`` attribute lets tests audit routes."""
    allowed = frozenset(roles)

    async def dependency(
        principal: Annotated[Principal, Depends(authenticate)],
    ) -> Principal:
        if principal.role not in allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"role {principal.role} may not do this / 当前角色无权执行此操作",
            )
        return principal

    dependency.roles = allowed  # type: ignore[attr-defined]
    return dependency


def forbidden(detail: str) -> HTTPException:
    """403 for a caller whose role may call the route but not on this record (wrong grid)."""
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=detail)


OUTSIDE_GRID = "outside your grids / 不在您负责的网格内"


async def get_read_connection(runtime: RuntimeDep) -> AsyncIterator[AsyncConnection]:
    async with runtime.engine.connect() as conn:
        yield conn


ReadConnection = Annotated[AsyncConnection, Depends(get_read_connection)]
