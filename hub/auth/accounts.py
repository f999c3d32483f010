"""Accounts of people: create, list, find for login, disable, set a new password.

Shared by the admin API and ``python -m hub create-account``, so both apply the same rules:
a username of letters, digits and ``. _ @ -``; one of the human roles (never ``edge``:
edges are machine identities with broker credentials, not accounts); a worker account names
the existing ``workers`` row it acts as, and no other role may; a password that passes
:mod:`hub.auth.password_policy`. Passwords arrive here already hashed.

A worker account works only while its ``workers`` row is active: deactivating the worker
disables the account and revokes its tokens in the same transaction
(:func:`disable_worker_accounts`), and login and token checks also look at the worker row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.auth.password_policy import WeakPassword, password_problem
from hub.db.schema import accounts, inserted_id, workers
from hub.domain.access import Role
from hub.services.errors import InvalidAct, NotFound, ServiceError

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{2,63}$"
HUMAN_ROLES = (Role.ADMIN, Role.OPERATOR, Role.HOTLINE, Role.WORKER)

#: What the API and the audit log may show of an account (never the hash).
PUBLIC_COLUMNS = (
    accounts.c.id,
    accounts.c.username,
    accounts.c.role,
    accounts.c.worker_id,
    accounts.c.active,
    accounts.c.created_at,
    accounts.c.disabled_at,
)


class InvalidAccount(ServiceError):
    """The account as described breaks a rule (API: 422)."""


class UsernameTaken(InvalidAct):
    """Another account already has this username (API: 409)."""


@dataclass(frozen=True, slots=True)
class LoginRecord:
    id: int
    username: str
    password_hash: str
    active: bool


def check_new_account(username: str, role: str, worker_id: int | None, password: str) -> Role:
    """The role, if the account may exist as described; else :class:`InvalidAccount`."""
    if not re.fullmatch(USERNAME_PATTERN, username):
        raise InvalidAccount(
            "username: 3-64 letters, digits or . _ @ - / 用户名须为3-64位字母、数字或 . _ @ -"
        )
    try:
        parsed = Role(role)
    except ValueError:
        parsed = None
    if parsed not in HUMAN_ROLES:
        known = ", ".join(r.value for r in HUMAN_ROLES)
        raise InvalidAccount(f"role must be one of {known} / 角色须为 {known} 之一")
    if (parsed is Role.WORKER) != (worker_id is not None):
        raise InvalidAccount(
            "worker_id is required for a worker account and only for it / "
            "网格员账号须且仅须指定 worker_id"
        )
    check_password(password, username)
    assert parsed is not None
    return parsed


def check_password(password: str, username: str) -> None:
    """:class:`InvalidAccount` (bilingual, never quoting the password) for a weak one."""
    problem: WeakPassword | None = password_problem(
        password, username, min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH
    )
    if problem is not None:
        raise InvalidAccount(str(problem))


async def create_account(
    conn: AsyncConnection,
    *,
    username: str,
    role: Role,
    worker_id: int | None,
    password_hash: str,
    now: datetime,
) -> dict[str, Any]:
    """Insert the account (rules already checked); returns its public columns."""
    if worker_id is not None:
        found = await conn.execute(select(workers.c.id).where(workers.c.id == worker_id))
        if found.first() is None:
            raise InvalidAccount(f"worker {worker_id} not found / 网格员 {worker_id} 不存在")
    taken = await conn.execute(select(accounts.c.id).where(accounts.c.username == username))
    if taken.first() is not None:
        raise UsernameTaken(f"username {username!r} is taken / 用户名 {username!r} 已被使用")
    try:
        result = await conn.execute(
            insert(accounts).values(
                username=username,
                role=role.value,
                worker_id=worker_id,
                password_hash=password_hash,
                created_at=now,
            )
        )
    except IntegrityError as err:  # a concurrent create of the same name
        raise UsernameTaken(
            f"username {username!r} is taken / 用户名 {username!r} 已被使用"
        ) from err
    return await get_account(conn, inserted_id(result))


async def get_account(conn: AsyncConnection, account_id: int) -> dict[str, Any]:
    row = (
        (await conn.execute(select(*PUBLIC_COLUMNS).where(accounts.c.id == account_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"account {account_id} not found / 账号 {account_id} 不存在")
    return _public(row)


async def list_accounts(
    conn: AsyncConnection, *, role: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    query = select(*PUBLIC_COLUMNS).order_by(accounts.c.id).limit(limit).offset(offset)
    if role is not None:
        query = query.where(accounts.c.role == role)
    return [_public(row) for row in (await conn.execute(query)).mappings()]


#: SQL: the account is enabled and, for a worker account, its worker is active.
USABLE = and_(
    accounts.c.active.is_(True), or_(accounts.c.worker_id.is_(None), workers.c.active.is_(True))
)
#: The accounts table with each account's worker row, if any (for :data:`USABLE`).
WITH_WORKER = accounts.outerjoin(workers, workers.c.id == accounts.c.worker_id)


async def login_record(conn: AsyncConnection, username: str) -> LoginRecord | None:
    row = (
        await conn.execute(
            select(
                accounts.c.id,
                accounts.c.username,
                accounts.c.password_hash,
                USABLE.label("usable"),
            )
            .select_from(WITH_WORKER)
            .where(accounts.c.username == username)
        )
    ).first()
    if row is None:
        return None
    return LoginRecord(int(row.id), row.username, row.password_hash, bool(row.usable))


async def disable_worker_accounts(
    conn: AsyncConnection, worker_id: int, now: datetime
) -> list[dict[str, Any]]:
    """Disable every enabled account of a worker (who was deactivated); returns the
    accounts (after). The caller revokes their tokens and audits, in the same transaction."""
    found = await conn.execute(
        select(accounts.c.id).where(accounts.c.worker_id == worker_id, accounts.c.active)
    )
    ids = [int(account_id) for (account_id,) in found]
    if ids:
        await conn.execute(
            update(accounts).where(accounts.c.id.in_(ids)).values(active=False, disabled_at=now)
        )
    return [await get_account(conn, account_id) for account_id in ids]


async def set_active(
    conn: AsyncConnection, account_id: int, active: bool, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Enable or disable; returns the account (before, after)."""
    before = await get_account(conn, account_id)
    await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(active=active, disabled_at=None if active else now)
    )
    return before, await get_account(conn, account_id)


async def set_password_hash(conn: AsyncConnection, account_id: int, password_hash: str) -> None:
    result = await conn.execute(
        update(accounts).where(accounts.c.id == account_id).values(password_hash=password_hash)
    )
    if result.rowcount != 1:
        raise NotFound(f"account {account_id} not found / 账号 {account_id} 不存在")


def _public(row: Any) -> dict[str, Any]:
    account = dict(row)
    account["active"] = bool(account["active"])
    return account
