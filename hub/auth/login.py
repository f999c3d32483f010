"""The login flow: throttle, check the password, issue a token, remember what happened.

Password checks run in a worker thread (argon2 takes tens of milliseconds and 64 MiB on
purpose) and at most ``max_parallel_hashes`` at a time, so a burst of logins can neither
stall the event loop that routes help calls nor exhaust memory. No transaction is held
while a hash is computed. Failures are logged with the username and client address only;
neither a password nor a token is ever put in a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from hub.auth import accounts, throttle, tokens
from hub.auth.passwords import Passwords
from hub.auth.throttle import ThrottlePolicy
from hub.auth.tokens import IssuedToken
from hub.domain.access import Principal
from hub.services.audit import record_audit

log = logging.getLogger(__name__)

_FIELD_LIMIT = 64  # usernames and client addresses are stored in 64 characters


class LoginRefused(Exception):
    """Base of the reasons a login gets no token."""


class BadCredentials(LoginRefused):
    """Unknown username, wrong password, or a disabled account (deliberately one answer)."""


class Throttled(LoginRefused):
    """Too many recent failures for this username or client address."""

    def __init__(self, retry_after: timedelta) -> None:
        super().__init__(f"too many failed logins; retry in {retry_after.total_seconds():.0f} s")
        self.retry_after = retry_after


class Authenticator:
    """Holds the hashing parameters, the throttle policy and the token lifetime."""

    def __init__(
        self,
        passwords: Passwords,
        policy: ThrottlePolicy,
        token_lifetime: timedelta,
        *,
        max_parallel_hashes: int = 2,
    ) -> None:
        self.passwords = passwords
        self.policy = policy
        self.token_lifetime = token_lifetime
        self._hashing = asyncio.Semaphore(max_parallel_hashes)

    async def hash_password(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(self.passwords.hash, password)

    async def _verify(self, password_hash: str | None, password: str) -> bool:
        async with self._hashing:
            return await asyncio.to_thread(self.passwords.verify, password_hash, password)

    async def login(
        self,
        engine: AsyncEngine,
        username: str,
        password: str,
        client: str,
        clock: Callable[[], datetime],
    ) -> tuple[IssuedToken, Principal]:
        """A fresh token for the account, or :class:`BadCredentials` / :class:`Throttled`."""
        username, client = username[:_FIELD_LIMIT], client[:_FIELD_LIMIT]
        async with engine.connect() as conn:
            by_name, by_client = await throttle.recent_failures(
                conn, username, client, self.policy, clock()
            )
            record = await accounts.login_record(conn, username)
        wait = self.policy.retry_after(by_name, by_client, clock())
        if wait is not None:
            log.warning("login throttled: user %r from %s", username, client)
            raise Throttled(wait)

        usable = record.password_hash if record is not None and record.active else None
        matches = await self._verify(usable, password)
        if not matches or record is None:
            async with engine.begin() as conn:
                await throttle.record_failure(conn, username, client, self.policy, clock())
            log.warning("login failed: user %r from %s", username, client)
            raise BadCredentials("wrong username or password")

        rehashed = None
        if self.passwords.needs_rehash(record.password_hash):
            rehashed = await self.hash_password(password)
        async with engine.begin() as conn:
            now = clock()
            await throttle.forget_failures(conn, username)
            if rehashed is not None:
                await accounts.set_password_hash(conn, record.id, rehashed)
            issued = await tokens.issue_token(conn, record.id, now, self.token_lifetime)
            found = await tokens.principal_for_token(conn, issued.token, now)
            if found is None:  # disabled between the check and now
                raise BadCredentials("wrong username or password")
            principal = found[0]
            await record_audit(
                conn,
                actor=principal,
                action="auth.login",
                target_type="account",
                target_id=record.id,
                after={"expires_at": issued.expires_at.isoformat(), "client": client},
                at=now,
            )
        log.info("login: user %r (%s) from %s", username, principal.role, client)
        return issued, principal
