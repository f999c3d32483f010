"""Password hashing with argon2id, a memory-hard algorithm (RFC 9106).

Each hash is a self-describing PHC string (``$argon2id$v=19$m=...``) that carries its own
salt and cost parameters, so raising the cost later only needs :meth:`needs_rehash` at the
next successful login. Verifying takes tens of milliseconds of CPU and ``memory_kib`` of
memory on purpose: callers in the event loop run it in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


@dataclass(frozen=True, slots=True)
class HashCost:
    """argon2id cost parameters; the defaults are RFC 9106's low-memory recommendation."""

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4


#: Cheap parameters for unit tests only: hashing stays argon2id, just fast.
TEST_COST = HashCost(time_cost=1, memory_kib=8, parallelism=1)


class Passwords:
    """Hashes and checks passwords; never stores or logs them."""

    def __init__(self, cost: HashCost = HashCost()) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=cost.time_cost,
            memory_cost=cost.memory_kib,
            parallelism=cost.parallelism,
            type=argon2.Type.ID,
        )
        # Checked against when the username is unknown, so that answer takes as long as a
        # wrong password and does not reveal which usernames exist. Made on first need, not
        # at start-up: a restarting hub has escalation deadlines to meet.
        self._decoy: str | None = None

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; ``None`` (no such account) costs the same and fails."""
        if password_hash is None and self._decoy is None:
            self._decoy = self._hasher.hash("decoy password, never issued")
        try:
            self._hasher.verify(password_hash or self._decoy or "", password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        """The stored hash was made with other cost parameters than today's."""
        return self._hasher.check_needs_rehash(password_hash)
