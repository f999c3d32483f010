"""The login flow on a real SQLite file with an injected clock: tokens, throttling, audit."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.auth import accounts
from hub.auth.hash_gate import Busy, HashGate
from hub.auth.login import Authenticator, BadCredentials, Throttled
from hub.auth.passwords import TEST_COST, HashCost, Passwords
from hub.auth.throttle import ThrottlePolicy
from hub.auth.tokens import principal_for_token
from hub.db import schema
from hub.domain.access import Role
from tests.hub.test_auth import PASSWORD, T0, make_account

WINDOW = timedelta(minutes=15)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def authenticator(
    passwords: Passwords | None = None, *, per_account: int = 50, gate: HashGate | None = None
) -> Authenticator:
    return Authenticator(
        passwords or Passwords(TEST_COST),
        ThrottlePolicy(
            max_failures=3,
            max_failures_per_client=5,
            window=WINDOW,
            max_failures_per_account=per_account,
        ),
        timedelta(hours=8),
        gate=gate,
    )


async def test_login_issues_a_token_that_authenticates_and_is_audited(
    engine: AsyncEngine,
) -> None:
    auth, clock = authenticator(), Clock()
    account_id = await make_account(engine, auth.passwords)
    issued, principal = await auth.login(engine, "alice", PASSWORD, "10.0.0.1", clock)
    assert issued.expires_at == T0 + timedelta(hours=8)
    assert (principal.name, principal.role, principal.user_id) == ("alice", "operator", account_id)
    async with engine.connect() as conn:
        assert await principal_for_token(conn, issued.token, clock()) is not None
        [row] = (
            await conn.execute(
                sa.select(schema.audit_log).where(schema.audit_log.c.action == "auth.login")
            )
        ).mappings()
    assert (row["actor"], row["target_id"]) == ("user:alice", str(account_id))
    assert issued.token not in str(dict(row))


async def test_wrong_password_unknown_user_and_disabled_account_look_the_same(
    engine: AsyncEngine,
) -> None:
    auth, clock = authenticator(), Clock()
    await make_account(engine, auth.passwords)
    bob = await make_account(engine, auth.passwords, "bob")
    async with engine.begin() as conn:
        await accounts.set_active(conn, bob, False, T0)
    tries = (("alice", "wrong password"), ("nobody", PASSWORD), ("bob", PASSWORD))
    for username, password in tries:
        with pytest.raises(BadCredentials) as raised:
            await auth.login(engine, username, password, "10.0.0.1", clock)
        assert str(raised.value) == "wrong username or password"


async def test_failures_throttle_the_name_from_that_address_even_with_the_right_password(
    engine: AsyncEngine,
) -> None:
    auth, clock = authenticator(), Clock()
    await make_account(engine, auth.passwords)
    for i in range(3):
        clock.now = T0 + timedelta(seconds=i)
        with pytest.raises(BadCredentials):
            await auth.login(engine, "alice", f"guess number {i}", "10.6.6.6", clock)
    clock.now = T0 + timedelta(seconds=10)
    with pytest.raises(Throttled) as throttled:
        await auth.login(engine, "alice", PASSWORD, "10.6.6.6", clock)
    assert throttled.value.retry_after == WINDOW - timedelta(seconds=10)
    clock.now = T0 + WINDOW + timedelta(seconds=1)  # the first two failures aged out
    await auth.login(engine, "alice", PASSWORD, "10.6.6.6", clock)
    async with engine.connect() as conn:  # success forgets the name's failures from there
        left = (await conn.execute(sa.select(schema.login_failures))).all()
    assert [r.username for r in left] == []


async def test_a_strangers_failures_do_not_lock_out_the_user_from_another_address(
    engine: AsyncEngine,
) -> None:
    auth, clock = authenticator(), Clock()
    await make_account(engine, auth.passwords)
    for i in range(3):
        with pytest.raises(BadCredentials):
            await auth.login(engine, "alice", f"guess number {i}", "10.6.6.6", clock)
    with pytest.raises(Throttled):
        await auth.login(engine, "alice", PASSWORD, "10.6.6.6", clock)
    await auth.login(engine, "alice", PASSWORD, "10.0.0.9", clock)  # the real user: served
    with pytest.raises(Throttled):  # and the stranger's failures still count
        await auth.login(engine, "alice", PASSWORD, "10.6.6.6", clock)


async def test_guesses_spread_over_many_addresses_meet_the_account_limit(
    engine: AsyncEngine,
) -> None:
    auth, clock = authenticator(per_account=4), Clock()
    await make_account(engine, auth.passwords)
    for i in range(4):
        with pytest.raises(BadCredentials):
            await auth.login(engine, "alice", f"guess number {i}", f"10.6.6.{i}", clock)
    with pytest.raises(Throttled):
        await auth.login(engine, "alice", PASSWORD, "10.0.0.9", clock)


async def test_concurrent_guesses_are_counted_before_hashing(engine: AsyncEngine) -> None:
    gate = HashGate(parallel=2, waiting=64, per_client=64)
    auth, clock = authenticator(gate=gate), Clock()
    await make_account(engine, auth.passwords)
    outcomes = await asyncio.gather(
        *(auth.login(engine, "alice", f"guess {i}", "10.6.6.6", clock) for i in range(40)),
        return_exceptions=True,
    )
    kinds = Counter(type(outcome).__name__ for outcome in outcomes)
    assert kinds == {"BadCredentials": 3, "Throttled": 37}
    assert gate.snapshot().evaluated == 3  # hashes run: the limit, not forty


async def test_one_client_guessing_many_names_is_throttled(engine: AsyncEngine) -> None:
    auth, clock = authenticator(), Clock()
    await make_account(engine, auth.passwords)
    for i in range(5):
        with pytest.raises(BadCredentials):
            await auth.login(engine, f"name{i}", "whatever password", "10.9.9.9", clock)
    with pytest.raises(Throttled):
        await auth.login(engine, "alice", PASSWORD, "10.9.9.9", clock)
    await auth.login(engine, "alice", PASSWORD, "10.0.0.1", clock)  # another client is fine


async def test_login_rehashes_a_password_made_with_old_parameters(engine: AsyncEngine) -> None:
    old = authenticator()
    await make_account(engine, old.passwords)
    new = authenticator(Passwords(HashCost(time_cost=2, memory_kib=16, parallelism=1)))
    await new.login(engine, "alice", PASSWORD, "10.0.0.1", Clock())
    async with engine.connect() as conn:
        stored = (await conn.execute(sa.select(schema.accounts.c.password_hash))).scalar_one()
    assert "m=16,t=2,p=1" in stored
    await new.login(engine, "alice", PASSWORD, "10.0.0.1", Clock())


async def test_logs_name_the_user_never_the_password_or_token(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    auth, clock = authenticator(), Clock()
    await make_account(engine, auth.passwords, role=Role.ADMIN)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(BadCredentials):
        await auth.login(engine, "alice", "a wrong password", "10.0.0.1", clock)
    issued, _ = await auth.login(engine, "alice", PASSWORD, "10.0.0.1", clock)
    text = caplog.text
    assert "alice" in text
    for secret in (PASSWORD, "a wrong password", issued.token):
        assert secret not in text


async def test_the_hash_gate_refuses_at_once_beyond_its_bound_and_per_address() -> None:
    gate = HashGate(parallel=1, waiting=2, per_client=2)
    async with gate.admitted("10.6.6.6"), gate.admitted("10.6.6.6"):
        with pytest.raises(Busy) as busy:  # that address has its share
            async with gate.admitted("10.6.6.6"):
                pass
        assert busy.value.retry_after_s >= 1
        async with gate.admitted("10.0.0.9"):  # another address still gets in
            with pytest.raises(Busy):  # the whole gate is full
                async with gate.admitted("10.0.0.10"):
                    pass
    async with gate.admitted("10.6.6.6"):  # places are given back
        pass
    assert gate.snapshot().refused == 2 and gate.snapshot().admitted == 0
