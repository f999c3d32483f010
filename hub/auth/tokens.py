"""Bearer tokens of accounts: issued at login, looked up on every request, revocable.

A token is 32 random bytes (URL-safe base64). The database keeps only its SHA-256 digest:
a token has far too much entropy to be guessed from the digest, so a fast hash is enough,
and a leaked table cannot be replayed. A token is refused once it has expired, once it is
revoked, once its account is disabled, and once the worker a worker account acts as is
made inactive.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.auth.accounts import USABLE, WITH_WORKER
from hub.db.schema import accounts, auth_tokens, worker_grids
from hub.domain.access import Principal, Role


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str  # shown once, to the client that logged in
    expires_at: datetime
    lifetime: timedelta


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(
    conn: AsyncConnection, account_id: int, now: datetime, lifetime: timedelta
) -> IssuedToken:
    token = secrets.token_urlsafe(32)
    expires_at = now + lifetime
    await conn.execute(
        insert(auth_tokens).values(
            token_hash=token_digest(token),
            account_id=account_id,
            issued_at=now,
            expires_at=expires_at,
        )
    )
    return IssuedToken(token, expires_at, lifetime)


async def principal_for_token(
    conn: AsyncConnection, token: str, now: datetime
) -> tuple[Principal, datetime] | None:
    """The account's principal and the token's expiry, or None if the token is not good now."""
    row = (
        await conn.execute(
            select(
                accounts.c.id,
                accounts.c.username,
                accounts.c.role,
                accounts.c.worker_id,
                auth_tokens.c.expires_at,
            )
            .select_from(auth_tokens.join(WITH_WORKER, auth_tokens.c.account_id == accounts.c.id))
            .where(
                auth_tokens.c.token_hash == token_digest(token),
                auth_tokens.c.revoked_at.is_(None),
                auth_tokens.c.expires_at > now,
                USABLE,
            )
        )
    ).first()
    if row is None:
        return None
    role = Role(row.role)
    grid_ids: frozenset[int] = frozenset()
    if role is Role.WORKER and row.worker_id is not None:
        # Read per request, so moving a worker to another grid takes effect at once.
        links = await conn.execute(
            select(worker_grids.c.grid_id).where(worker_grids.c.worker_id == row.worker_id)
        )
        grid_ids = frozenset(int(grid) for (grid,) in links)
    principal = Principal(
        kind="user",
        name=row.username,
        role=role,
        user_id=int(row.id),
        worker_id=row.worker_id,
        grid_ids=grid_ids,
    )
    return principal, row.expires_at


async def revoke_token(conn: AsyncConnection, token: str, now: datetime) -> bool:
    """Revoke one token; False if it was unknown or already revoked."""
    result = await conn.execute(
        update(auth_tokens)
        .where(auth_tokens.c.token_hash == token_digest(token), auth_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount == 1


async def revoke_account_tokens(conn: AsyncConnection, account_id: int, now: datetime) -> int:
    """Revoke every live token of an account (it was disabled or got a new password)."""
    result = await conn.execute(
        update(auth_tokens)
        .where(
            auth_tokens.c.account_id == account_id,
            auth_tokens.c.revoked_at.is_(None),
            auth_tokens.c.expires_at > now,
        )
        .values(revoked_at=now)
    )
    return int(result.rowcount)
