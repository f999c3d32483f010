"""Failed-login throttling: a pure policy, and the table that makes it survive restarts.

Three limits within one window, each refusing (429) until the oldest counted failure ages
out:

* ``max_failures`` for one username **from one client address**. A stranger's guesses
  close the door only for the stranger: the worker logging in from their own phone is not
  locked out by someone else's five wrong passwords (issue #11);
* ``max_failures_per_client`` for one address over all usernames (one address guessing
  many names);
* ``max_failures_per_account`` for one username over all addresses, a larger number that
  still bounds a guesser who owns many addresses.

An attempt is counted **before** its password is hashed: :func:`reserve` stores it as a
failure at once, and a successful login takes it back (:func:`forget_failures` of that
username from that address). Forty concurrent guesses therefore meet the limit after the
first ``max_failures`` of them, not after all forty were evaluated. Being refused is not
itself a failure, so a closed door opens exactly one window after the failures that closed
it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import login_failures


@dataclass(frozen=True, slots=True)
class RecentFailures:
    """Failure times within the window: of this name from this address, of this address
    over all names, of this name over all addresses."""

    pair: Sequence[datetime] = ()
    client: Sequence[datetime] = ()
    account: Sequence[datetime] = ()


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    max_failures: int = 5
    max_failures_per_client: int = 20
    window: timedelta = timedelta(minutes=15)
    max_failures_per_account: int = 50

    def retry_after(self, failures: RecentFailures, now: datetime) -> timedelta | None:
        """How long the caller must wait before trying again, or None to let it try now."""
        waits = [
            wait
            for times, limit in (
                (failures.pair, self.max_failures),
                (failures.client, self.max_failures_per_client),
                (failures.account, self.max_failures_per_account),
            )
            if (wait := self._wait(times, limit, now)) is not None
        ]
        return max(waits) if waits else None

    def _wait(self, failures: Sequence[datetime], limit: int, now: datetime) -> timedelta | None:
        recent = sorted(at for at in failures if now - at < self.window)
        if len(recent) < limit:
            return None
        # Free again once enough of them have aged out to leave limit - 1 in the window.
        frees_at = recent[len(recent) - limit] + self.window
        return max(frees_at - now, timedelta(0))


async def recent_failures(
    conn: AsyncConnection, username: str, client: str, policy: ThrottlePolicy, now: datetime
) -> RecentFailures:
    """Failure times within the window, for the username, the address and the pair."""
    since = now - policy.window
    rows = await conn.execute(
        select(login_failures.c.username, login_failures.c.client, login_failures.c.at).where(
            login_failures.c.at > since,
            or_(login_failures.c.username == username, login_failures.c.client == client),
        )
    )
    pair: list[datetime] = []
    by_client: list[datetime] = []
    by_account: list[datetime] = []
    for row in rows:
        if row.username == username:
            by_account.append(row.at)
            if row.client == client:
                pair.append(row.at)
        if row.client == client:
            by_client.append(row.at)
    return RecentFailures(pair, by_client, by_account)


async def reserve(
    conn: AsyncConnection, username: str, client: str, policy: ThrottlePolicy, now: datetime
) -> None:
    """Count one attempt as a failure now, before its hash runs.

    Also forgets every failure that can no longer count, so the table stays small.
    """
    await conn.execute(delete(login_failures).where(login_failures.c.at <= now - policy.window))
    await conn.execute(insert(login_failures).values(username=username, client=client, at=now))


async def forget_failures(conn: AsyncConnection, username: str, client: str) -> None:
    """A successful login forgets the name's failures from this address (the user's own
    typos), never those of other addresses (a stranger's guesses keep counting)."""
    await conn.execute(
        delete(login_failures).where(
            and_(login_failures.c.username == username, login_failures.c.client == client)
        )
    )
