"""Accounts of people, managed by admins: create, list, read, disable, enable, new password.

A password is set when the account is created (or replaced later) and never returned. A
worker account names the ``workers`` row it acts as; its grids are that worker's grids.
Every change is in the audit log (without the password or its hash). Disabling an account
or giving it a new password revokes all its tokens at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.api.deps import (
    AuthenticatorDep,
    Principal,
    ReadConnection,
    Role,
    RuntimeDep,
    require_roles,
)
from hub.auth import accounts
from hub.auth.accounts import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    USERNAME_PATTERN,
    InvalidAccount,
    UsernameTaken,
)
from hub.auth.tokens import revoke_account_tokens
from hub.runtime import HubRuntime
from hub.services.audit import record_audit
from hub.services.errors import NotFound

Admin = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
router = APIRouter(prefix="/api/v1/accounts", tags=["accounts"])
T = TypeVar("T")

Password = Annotated[
    str,
    Field(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        description="set once, never returned",
    ),
]


class AccountCreate(BaseModel):
    model_config = {"extra": "forbid"}
    username: str = Field(pattern=USERNAME_PATTERN)
    role: Role = Field(description="admin, operator, hotline or worker")
    worker_id: int | None = Field(default=None, gt=0, description="required for workers")
    password: Password


class PasswordChange(BaseModel):
    model_config = {"extra": "forbid"}
    password: Password


class Account(BaseModel):
    id: int
    username: str
    role: str
    worker_id: int | None
    active: bool
    created_at: datetime
    disabled_at: datetime | None


async def _write(runtime: HubRuntime, action: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    try:
        async with runtime.engine.begin() as conn:
            return await action(conn)
    except NotFound as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from err
    except UsernameTaken as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from err
    except InvalidAccount as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(err)) from err


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create an account")
async def create_account(
    body: AccountCreate,
    principal: Admin,
    runtime: RuntimeDep,
    authenticator: AuthenticatorDep,
) -> Account:
    try:
        role = accounts.check_new_account(body.username, body.role, body.worker_id, body.password)
    except InvalidAccount as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(err)) from err
    password_hash = await authenticator.hash_password(body.password)

    async def action(conn: AsyncConnection) -> dict[str, Any]:
        now = runtime.clock()
        created = await accounts.create_account(
            conn,
            username=body.username,
            role=role,
            worker_id=body.worker_id,
            password_hash=password_hash,
            now=now,
        )
        await record_audit(
            conn,
            actor=principal,
            action="account.create",
            target_type="account",
            target_id=created["id"],
            after=_audited(created),
            at=now,
        )
        return created

    return Account(**await _write(runtime, action))


@router.get("", summary="List accounts")
async def list_accounts(
    _principal: Admin,
    conn: ReadConnection,
    role: Role | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[Account]:
    listed = await accounts.list_accounts(
        conn, role=role.value if role else None, limit=limit, offset=offset
    )
    return [Account(**a) for a in listed]


@router.get("/{account_id}", summary="One account")
async def get_account(account_id: int, _principal: Admin, conn: ReadConnection) -> Account:
    try:
        return Account(**await accounts.get_account(conn, account_id))
    except NotFound as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from err


@router.post("/{account_id}/disable", summary="Disable an account and revoke its tokens")
async def disable_account(account_id: int, principal: Admin, runtime: RuntimeDep) -> Account:
    return Account(**await _set_active(runtime, principal, account_id, active=False))


@router.post("/{account_id}/enable", summary="Enable a disabled account again")
async def enable_account(account_id: int, principal: Admin, runtime: RuntimeDep) -> Account:
    return Account(**await _set_active(runtime, principal, account_id, active=True))


@router.put("/{account_id}/password", summary="Set a new password; revokes its tokens")
async def set_password(
    account_id: int,
    body: PasswordChange,
    principal: Admin,
    runtime: RuntimeDep,
    authenticator: AuthenticatorDep,
) -> dict[str, str]:
    async with runtime.engine.connect() as conn:
        try:
            account = await accounts.get_account(conn, account_id)
        except NotFound as err:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from err
    try:
        accounts.check_password(body.password, account["username"])
    except InvalidAccount as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(err)) from err
    password_hash = await authenticator.hash_password(body.password)

    async def action(conn: AsyncConnection) -> None:
        now = runtime.clock()
        await accounts.set_password_hash(conn, account_id, password_hash)
        revoked = await revoke_account_tokens(conn, account_id, now)
        await record_audit(
            conn,
            actor=principal,
            action="account.password",
            target_type="account",
            target_id=account_id,
            after={"tokens_revoked": revoked},
            at=now,
        )

    await _write(runtime, action)
    return {"status": "password set"}


async def _set_active(
    runtime: HubRuntime, principal: Principal, account_id: int, *, active: bool
) -> dict[str, Any]:
    async def action(conn: AsyncConnection) -> dict[str, Any]:
        now = runtime.clock()
        before, after = await accounts.set_active(conn, account_id, active, now)
        revoked = 0 if active else await revoke_account_tokens(conn, account_id, now)
        await record_audit(
            conn,
            actor=principal,
            action="account.enable" if active else "account.disable",
            target_type="account",
            target_id=account_id,
            before=_audited(before),
            after={**_audited(after), "tokens_revoked": revoked},
            at=now,
        )
        return after

    return await _write(runtime, action)


def _audited(account: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in account.items()}
