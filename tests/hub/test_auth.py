"""Accounts and tokens on a real SQLite file, with an injected clock; hashing; throttling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.auth import accounts
from hub.auth.accounts import InvalidAccount, UsernameTaken
from hub.auth.passwords import TEST_COST, HashCost, Passwords
from hub.auth.throttle import RecentFailures, ThrottlePolicy
from hub.auth.tokens import (
    issue_token,
    principal_for_token,
    revoke_account_tokens,
    revoke_token,
    token_digest,
)
from hub.db import schema
from hub.domain.access import Role

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords(TEST_COST)


async def worker_named(engine: AsyncEngine, name: str) -> tuple[int, set[int]]:
    async with engine.connect() as conn:
        worker = (
            await conn.execute(sa.select(schema.workers.c.id).where(schema.workers.c.name == name))
        ).scalar_one()
        grids = (
            await conn.execute(
                sa.select(schema.worker_grids.c.grid_id).where(
                    schema.worker_grids.c.worker_id == worker
                )
            )
        ).scalars()
        return int(worker), set(grids)


async def make_account(
    engine: AsyncEngine,
    passwords: Passwords,
    username: str = "alice",
    role: Role = Role.OPERATOR,
    worker_id: int | None = None,
) -> int:
    async with engine.begin() as conn:
        created = await accounts.create_account(
            conn,
            username=username,
            role=role,
            worker_id=worker_id,
            password_hash=passwords.hash(PASSWORD),
            now=T0,
        )
    return int(created["id"])


# -- passwords -----------------------------------------------------------------------------


def test_hash_is_argon2id_salted_and_verifies(passwords: Passwords) -> None:
    first, second = passwords.hash(PASSWORD), passwords.hash(PASSWORD)
    assert first.startswith("$argon2id$") and PASSWORD not in first
    assert first != second  # a salt of its own
    assert passwords.verify(first, PASSWORD)
    assert not passwords.verify(first, PASSWORD + "!")
    assert not passwords.verify("not a hash", PASSWORD)


def test_unknown_account_never_verifies(passwords: Passwords) -> None:
    assert not passwords.verify(None, PASSWORD)
    assert not passwords.verify(None, "decoy password, never issued")


def test_default_cost_is_memory_hard_and_rehash_is_noticed(passwords: Passwords) -> None:
    assert HashCost().memory_kib >= 64 * 1024
    cheap = passwords.hash(PASSWORD)
    assert not passwords.needs_rehash(cheap)
    assert Passwords(HashCost(time_cost=2, memory_kib=16, parallelism=1)).needs_rehash(cheap)


# -- account rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "role", "worker_id", "password", "problem"),
    [
        ("al", "operator", None, PASSWORD, "username"),
        ("bad name", "operator", None, PASSWORD, "username"),
        ("edge-1", "edge", None, PASSWORD, "role"),
        ("root", "superuser", None, PASSWORD, "role"),
        ("wang", "worker", None, PASSWORD, "worker_id"),
        ("alice", "operator", 3, PASSWORD, "worker_id"),
        ("alice", "operator", None, "short", "password"),
        ("alice12345", "operator", None, "ALICE12345", "password"),
    ],
)
def test_account_rules_refuse_with_the_field_named(
    username: str, role: str, worker_id: int | None, password: str, problem: str
) -> None:
    with pytest.raises(InvalidAccount, match=problem):
        accounts.check_new_account(username, role, worker_id, password)


def test_account_rules_accept_every_human_role() -> None:
    for role in ("admin", "operator", "hotline"):
        assert accounts.check_new_account("desk.1", role, None, PASSWORD) == Role(role)
    assert accounts.check_new_account("wang@grid1", "worker", 1, PASSWORD) is Role.WORKER


async def test_account_never_shows_its_hash_and_names_are_unique(
    engine: AsyncEngine, passwords: Passwords
) -> None:
    account_id = await make_account(engine, passwords)
    async with engine.connect() as conn:
        shown = await accounts.get_account(conn, account_id)
        listed = await accounts.list_accounts(conn)
    assert "password_hash" not in shown and all("password_hash" not in a for a in listed)
    assert shown["username"] == "alice" and shown["active"] is True
    with pytest.raises(UsernameTaken):
        await make_account(engine, passwords)
    with pytest.raises(InvalidAccount, match="worker 9999"):
        await make_account(engine, passwords, "ghost", Role.WORKER, 9999)


# -- tokens --------------------------------------------------------------------------------


async def test_token_is_stored_as_digest_and_expires_at_its_lifetime(
    engine: AsyncEngine, passwords: Passwords
) -> None:
    account_id = await make_account(engine, passwords)
    async with engine.begin() as conn:
        issued = await issue_token(conn, account_id, T0, HOUR)
    assert issued.expires_at == T0 + HOUR
    async with engine.connect() as conn:
        stored = (await conn.execute(sa.select(schema.auth_tokens))).mappings().one()
        assert stored["token_hash"] == token_digest(issued.token) != issued.token
        assert issued.token not in str(dict(stored))
        found = await principal_for_token(conn, issued.token, T0 + HOUR - timedelta(seconds=1))
        assert found is not None
        principal, expires_at = found
        assert (principal.kind, principal.name, principal.role) == ("user", "alice", "operator")
        assert principal.user_id == account_id and expires_at == T0 + HOUR
        assert await principal_for_token(conn, issued.token, T0 + HOUR) is None
        assert await principal_for_token(conn, issued.token + "x", T0) is None


async def test_revoked_token_is_refused_and_others_stay_good(
    engine: AsyncEngine, passwords: Passwords
) -> None:
    account_id = await make_account(engine, passwords)
    async with engine.begin() as conn:
        first = await issue_token(conn, account_id, T0, HOUR)
        second = await issue_token(conn, account_id, T0, HOUR)
        assert await revoke_token(conn, first.token, T0)
        assert not await revoke_token(conn, first.token, T0)  # once is enough
    async with engine.connect() as conn:
        assert await principal_for_token(conn, first.token, T0) is None
        assert await principal_for_token(conn, second.token, T0) is not None


async def test_disabling_an_account_refuses_its_tokens(
    engine: AsyncEngine, passwords: Passwords
) -> None:
    account_id = await make_account(engine, passwords)
    async with engine.begin() as conn:
        issued = await issue_token(conn, account_id, T0, HOUR)
        _before, after = await accounts.set_active(conn, account_id, False, T0)
        assert after["active"] is False and after["disabled_at"] == T0
        assert await revoke_account_tokens(conn, account_id, T0) == 1
    async with engine.connect() as conn:
        assert await principal_for_token(conn, issued.token, T0) is None


async def test_worker_token_carries_the_workers_grids(
    engine: AsyncEngine, passwords: Passwords
) -> None:
    worker, grids = await worker_named(engine, "王丽")
    account_id = await make_account(engine, passwords, "wangli", Role.WORKER, worker)
    async with engine.begin() as conn:
        issued = await issue_token(conn, account_id, T0, HOUR)
        found = await principal_for_token(conn, issued.token, T0)
    assert found is not None
    principal = found[0]
    assert principal.worker_id == worker and principal.grid_ids == frozenset(grids)
    assert len(grids) == 1
    [grid] = grids
    assert principal.sees_grid(grid) and not principal.sees_grid(grid + 1)
    assert principal.may_read_medical_notes(grid)


# -- throttle policy -----------------------------------------------------------------------


def test_throttle_locks_at_the_limit_until_the_oldest_failure_ages_out() -> None:
    policy = ThrottlePolicy(max_failures=3, max_failures_per_client=10, window=HOUR)
    minute = timedelta(minutes=1)
    failures = [T0, T0 + minute, T0 + 2 * minute]
    assert policy.retry_after(RecentFailures(pair=failures[:2]), T0 + 2 * minute) is None
    assert policy.retry_after(RecentFailures(pair=failures), T0 + 3 * minute) == HOUR - 3 * minute
    assert policy.retry_after(
        RecentFailures(pair=failures), T0 + HOUR - timedelta(seconds=1)
    ) == timedelta(seconds=1)
    assert policy.retry_after(RecentFailures(pair=failures), T0 + HOUR) is None  # aged out


def test_throttle_counts_a_client_guessing_many_names() -> None:
    policy = ThrottlePolicy(max_failures=3, max_failures_per_client=5, window=HOUR)
    from_client = [T0 + timedelta(seconds=i) for i in range(5)]
    wait = policy.retry_after(RecentFailures(client=from_client), T0 + timedelta(seconds=10))
    assert wait == HOUR - timedelta(seconds=10)
    assert (
        policy.retry_after(RecentFailures(client=from_client[:4]), T0 + timedelta(seconds=10))
        is None
    )


def test_throttle_counts_one_name_over_all_addresses_at_its_own_limit() -> None:
    policy = ThrottlePolicy(3, 5, HOUR, max_failures_per_account=6)
    spread = [T0 + timedelta(seconds=i) for i in range(6)]
    at = T0 + timedelta(seconds=10)
    assert policy.retry_after(RecentFailures(account=spread[:5]), at) is None
    assert policy.retry_after(RecentFailures(account=spread), at) == HOUR - timedelta(seconds=10)
