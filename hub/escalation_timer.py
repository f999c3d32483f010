"""Fires escalations at their deadlines.

Deadlines live in the database (``cases.deadline_at``), not in memory: after a hub restart
the timer reads the earliest one and sleeps until then, so a restart loses no escalation
and one that fell due while the hub was down fires at once. Any case change wakes the
timer to re-read the earliest deadline (``EffectDispatcher.cases_changed``), and so does
news of a change in another hub process (``hub.news``).

With several replicas every replica runs this timer on the same deadlines (issue #14):
the replica whose sweep locks a due case first escalates it (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, where the others skip the locked row; SQLite has one writer at a time), and
the case's version check refuses any second attempt, so each deadline fires once. Since
every replica re-reads the earliest deadline at least every :data:`MAX_SLEEP_S`, a
deadline set by a replica that died is known to the others within a second and fires on
time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from hub.effects import EffectDispatcher
from hub.services.cases import CaseService

log = logging.getLogger(__name__)

#: Re-read the deadline at least this often, in case another process changed a case and
#: its news was lost: a deadline is never learnt later than this after it was set.
MAX_SLEEP_S = 1.0
#: After a sweep that escalated nothing although a deadline was due (another replica holds
#: the case, or changed it first), look again this soon rather than spin.
BUSY_RETRY_S = 0.02
#: Cases escalated at once on PostgreSQL (each on a connection of the pool).
PARALLEL = 8
#: An escalation committed later than this after its deadline is logged (the promise is 1 s).
LATE_S = 0.5


class EscalationTimer:
    def __init__(
        self,
        engine: AsyncEngine,
        service: CaseService,
        effects: EffectDispatcher,
        clock: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self._service = service
        self._effects = effects
        self._clock = clock
        self.fired = 0
        #: Seconds between each deadline and the moment its escalation was committed.
        self.lateness_s: list[float] = []

    async def run(self) -> None:
        changed = self._effects.cases_changed
        while True:
            changed.clear()  # before reading: a change during the tick wakes us again
            try:
                delay = await self._tick()
            except Exception:
                log.exception("escalation tick failed")
                delay = 1.0
            if delay <= 0:
                continue
            try:
                await asyncio.wait_for(changed.wait(), delay)
            except TimeoutError:
                pass

    async def _tick(self) -> float:
        """Escalate what is due; return how long to sleep until the next deadline."""
        async with self._engine.connect() as conn:
            deadline = await self._service.next_deadline(conn)
        now = self._clock()
        if deadline is not None and deadline <= now:
            async with self._engine.connect() as conn:
                due = await self._service.due_cases(conn, now)
            # One transaction per case: a sweep never holds one case while it waits for
            # another (``CaseService.escalate_case``). On PostgreSQL several run at once, so
            # cases that fell due together fire together rather than one round trip chain
            # after another; SQLite has one writer, so there they go one by one.
            parallel = PARALLEL if self._engine.dialect.name == "postgresql" else 1
            room = asyncio.Semaphore(parallel)

            async def escalate(case_id: int) -> bool:
                async with room:
                    async with self._engine.begin() as conn:
                        effects = await self._service.escalate_case(conn, case_id, now, self._clock)
                    if effects is None:
                        log.info("case %d is held by another transaction; tried again", case_id)
                        return False  # another process holds it; tried again soon
                    if effects.notifications or effects.commands:
                        self._fired(deadline, now)
                        await self._effects.dispatch(effects)
                    return True

            began = time.monotonic()
            done = await asyncio.gather(*(escalate(case_id) for case_id in due))
            if time.monotonic() - began > LATE_S:
                log.warning(
                    "an escalation sweep of %d case(s) took %.3f s (the earliest was due "
                    "%.3f s before it began)",
                    len(due),
                    time.monotonic() - began,
                    (now - deadline).total_seconds(),
                )
            return 0.0 if all(done) else BUSY_RETRY_S
        if deadline is None:
            return MAX_SLEEP_S
        return min(MAX_SLEEP_S, (deadline - now).total_seconds())

    def _fired(self, deadline: datetime, began: datetime) -> None:
        committed = self._clock()
        self.fired += 1
        lateness = (committed - deadline).total_seconds()
        self.lateness_s.append(lateness)
        del self.lateness_s[:-10_000]
        if lateness > LATE_S:
            log.warning(
                "an escalation was committed %.3f s after its deadline "
                "(the sweep began %.3f s after it)",
                lateness,
                (began - deadline).total_seconds(),
            )
