"""Admission to password hashing: bounded concurrency, a bounded queue, a share per address.

An argon2 check costs tens of milliseconds of CPU and 64 MiB on purpose, so a flood of
logins must not be allowed to queue without end: the real worker's login would wait
behind all of it (issue #11 measured 10 s). :class:`HashGate` admits an attempt only if
fewer than ``parallel + waiting`` are admitted in all and fewer than ``per_client`` from
the same address; otherwise it refuses at once with :class:`Busy` (the API answers 503 with
``Retry-After``). One address flooding therefore holds at most ``per_client`` places, and a
login from another address still finds one. A flood from many addresses fills the queue
and is refused fast; so is a real login that arrives then, which retries after a second
instead of waiting behind the flood.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


class Busy(Exception):
    """Too many password checks running or waiting; try again shortly."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many logins in progress; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class GateSnapshot:
    admitted: int
    running: int
    refused: int
    evaluated: int


class HashGate:
    """Admits password checks; counts what it refused and what it evaluated."""

    def __init__(self, parallel: int = 2, waiting: int = 8, per_client: int = 2) -> None:
        self._slots = asyncio.Semaphore(parallel)
        self._capacity = parallel + waiting
        self._per_client = per_client
        self._by_client: Counter[str] = Counter()
        self._admitted = 0
        self._running = 0
        self._refused = 0
        self._evaluated = 0

    def snapshot(self) -> GateSnapshot:
        return GateSnapshot(self._admitted, self._running, self._refused, self._evaluated)

    @asynccontextmanager
    async def admitted(self, client: str) -> AsyncIterator[None]:
        """Hold a place for one attempt from ``client``, or raise :class:`Busy` now."""
        if self._admitted >= self._capacity or self._by_client[client] >= self._per_client:
            self._refused += 1
            raise Busy(retry_after_s=1)
        self._admitted += 1
        self._by_client[client] += 1
        try:
            yield
        finally:
            self._admitted -= 1
            self._by_client[client] -= 1
            if self._by_client[client] <= 0:
                del self._by_client[client]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """One of the ``parallel`` hashing slots (wait for it inside :meth:`admitted`)."""
        async with self._slots:
            self._running += 1
            self._evaluated += 1
            try:
                yield
            finally:
                self._running -= 1
