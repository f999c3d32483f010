"""Logging in and out: the OAuth2 password flow, revocation, and "who am I".

``POST /api/v1/auth/token`` takes the standard form (``username``, ``password``) and
returns ``{"access_token", "token_type": "bearer", "expires_in"}``; it is the one API route
open to anonymous callers. A wrong username, a wrong password and a disabled account get
the same 401; too many failures get 429 with ``Retry-After`` (see :mod:`hub.auth.throttle`);
too many logins in progress get 503 with ``Retry-After`` at once (:mod:`hub.auth.hash_gate`).
The client address is the TCP peer's, or ``X-Forwarded-For`` from a configured proxy
(:mod:`hub.api.client_address`).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from hub.api.body_limit import anonymous_body
from hub.api.client_address import client_address
from hub.api.deps import (
    HUMANS,
    AuthenticatorDep,
    BearerToken,
    Principal,
    RuntimeDep,
    is_static_token,
    require_roles,
)
from hub.auth.hash_gate import Busy
from hub.auth.login import BadCredentials, Throttled
from hub.auth.tokens import principal_for_token, revoke_token
from hub.services.audit import record_audit

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

Caller = Annotated[Principal, Depends(require_roles(*HUMANS))]


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int  # seconds


class Me(BaseModel):
    kind: str
    name: str
    role: str
    account_id: int | None
    worker_id: int | None
    grid_ids: list[int]
    expires_at: datetime | None


@router.post(
    "/token",
    summary="Log in with username and password (OAuth2 password flow); anonymous",
    responses={
        401: {"description": "wrong credentials"},
        429: {"description": "throttled"},
        503: {"description": "too many logins in progress; retry after Retry-After"},
    },
    openapi_extra=anonymous_body(),
)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    runtime: RuntimeDep,
    authenticator: AuthenticatorDep,
) -> TokenResponse:
    client = client_address(request, runtime.config.api.trusted_proxies)
    try:
        issued, _principal = await authenticator.login(
            runtime.engine, form.username, form.password, client, runtime.clock
        )
    except Throttled as err:
        seconds = max(1, math.ceil(err.retry_after.total_seconds()))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"too many failed logins; retry in {seconds} s / "
            f"登录失败次数过多，请 {seconds} 秒后重试",
            headers={"Retry-After": str(seconds)},
        ) from None
    except Busy as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"too many logins in progress; retry in {err.retry_after_s} s / "
            f"登录请求过多，请 {err.retry_after_s} 秒后重试",
            headers={"Retry-After": str(err.retry_after_s)},
        ) from None
    except BadCredentials:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="wrong username or password / 用户名或密码错误",
            headers={"WWW-Authenticate": "Bearer"},
        ) from None
    return TokenResponse(access_token=issued.token, expires_in=int(issued.lifetime.total_seconds()))


@router.post("/revoke", summary="Revoke the token this request carries (log out)")
async def revoke(principal: Caller, token: BearerToken, runtime: RuntimeDep) -> dict[str, str]:
    if token is None or is_static_token(runtime, token):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="the configured API token cannot be revoked; change HUB__API__TOKEN / "
            "配置的 API 令牌不能撤销，请更换 HUB__API__TOKEN",
        )
    async with runtime.engine.begin() as conn:
        now = runtime.clock()
        await revoke_token(conn, token, now)
        await record_audit(
            conn,
            actor=principal,
            action="auth.revoke",
            target_type="account",
            target_id=principal.user_id or 0,
            at=now,
        )
    return {"status": "revoked"}


@router.get("/me", summary="Who the token belongs to, with role, grids and expiry")
async def me(principal: Caller, token: BearerToken, runtime: RuntimeDep) -> Me:
    expires_at = None
    if token is not None and principal.kind == "user":
        async with runtime.engine.connect() as conn:
            found = await principal_for_token(conn, token, runtime.clock())
        expires_at = found[1] if found is not None else None
    return Me(
        kind=principal.kind,
        name=principal.name,
        role=str(principal.role),
        account_id=principal.user_id,
        worker_id=principal.worker_id,
        grid_ids=sorted(principal.grid_ids),
        expires_at=expires_at,
    )
