"""Shared FastAPI dependencies: the runtime, a database connection, who is asking.

Every route declares the roles that may call it with :func:`require_roles`; the dependency
answers 401 when nobody is authenticated and 403 when the caller's role is not listed.
The resulting :class:`Principal` carries the caller's grids, so services can narrow what a
grid worker sees.

Today the only credential is the operator bearer token (``HUB__API__TOKEN``), which
authenticates as an admin. Per-user accounts with expiring tokens replace it as the
normal way in (issue #4); the static token stays for bootstrap and automation.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.runtime import HubRuntime

_bearer = HTTPBearer(auto_error=False, description="Bearer token")


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    HOTLINE = "hotline"  # the hotline desk (热线坐席)
    WORKER = "worker"  # a grid worker (网格员), bound to one or more grids
    EDGE = "edge"  # an edge agent: a machine identity, never a user account


STAFF = (Role.ADMIN, Role.OPERATOR)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    kind: str  # "user" | "token" | "edge"
    name: str
    role: Role
    user_id: int | None = None
    worker_id: int | None = None  # the workers row a worker account acts as
    grid_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def actor(self) -> str:
        """How the audit log names this caller, e.g. ``user:alice``."""
        return f"{self.kind}:{self.name}"

    def sees_all_grids(self) -> bool:
        return self.role in (Role.ADMIN, Role.OPERATOR, Role.HOTLINE)

    def sees_grid(self, grid_id: int | None) -> bool:
        return self.sees_all_grids() or (grid_id is not None and grid_id in self.grid_ids)


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
