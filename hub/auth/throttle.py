"""Failed-login throttling: a pure policy, and the table that makes it survive restarts.

A username that failed ``max_failures`` times within the window is refused, right or wrong
password, until its oldest failure in the window ages out; the same holds for a client
address with ``max_failures_per_client`` (one address guessing many names). A successful
login forgets the username's failures. Being refused is not itself a failure, so a locked
name is free again exactly one window after the failures that locked it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import login_failures


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    max_failures: int = 5
    max_failures_per_client: int = 20
    window: timedelta = timedelta(minutes=15)

    def retry_after(
        self,
        username_failures: Sequence[datetime],
        client_failures: Sequence[datetime],
        now: datetime,
    ) -> timedelta | None:
        """How long the caller must wait before trying again, or None to let it try now."""
        waits = [
            wait
            for failures, limit in (
                (username_failures, self.max_failures),
                (client_failures, self.max_failures_per_client),
            )
            if (wait := self._wait(failures, limit, now)) is not None
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
) -> tuple[list[datetime], list[datetime]]:
    """Failure times within the window, for the username and for the client address."""
    since = now - policy.window
    rows = await conn.execute(
        select(login_failures.c.username, login_failures.c.client, login_failures.c.at).where(
            login_failures.c.at > since,
            or_(login_failures.c.username == username, login_failures.c.client == client),
        )
    )
    by_name: list[datetime] = []
    by_client: list[datetime] = []
    for row in rows:
        if row.username == username:
            by_name.append(row.at)
        if row.client == client:
            by_client.append(row.at)
    return by_name, by_client


async def record_failure(
    conn: AsyncConnection, username: str, client: str, policy: ThrottlePolicy, now: datetime
) -> None:
    """Remember one failure, and forget every failure that can no longer count."""
    await conn.execute(delete(login_failures).where(login_failures.c.at <= now - policy.window))
    await conn.execute(insert(login_failures).values(username=username, client=client, at=now))


async def forget_failures(conn: AsyncConnection, username: str) -> None:
    await conn.execute(delete(login_failures).where(login_failures.c.username == username))
