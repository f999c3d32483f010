"""Forwards outbox events to the hub over MQTT and retires them on the hub's end-to-end ack.

Rules:
- **Alarms first.** Lanes are served in priority order and the alarm lane is re-checked
  after every batch of any other lane, so an SOS committed while a million telemetry events
  drain waits for at most one batch publish. Each lane has its own in-flight window, so a
  full telemetry window never holds an alarm back.
- **Bounded in flight.** At most ``window`` unacknowledged batches per lane are out at once
  (explicit backpressure: the rest waits in the outbox on disk, not in memory). One outbox
  query reads ahead as many events as the free part of the window can take, so a drain
  costs one query per window rather than one per batch (and per lane looked at).
- **Go-back-N on doubt.** When an ack is overdue (``ack_timeout_s``) or the connection was
  re-established, the lane's cursor is rewound and unacknowledged events are sent again in
  seq order. The hub ingests idempotently, so this costs bandwidth, never duplicates.
- Order is kept per lane (hence per device within a lane): batches are built in seq order,
  and each names the seq it follows (``EventBatch.follows``, 0 after a rewind). The hub
  refuses a batch whose predecessor it lacks and says so in an ack with ``gap``; the lane
  is then rewound at once (at most once per ``gap_holdoff_s``: the refusals of the other
  batches that were in flight behind the lost one arrive together and need no more).
- **The alarm lane has a link of its own** (issue #13). With ``alarm_publisher`` (the
  agent's second MQTT connection) alarm batches go out there, ask for their acks there
  (``EventBatch.lane_acks``) and never wait behind telemetry bytes in a TCP stream or the
  broker's queue. While that link is down (or the hub has not said "online" on it) alarms
  take the bulk link as before, acked on the bulk link; a switch of link rewinds the alarm
  lane, so its batches keep their order whichever link carries them.
- **An alarm's head start.** While an alarm batch awaits its ack (at most
  ``alarm_head_start_s``), no other lane sends: with two connections the hub could
  otherwise take telemetry sent just after an SOS ahead of it (after an outage, the whole
  backlog). The pause lasts one alarm round trip, and it also keeps the hub free for it.
- **Only while the hub listens.** Nothing is sent until the hub's retained status says it
  is online (after a broker restart the broker has forgotten the hub's subscription, and a
  message published before the hub re-subscribes is silently dropped). Each time the hub
  comes (back) online every lane is rewound, so alarms are resent first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, Field

from contract import Ack, Event, EventBatch, Lane, topics
from edge.outbox import Outbox

log = logging.getLogger(__name__)

#: Longest run of back-to-back publishes before the send loop yields to the event loop.
YIELD_EVERY_S = 0.005


class UplinkSettings(BaseModel):
    model_config = {"extra": "forbid"}

    batch_size: int = Field(default=250, ge=1, le=5000)
    alarm_batch_size: int = Field(default=20, ge=1, le=500)
    window: int = Field(default=8, ge=1, le=64)
    alarm_window: int = Field(default=16, ge=1, le=256)
    ack_timeout_s: float = Field(default=10.0, gt=0, le=600)
    #: The longest a non-alarm event waits for company in a group commit when the writer
    #: is idle (issue #13: adaptive; under load commits follow each other back to back).
    group_commit_ms: int = Field(default=5, ge=1, le=5000)
    gap_holdoff_s: float = Field(default=1.0, ge=0, le=60)
    #: Send alarms over a second MQTT connection (issue #13). Off only for a broker that
    #: has no account for it (``<username>.alarm``): alarms then share the bulk link.
    alarm_link: bool = True
    #: Where the alarm link connects when not where ``broker`` says (e.g. the same broker
    #: over a second network path). Account, password and TLS are ``broker``'s.
    alarm_host: str | None = None
    #: While an alarm batch awaits its ack, other lanes wait, for at most this long.
    alarm_head_start_s: float = Field(default=2.0, ge=0, le=60)
    alarm_port: int | None = Field(default=None, ge=1, le=65535)


class Publisher(Protocol):
    connected: bool

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool: ...


@dataclass(slots=True)
class _InFlight:
    seqs: set[int]
    sent_at: float


@dataclass(slots=True)
class _LaneState:
    cursor: int = 0  # highest seq published since the last rewind
    in_flight: list[_InFlight] = field(default_factory=list)
    #: Read ahead (seq > cursor, not yet sent), at most one window's worth: one outbox
    #: query fills the whole window instead of one query per batch.
    ahead: deque[Event] = field(default_factory=deque)
    #: The outbox's commit count when a query found this lane empty: while it has not
    #: changed, nothing new can be there and the lane is not queried again.
    empty_at: int | None = None
    #: The outbox's commit count when the read-ahead was last topped up (see _send_next).
    topped_at: int | None = None
    rewound_at: float = float("-inf")  # monotonic time of the last rewind
    link: Publisher | None = None  # the link the lane's in-flight batches went out on


class Uplink:
    """Moves events from the :class:`Outbox` to the hub; see the module docstring."""

    def __init__(
        self,
        outbox: Outbox,
        publisher: Publisher,
        edge_id: str,
        settings: UplinkSettings,
        *,
        alarm_publisher: Publisher | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outbox = outbox
        self._publisher = publisher
        self._alarm_publisher = alarm_publisher
        self._edge_id = edge_id
        self._settings = settings
        self._monotonic = monotonic
        self._lanes = {lane: _LaneState() for lane in Lane}
        self._wake = outbox.new_events  # the outbox sets it on every commit
        self._topics = {lane: topics.events(edge_id, lane) for lane in Lane}
        self.hub_online = False  # as the bulk link last heard it
        self.alarm_hub_online = False  # as the alarm link last heard it
        self._last_yield = time.perf_counter()
        self._to_forget: set[int] = set()
        self._forget_wanted = asyncio.Event()
        self.stats = {"batches_sent": 0, "events_sent": 0, "rewinds": 0, "acks": 0, "gaps": 0}

    # -- inputs -------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def on_connection_change(self, connected: bool, *, alarm_link: bool = False) -> None:
        if not connected:  # learnt again from the retained status on reconnect
            if alarm_link:
                self.alarm_hub_online = False
            else:
                self.hub_online = False
        self.wake()  # the alarm lane may have to change links

    def on_hub_status(self, online: bool, *, alarm_link: bool = False) -> None:
        if alarm_link:
            was, self.alarm_hub_online = self.alarm_hub_online, online
            if online and not was:
                self._rewind([Lane.ALARM], "hub online on the alarm link")
        else:
            was, self.hub_online = self.hub_online, online
            if online and not was:
                alarm = self._lanes[Lane.ALARM]
                on_bulk = alarm.link is None or alarm.link is self._publisher
                self._rewind([lane for lane in Lane if on_bulk or lane != Lane.ALARM], "hub online")
        self.wake()

    async def on_ack(self, ack: Ack) -> None:
        if ack.edge_id != self._edge_id or ack.incarnation != self._outbox.incarnation:
            log.warning("ignoring ack for %s/%s", ack.edge_id, ack.incarnation)
            return
        if ack.gap is not None:
            self._on_gap(ack.gap)
        acked = set(ack.seqs)
        self.stats["acks"] += 1
        for state in self._lanes.values():
            for batch in state.in_flight:
                batch.seqs -= acked
            state.in_flight = [b for b in state.in_flight if b.seqs]
        self._to_forget |= acked
        self._forget_wanted.set()
        self.wake()

    def _on_gap(self, lane: Lane) -> None:
        self.stats["gaps"] += 1
        state = self._lanes[lane]
        if self._monotonic() - state.rewound_at < self._settings.gap_holdoff_s:
            return  # a refusal of a batch sent before the last rewind: its resend is out
        self._rewind([lane], "the hub lacks an earlier batch")

    async def _forget_acked(self) -> None:
        """Delete acknowledged rows, all that have arrived meanwhile in one transaction.

        One delete at a time (not one task per ack message): an alarm being committed
        then waits for at most one delete, not for a queue of them during a drain.
        """
        while True:
            await self._forget_wanted.wait()
            self._forget_wanted.clear()
            seqs, self._to_forget = self._to_forget, set()
            if seqs:
                await self._outbox.ack(sorted(seqs))

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._forget_acked(), name="uplink-forget-acked")
            group.create_task(self._send_loop(), name="uplink-send")

    async def _send_loop(self) -> None:
        tick = min(1.0, self._settings.ack_timeout_s / 4)
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), tick)
            except TimeoutError:
                pass
            self._wake.clear()
            if not self._can_send():
                continue
            self._check_overdue()
            while self._can_send() and await self._send_next():
                pass

    def _can_send(self) -> bool:
        return self._bulk_up() or self._alarm_link_up()

    def _bulk_up(self) -> bool:
        return self.hub_online and self._publisher.connected

    def _alarm_link_up(self) -> bool:
        link = self._alarm_publisher
        return link is not None and self.alarm_hub_online and link.connected

    def link_of(self, lane: Lane) -> Publisher | None:
        """The link ``lane`` goes out on now, or None while it has none."""
        if lane == Lane.ALARM and self._alarm_link_up():
            return self._alarm_publisher
        return self._publisher if self._bulk_up() else None

    async def _send_next(self) -> bool:
        """Send one batch from the most urgent lane that has room and work. False if none.

        Lanes are looked at in priority order every time, so an alarm committed meanwhile
        goes next; looking costs no query while the outbox has committed nothing since a
        lane was found empty. Batches of the read-ahead go out back to back for at most
        ``YIELD_EVERY_S``, then the loop yields once, so that the commit of an SOS that
        arrived meanwhile is seen before the next batch (an edge whose loop is busy with
        frame intake would otherwise forward one batch per loop turn and fall behind).
        """
        head_start = self._alarm_head_start()
        for lane in Lane:
            state = self._lanes[lane]
            alarm = lane == Lane.ALARM
            if head_start and not alarm:
                return False  # the ack of the alarm in flight wakes the loop again
            link = self.link_of(lane)
            if link is None:
                continue
            if state.link is not link:
                if state.link is not None:  # what went out on the other link may be stuck
                    self._rewind([lane], "link changed")
                state.link = link
            window = self._settings.alarm_window if alarm else self._settings.window
            room = window - len(state.in_flight)
            if room <= 0:
                continue
            limit = self._settings.alarm_batch_size if alarm else self._settings.batch_size
            if not state.ahead and not await self._read_ahead(lane, state, limit * room):
                continue
            if not alarm and state.in_flight and len(state.ahead) < limit:
                # Self-clocking (like Nagle): while batches of the lane are in flight, a
                # partial batch waits for more events or for an ack. The first event after a
                # quiet spell goes at once; under load each batch holds what arrived during
                # one hub round trip, not one small group commit's worth — the hub pays a
                # transaction per message.
                await self._top_up(lane, state, limit * room)
                if len(state.ahead) < limit:
                    continue
            events = [state.ahead.popleft() for _ in range(min(limit, len(state.ahead)))]
            payload = EventBatch(
                self._edge_id,
                self._outbox.incarnation,
                tuple(events),
                follows=state.cursor,
                lane_acks=link is self._alarm_publisher,
            ).encode()
            if not link.publish(self._topics[lane], payload, qos=1):
                state.ahead.clear()  # read again from the cursor when the link is back
                continue  # connection dropped; the hub's return rewinds
            state.cursor = events[-1].seq
            state.in_flight.append(_InFlight({e.seq for e in events}, self._monotonic()))
            self.stats["batches_sent"] += 1
            self.stats["events_sent"] += len(events)
            if time.perf_counter() - self._last_yield > YIELD_EVERY_S:
                await asyncio.sleep(0)  # let a waiting SOS commit settle: it goes next
                self._last_yield = time.perf_counter()
            return True
        return False

    async def _top_up(self, lane: Lane, state: _LaneState, limit: int) -> None:
        """Read events committed after the read-ahead's last one (once per commit)."""
        commits = self._outbox.stats["recorded"]
        if state.topped_at == commits or len(state.ahead) >= limit:
            return
        state.topped_at = commits
        after = state.ahead[-1].seq if state.ahead else state.cursor
        state.ahead.extend(await self._outbox.fetch(lane, after, limit - len(state.ahead)))

    def _alarm_head_start(self) -> bool:
        """Whether an alarm batch awaits its ack and its head start has not run out."""
        in_flight = self._lanes[Lane.ALARM].in_flight
        if not in_flight:
            return False
        return self._monotonic() - in_flight[0].sent_at < self._settings.alarm_head_start_s

    async def _read_ahead(self, lane: Lane, state: _LaneState, limit: int) -> bool:
        """Fill ``state.ahead`` from the outbox; False when the lane has nothing to send."""
        commits = self._outbox.stats["recorded"]
        if state.empty_at == commits:
            return False
        events = await self._outbox.fetch(lane, state.cursor, limit)
        state.empty_at = None if events else commits
        state.ahead.extend(events)
        return bool(state.ahead)

    def _check_overdue(self) -> None:
        now = self._monotonic()
        for lane, state in self._lanes.items():
            if state.in_flight and now - state.in_flight[0].sent_at > self._settings.ack_timeout_s:
                self._rewind([lane], "ack overdue")

    def _rewind_all(self, why: str) -> None:
        self._rewind(list(Lane), why)

    def _rewind(self, lanes: Iterable[Lane], why: str) -> None:
        for lane in lanes:
            state = self._lanes[lane]
            if state.cursor or state.in_flight:
                self.stats["rewinds"] += 1
                log.info("uplink: resending unacknowledged %s events (%s)", lane.name.lower(), why)
            state.cursor = 0
            state.in_flight.clear()
            state.ahead.clear()
            state.empty_at = None
            state.topped_at = None
            state.rewound_at = self._monotonic()

    def in_flight_events(self) -> int:
        return sum(len(b.seqs) for s in self._lanes.values() for b in s.in_flight)
