"""Log a web page in and out: the session cookie around the existing login (issue #12).

``POST /web/login`` takes the same form as ``POST /api/v1/auth/token`` and runs the same
login (throttling, audit, one answer for every bad credential); instead of showing the
token to script it sets it as the HttpOnly session cookie and answers with the CSRF token
and who logged in. ``GET /web/session`` tells a reloaded page who it is and its CSRF token
(401 when the cookie is missing, expired or revoked: the page goes to the login screen).
``POST /web/logout`` revokes the token and clears the cookie (CSRF-checked like any
unsafe request, so another site cannot log the worker out either).

A login posted from another site is refused (``Sec-Fetch-Site: cross-site`` or a foreign
``Origin``), so a hostile page cannot log the browser into an account of its choosing.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from hub.api.deps import (
    HUMANS,
    AuthenticatorDep,
    BearerToken,
    Principal,
    RuntimeDep,
    require_roles,
)
from hub.api.routes import auth as auth_routes
from hub.auth.tokens import principal_for_token, revoke_token
from hub.services.audit import record_audit
from hub.web.session_cookie import SESSION_COOKIE, csrf_for

router = APIRouter(prefix="/web", include_in_schema=False)  # page plumbing, not API

Person = Annotated[Principal, Depends(require_roles(*HUMANS))]

_NO_SESSION = HTTPException(
    status.HTTP_401_UNAUTHORIZED, detail="not logged in / 未登录或登录已失效"
)


def _secure(runtime: RuntimeDep) -> bool:
    return runtime.config.api.public_base_url.startswith("https://")


def _refuse_cross_site(request: Request) -> None:
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="cross-site login / 跨站登录被拒绝")
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        if urlsplit(origin).netloc != host:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail="cross-site login / 跨站登录被拒绝"
            )


async def _who(runtime: RuntimeDep, token: str) -> dict[str, Any] | None:
    async with runtime.engine.connect() as conn:
        found = await principal_for_token(conn, token, runtime.clock())
    if found is None:
        return None
    principal, expires_at = found
    return {
        "name": principal.name,
        "role": str(principal.role),
        "worker_id": principal.worker_id,
        "grid_ids": sorted(principal.grid_ids),
        "expires_at": expires_at.isoformat(),
        "csrf": csrf_for(token),
    }


@router.post("/login", summary="Log a web page in: sets the HttpOnly session cookie")
async def log_in(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    authenticator: AuthenticatorDep,
) -> dict[str, Any]:
    _refuse_cross_site(request)
    issued = await auth_routes.login(form, request, runtime, authenticator)
    who = await _who(runtime, issued.access_token)
    if who is None:  # the account was disabled in the same instant
        raise _NO_SESSION
    response.set_cookie(
        SESSION_COOKIE,
        issued.access_token,
        max_age=issued.expires_in,
        httponly=True,
        samesite="strict",
        secure=_secure(runtime),
        path="/",
    )
    response.headers["Cache-Control"] = "no-store"
    return who


@router.get("/session", summary="Who this page's session belongs to, and its CSRF token")
async def session(
    principal: Person, token: BearerToken, response: Response, runtime: RuntimeDep
) -> dict[str, Any]:
    who = await _who(runtime, token) if token and principal.kind == "user" else None
    if who is None:  # the static API token has no page session
        raise _NO_SESSION
    response.headers["Cache-Control"] = "no-store"
    return who


@router.post("/logout", summary="Log the page out: revoke its token, clear the cookie")
async def log_out(
    principal: Person, token: BearerToken, response: Response, runtime: RuntimeDep
) -> dict[str, str]:
    if token and principal.kind == "user":
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
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(runtime)
    )
    return {"status": "logged out / 已退出"}
