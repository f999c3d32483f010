"""The login flow: admit, count the attempt, check the password, issue a token, audit.

Order matters (issue #11). First the :class:`~hub.auth.hash_gate.HashGate` admits the
attempt or refuses it at once (a bounded queue, a share per client address). Then, under
one lock and in one transaction, the throttle counts the recent failures and, if the
attempt may go on, reserves it as a failure *before* any hash runs: concurrent guesses see
each other's reservations, so the limits hold however many arrive together. Only then is
the password checked, in a worker thread and at most ``parallel`` at a time; a success
takes its reservation back. No transaction is held while a hash is computed. Failures are
logged with the username and client address only; neither a password nor a token is ever
put in a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from hub.auth import accounts, throttle, tokens
from hub.auth.hash_gate import HashGate
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
    """Holds the hashing parameters and gate, the throttle policy and the token lifetime."""

    def __init__(
        self,
        passwords: Passwords,
        policy: ThrottlePolicy,
        token_lifetime: timedelta,
        *,
        gate: HashGate | None = None,
    ) -> None:
        self.passwords = passwords
        self.policy = policy
        self.token_lifetime = token_lifetime
        self.gate = gate if gate is not None else HashGate()
        # Counting and reserving is one step: no other login of this process may count
        # between the two (the hub is one process on one database).
        self._counting = asyncio.Lock()

    async def hash_password(self, password: str) -> str:
        async with self.gate.running():
            return await asyncio.to_thread(self.passwords.hash, password)

    async def _verify(self, password_hash: str | None, password: str) -> bool:
        async with self.gate.running():
            return await asyncio.to_thread(self.passwords.verify, password_hash, password)

    async def _reserve(
        self, engine: AsyncEngine, username: str, client: str, now: datetime
    ) -> accounts.LoginRecord | None:
        """Count the attempt before its hash, or raise :class:`Throttled`."""
        async with self._counting, engine.begin() as conn:
            failures = await throttle.recent_failures(conn, username, client, self.policy, now)
            wait = self.policy.retry_after(failures, now)
            if wait is not None:
                log.warning("login throttled: user %r from %s", username, client)
                raise Throttled(wait)
            await throttle.reserve(conn, username, client, self.policy, now)
            return await accounts.login_record(conn, username)

    async def login(
        self,
        engine: AsyncEngine,
        username: str,
        password: str,
        client: str,
        clock: Callable[[], datetime],
    ) -> tuple[IssuedToken, Principal]:
        """A fresh token for the account, or :class:`BadCredentials` / :class:`Throttled` /
        :class:`~hub.auth.hash_gate.Busy`."""
        username, client = username[:_FIELD_LIMIT], client[:_FIELD_LIMIT]
        async with self.gate.admitted(client):
            record = await self._reserve(engine, username, client, clock())
            usable = record.password_hash if record is not None and record.active else None
            matches = await self._verify(usable, password)
        if not matches or record is None:
            log.warning("login failed: user %r from %s", username, client)
            raise BadCredentials("wrong username or password")

        rehashed = None
        if self.passwords.needs_rehash(record.password_hash):
            rehashed = await self.hash_password(password)
        async with engine.begin() as conn:
            now = clock()
            await throttle.forget_failures(conn, username, client)
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
