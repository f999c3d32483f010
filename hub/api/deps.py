"""Shared FastAPI dependencies: the runtime, a database connection, who is asking.

Every route declares the roles that may call it with :func:`require_roles`; the dependency
answers 401 when nobody is authenticated and 403 when the caller's role is not listed.
The resulting :class:`~hub.domain.access.Principal` carries the caller's grids, so
services can narrow what a grid worker sees.

Today the only credential is the operator bearer token (``HUB__API__TOKEN``), which
authenticates as an admin. Per-user accounts with expiring tokens replace it as the
normal way in (issue #4); the static token stays for bootstrap and automation.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.domain.access import Principal, Role
from hub.runtime import HubRuntime

_bearer = HTTPBearer(auto_error=False, description="Bearer token")

__all__ = ["STAFF", "Principal", "Role", "require_roles"]


STAFF = (Role.ADMIN, Role.OPERATOR)


def get_runtime(request: Request) -> HubRuntime:
    runtime: HubRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[HubRuntime, Depends(get_runtime)]

_UNAUTHENTICATED = HTTPException(
    status.HTTP_401_UNAUTHORIZED,
    detail="missing or invalid bearer token / 缺少或无效的访问令牌",
    headers={"WWW-Authenticate": "Bearer"},
)


async def authenticate(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise _UNAUTHENTICATED
    expected = runtime.config.api.token.get_secret_value()
    if secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        return Principal(kind="token", name="api", role=Role.ADMIN)
    raise _UNAUTHENTICATED


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


# Until every route declares its own roles: any human role.
Authenticated = Depends(require_roles(Role.ADMIN, Role.OPERATOR, Role.HOTLINE, Role.WORKER))


async def get_read_connection(runtime: RuntimeDep) -> AsyncIterator[AsyncConnection]:
    async with runtime.engine.connect() as conn:
        yield conn


ReadConnection = Annotated[AsyncConnection, Depends(get_read_connection)]
