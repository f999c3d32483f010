"""Shared FastAPI dependencies: the runtime, a database connection, authentication.

Every route depends on :data:`Authenticated`: requests without the right bearer token get
401. (Per-user accounts and roles are issue #4; until then one operator token guards the
API and the worker acts are attributed by ``worker_id`` in the body.)
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.runtime import HubRuntime

_bearer = HTTPBearer(auto_error=False, description="Operator API token (HUB__API__TOKEN)")


def get_runtime(request: Request) -> HubRuntime:
    runtime: HubRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[HubRuntime, Depends(get_runtime)]


def require_token(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    expected = runtime.config.api.token.get_secret_value()
    if credentials is None or not secrets.compare_digest(
        credentials.credentials.encode(), expected.encode()
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token / 缺少或无效的访问令牌",
            headers={"WWW-Authenticate": "Bearer"},
        )


Authenticated = Depends(require_token)


async def get_read_connection(runtime: RuntimeDep) -> AsyncIterator[AsyncConnection]:
    async with runtime.engine.connect() as conn:
        yield conn


ReadConnection = Annotated[AsyncConnection, Depends(get_read_connection)]
