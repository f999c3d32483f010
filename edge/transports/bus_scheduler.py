"""A half-duplex bus (RS-485) as a scheduled resource: one transaction at a time.

Why a scheduler and not a polling loop per device: on a shared RS-485 pair two masters'
requests collide, and a loop that waits for a dead meter's timeout before asking the
next one lets one broken device stall every other. Here:

* exactly one transaction is on the wire at a time, and ``inter_frame_gap_s`` separates
  the end of one from the start of the next (Modbus RTU asks for 3.5 characters; DL/T
  645 meters want a pause too);
* commands from the hub go ahead of polls (a remote door open should not queue behind a
  round of meter reads);
* polls run at their due time, earliest first; a poll whose device is backing off is
  skipped, not waited for, so the other devices keep their schedule;
* a device that fails ``offline_after`` transactions in a row is reported offline and
  retried with exponential backoff (``backoff_s`` doubling up to ``backoff_max_s``);
  its next success reports it online again;
* a transaction that raises anything is a failure of that device, counted by reason
  (the error's ``reason`` attribute when it has one, e.g. ``bad_crc``, else its class
  name; ``timeout`` for a :class:`TimeoutError`); the scheduler itself never stops until
  :meth:`close`.

* a poll is started only when the owner has room for its result (``room``, issue #13):
  a machine that cannot store readings as fast as they are polled makes polls late, and
  every slot a late poll passes is counted as *behind schedule* (``behind_schedule``),
  instead of reading values that would then be dropped.

Schedules: a poll runs every ``interval_s``, or at the times a ``next_due`` function
gives (an APScheduler trigger through :class:`TriggerSchedule`: cron-like hourly meter
reads). Per-poll and per-command ``timeout_s`` override the bus default (devices of
different models share a bus). An optional ``gate`` (an :class:`asyncio.Semaphore`
shared by many schedulers) bounds the transactions in flight across them, as Modbus TCP
needs; waiting for it does not count against a transaction's timeout.

The transport is whatever the transactions close over (pyserial, pymodbus); the
scheduler knows only devices, deadlines and outcomes, so it is tested with fakes and a
controllable clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from edge.errors import CommandExpired

log = logging.getLogger(__name__)

Transaction = Callable[[], Awaitable[Any]]
StateListener = Callable[[str, bool, str], None]  # device, online, reason
#: (previous due time, now) → the next due time, all on the scheduler's clock.
NextDue = Callable[[float, float], float]
LATENESS_SAMPLES = 10_000


class FireSchedule(Protocol):
    """An APScheduler 3 trigger (``IntervalTrigger``, ``CronTrigger``) as far as we use it."""

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None: ...


class TriggerSchedule:
    """Due times of a poll from an APScheduler trigger, on the scheduler's monotonic clock.

    The trigger speaks wall-clock time (a cron "every full hour" is local time); the
    scheduler waits on a monotonic clock. The two are tied once, at construction, so a
    wall-clock step (NTP) does not make polls burst or stall. A slot that has passed is
    skipped, not made up: the next due time is the first fire time after both the previous
    due time and now. A trigger that has ended (an end date) gives no more due times:
    :data:`NEVER`.
    """

    def __init__(
        self,
        trigger: FireSchedule,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
    ) -> None:
        self._trigger = trigger
        self._mono0 = clock()
        self._wall0 = wall_clock()
        self._clock = clock

    def _wall(self, mono: float) -> datetime:
        return self._wall0 + timedelta(seconds=mono - self._mono0)

    def first_due(self) -> float:
        return self._due_after(self._clock() - 1e-6)

    def __call__(self, previous_due: float, now: float) -> float:
        return self._due_after(max(previous_due, now))

    def _due_after(self, after: float) -> float:
        fire = self._trigger.get_next_fire_time(None, self._wall(after) + timedelta(microseconds=1))
        if fire is None:
            return NEVER
        return self._mono0 + (fire - self._wall0).total_seconds()


NEVER = float("inf")


@dataclass
class DeviceHealth:
    """What the scheduler knows about one device's recent transactions."""

    online: bool | None = None  # None: not yet heard from
    failures_in_row: int = 0
    backoff_until: float = 0.0
    backoff_s: float = 0.0
    last_error: str = ""
    successes: int = 0
    failures: Counter[str] = field(default_factory=Counter)


@dataclass
class ScheduledPoll:
    device: str
    interval_s: float  # with ``next_due``: only a hint (for rates in stats)
    transaction: Transaction
    on_result: Callable[[Any], None] | None
    due: float
    next_due: NextDue | None = None
    timeout_s: float | None = None
    runs: int = 0
    skipped: int = 0
    behind: int = 0  # slots passed because the poll started too late (missed, not made up)


class BusScheduler:
    """Serialises transactions on one bus; see the module docstring for the rules."""

    def __init__(
        self,
        name: str,
        *,
        inter_frame_gap_s: float = 0.005,
        timeout_s: float = 1.0,
        offline_after: int = 3,
        backoff_s: float = 2.0,
        backoff_max_s: float = 60.0,
        on_state: StateListener | None = None,
        clock: Callable[[], float] = time.monotonic,
        gate: asyncio.Semaphore | None = None,
        room: asyncio.Event | None = None,
    ) -> None:
        self.name = name
        self._room = room
        self._gap = inter_frame_gap_s
        self._timeout = timeout_s
        self._offline_after = offline_after
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._on_state = on_state
        self._clock = clock
        self._gate = gate
        self._polls: list[tuple[float, int, ScheduledPoll]] = []
        self._commands: asyncio.Queue[
            tuple[str, Transaction, float | None, asyncio.Future[Any]]
        ] = asyncio.Queue()
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._closed = False
        self.health: dict[str, DeviceHealth] = {}
        self.transactions = 0
        self.busy_s = 0.0  # time with a transaction on the wire, for utilisation figures
        #: how late each poll started (s after its due time), the latest samples
        self.lateness: deque[float] = deque(maxlen=LATENESS_SAMPLES)
        self._behind = 0  # slots passed by polls that have run since (see behind_schedule)
        self._offline_after_of: dict[str, int] = {}

    # ---- configuration -------------------------------------------------------------

    def add_poll(
        self,
        device: str,
        interval_s: float,
        transaction: Transaction,
        on_result: Callable[[Any], None] | None = None,
        *,
        first_due: float | None = None,
        next_due: NextDue | None = None,
        timeout_s: float | None = None,
    ) -> ScheduledPoll:
        """Poll ``device`` every ``interval_s`` (or when ``next_due`` says), first at
        ``first_due`` (default: now); ``on_result`` gets each successful result."""
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        due = self._clock() if first_due is None else first_due
        poll = ScheduledPoll(
            device, interval_s, transaction, on_result, due, next_due=next_due, timeout_s=timeout_s
        )
        heapq.heappush(self._polls, (due, next(self._order), poll))
        self.health.setdefault(device, DeviceHealth())
        self._wake.set()
        return poll

    @property
    def behind_schedule(self) -> int:
        """Poll slots passed because polls started late (the machine, or the storage behind
        it, did not keep up, or a transaction ran long): counted, never made up. Includes
        the slots polls waiting right now have already passed."""
        return self._behind + sum(self._overdue(poll) for _, _, poll in self._polls)

    def behind_of(self, device: str) -> int:
        """:attr:`behind_schedule` of one device's polls."""
        return sum(p.behind + self._overdue(p) for p in self.polls_of(device))

    def _overdue(self, poll: ScheduledPoll) -> int:
        late = self._clock() - poll.due
        return int(late // poll.interval_s) if late > 0 and poll.interval_s > 0 else 0

    def polls_of(self, device: str) -> list[ScheduledPoll]:
        return [poll for _, _, poll in self._polls if poll.device == device]

    def set_offline_after(self, device: str, failures: int) -> None:
        """``device`` is offline after ``failures`` in a row (its profile's setting)."""
        if failures < 1:
            raise ValueError("offline_after must be at least 1")
        self._offline_after_of[device] = failures

    async def command(
        self, device: str, transaction: Transaction, *, timeout_s: float | None = None
    ) -> Any:
        """Run ``transaction`` ahead of every poll; returns its result or raises its error.

        Commands are not skipped for a device in backoff: the hub asked, and the answer
        (a timeout, a device error) is what it needs to hear.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.health.setdefault(device, DeviceHealth())
        await self._commands.put((device, transaction, timeout_s, future))
        self._wake.set()
        return await future

    # ---- running -------------------------------------------------------------------

    async def run(self) -> None:
        me = asyncio.current_task()
        while not self._closed:
            # Python 3.11's asyncio.wait_for (inside libraries such as pymodbus) can swallow
            # a cancellation that arrives just as its awaitable completes; a scheduler that
            # went on looping would hold up the shutdown of its task group for ever.
            if me is not None and me.cancelling():
                raise asyncio.CancelledError
            if not self._commands.empty():
                device, transaction, timeout_s, future = self._commands.get_nowait()
                if future.cancelled():
                    continue
                try:
                    result = await self._transact(device, transaction, timeout_s)
                except Exception as err:  # noqa: BLE001 - the caller hears it through the future
                    if not future.done():
                        future.set_exception(err)
                else:
                    if not future.done():
                        future.set_result(result)
                await self._gap_sleep()
                continue
            room = self._room
            if room is not None and not room.is_set() and self._poll_due():
                await self._wait_for_room(room)  # the poll waits, late; commands do not
                continue
            poll = self._next_due_poll()
            if poll is None:
                await self._wait_for_work()
                continue
            await self._run_poll(poll)

    def _poll_due(self) -> bool:
        return bool(self._polls) and self._polls[0][0] <= self._clock()

    async def _wait_for_room(self, room: asyncio.Event) -> None:
        """Until the owner has room for a result, or a command (or close) wants a turn."""
        self._wake.clear()
        if not self._commands.empty() or self._closed:
            return
        waits = [asyncio.ensure_future(room.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def _next_due_poll(self) -> ScheduledPoll | None:
        now = self._clock()
        while self._polls and self._polls[0][0] <= now:
            _, _, poll = heapq.heappop(self._polls)
            health = self.health[poll.device]
            late = now - poll.due
            # Next due time from the schedule, not from now: no drift, and a late poll
            # is not followed by a burst (missed slots are skipped, not made up).
            if poll.next_due is not None:
                poll.due = poll.next_due(poll.due, now)
            else:
                poll.due += poll.interval_s * max(1, int(late // poll.interval_s) + 1)
            missed = int(late // poll.interval_s) if poll.interval_s > 0 else 0
            if missed > 0:
                poll.behind += missed
                self._behind += missed
            if poll.due != NEVER:
                heapq.heappush(self._polls, (poll.due, next(self._order), poll))
            if health.backoff_until > now:
                poll.skipped += 1
                continue
            self.lateness.append(late)
            return poll
        return None

    async def _wait_for_work(self) -> None:
        self._wake.clear()
        if not self._commands.empty():
            return
        delay = self._polls[0][0] - self._clock() if self._polls else None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    async def _run_poll(self, poll: ScheduledPoll) -> None:
        try:
            result = await self._transact(poll.device, poll.transaction, poll.timeout_s)
        except Exception:  # noqa: BLE001 - counted in the device's health; the schedule goes on
            pass
        else:
            poll.runs += 1
            if poll.on_result is not None:
                try:
                    poll.on_result(result)
                except Exception:
                    log.exception("bus %s: handling a result of %s failed", self.name, poll.device)
        await self._gap_sleep()

    async def _transact(
        self, device: str, transaction: Transaction, timeout_s: float | None = None
    ) -> Any:
        if self._gate is not None:
            async with self._gate:
                return await self._timed(device, transaction, timeout_s)
        return await self._timed(device, transaction, timeout_s)

    async def _timed(self, device: str, transaction: Transaction, timeout_s: float | None) -> Any:
        started = time.monotonic()
        self.transactions += 1
        try:
            async with asyncio.timeout(self._timeout if timeout_s is None else timeout_s):
                result = await transaction()
        except TimeoutError as err:
            self._failed(device, "timeout", err if str(err) else None)
            raise
        except CommandExpired:
            raise  # the command gave up before the wire (issue #11): not the device's fault
        except Exception as err:
            self._failed(device, str(getattr(err, "reason", "") or type(err).__name__), err)
            raise
        finally:
            self.busy_s += time.monotonic() - started
        self._succeeded(device)
        return result

    async def _gap_sleep(self) -> None:
        if self._gap > 0:
            await asyncio.sleep(self._gap)

    # ---- health --------------------------------------------------------------------

    def _succeeded(self, device: str) -> None:
        health = self.health.setdefault(device, DeviceHealth())
        health.successes += 1
        health.failures_in_row = 0
        health.backoff_s = 0.0
        health.backoff_until = 0.0
        if health.online is not True:
            health.online = True
            self._notify(device, True, "answered")

    def _failed(self, device: str, reason: str, err: BaseException | None = None) -> None:
        health = self.health.setdefault(device, DeviceHealth())
        health.failures[reason] += 1
        health.failures_in_row += 1
        health.last_error = f"{reason}: {err}" if err is not None else reason
        if health.failures_in_row < self._offline_after_of.get(device, self._offline_after):
            return
        health.backoff_s = min(
            self._backoff_max_s, health.backoff_s * 2 if health.backoff_s else self._backoff_s
        )
        health.backoff_until = self._clock() + health.backoff_s
        if health.online is not False:
            health.online = False
            log.warning(
                "bus %s: device %s offline after %d failures (%s); retrying every ≤ %.0f s",
                self.name,
                device,
                health.failures_in_row,
                health.last_error,
                self._backoff_max_s,
            )
            self._notify(device, False, health.last_error)

    def _notify(self, device: str, online: bool, reason: str) -> None:
        if self._on_state is None:
            return
        try:
            self._on_state(device, online, reason)
        except Exception:
            log.exception("bus %s: state listener failed for %s", self.name, device)
