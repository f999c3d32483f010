"""How device events other than help calls reach the hub's features.

Everything a device says (an SOS, a door forced, a parcel deposited, a bin reading, a
device gone offline) goes through the :class:`DeviceEventRouter` to the handlers
registered for its kind: each feature (help calls, device state, doors, parcels, meters,
bins, supervision, the wellbeing watch) is one handler in its own module and knows nothing
of the others or of MQTT. Ingest has already placed the events (``hub.placement``: one
device lookup, the edge's right to speak for the device, last seen), so a handler gets
each event with its device's registry row.

Handlers run inside ingest's transaction, after the events are stored, so what they write
commits with the events or not at all; the :class:`~hub.domain.effects.Effects` they return
(notifications, device commands) are dispatched after the commit. ``on_tick`` runs
periodically for what depends on time passing rather than on an event (a parcel overdue
after 48 h, a night without zero flow, an outage grouped after its window).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from contract import Event
from hub.db.schema import devices
from hub.domain.effects import Effects

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """The registry's view of the device an event came from."""

    id: str
    profile: str
    household_id: int | None
    grid_id: int | None
    place: str
    edge_id: str | None


class DeviceEventHandler(Protocol):
    #: The event kinds this handler wants; ``None``: every kind but ``ignored_kinds``.
    kinds: frozenset[str] | None
    ignored_kinds: frozenset[str]

    async def on_events(
        self, conn: AsyncConnection, events: Sequence[tuple[DeviceRow, Event]], now: datetime
    ) -> Effects:
        """Act on newly stored events (in commit order) inside ingest's transaction."""
        ...

    async def on_tick(self, conn: AsyncConnection, now: datetime) -> Effects:
        """Act on the passing of time; called every ``tick_s`` in its own transaction."""
        ...


_DEVICE_ROWS = sa.select(
    devices.c.id,
    devices.c.profile,
    devices.c.household_id,
    devices.c.grid_id,
    devices.c.place,
    devices.c.edge_id,
).where(devices.c.id.in_(sa.bindparam("ids", expanding=True)))


def _wants(handler: DeviceEventHandler, kind: str) -> bool:
    if handler.kinds is None:
        return kind not in handler.ignored_kinds
    return kind in handler.kinds


class DeviceEventRouter:
    """Hands placed events to every handler that wants their kinds, in the handlers' order.

    Help calls come first (:class:`~hub.handlers.help_calls.HelpCallHandler`), so an SOS
    is acted on before the same chunk's readings are merged into device state.
    """

    def __init__(self, handlers: Sequence[DeviceEventHandler] = ()) -> None:
        self.handlers = list(handlers)

    async def route(
        self, conn: AsyncConnection, placed: Sequence[tuple[DeviceRow, Event]], now: datetime
    ) -> Effects:
        """Act on events already placed (``hub.placement``): no device lookup here.

        Work per batch, not per event and handler: the kinds present are found once, and a
        handler is called only when it wants one of them (a batch of heartbeats reaches
        only the handlers that care about heartbeats).
        """
        effects = Effects()
        kinds = {e.kind for _, e in placed}
        for handler in self.handlers:
            if not placed:
                break
            if handler.kinds is None:
                if kinds <= handler.ignored_kinds:
                    continue
                wanted: Sequence[tuple[DeviceRow, Event]] = placed
            elif kinds <= handler.kinds:
                wanted = placed
            elif kinds.isdisjoint(handler.kinds):
                continue
            else:
                wanted = [(d, e) for d, e in placed if e.kind in handler.kinds]
            done = await handler.on_events(conn, wanted, now)
            effects.extend(done)
            if done.refused:
                # A refused event (an SOS from a button bound to no household) is marked
                # and quarantined by ingest: no later handler keeps it as the device's.
                gone = {id(event) for event, _ in done.refused}
                placed = [(d, e) for d, e in placed if id(e) not in gone]
                kinds = {e.kind for _, e in placed}
        return effects

    async def on_events(
        self, conn: AsyncConnection, events: Sequence[Event], now: datetime
    ) -> Effects:
        """Look the events' devices up in the registry, then :meth:`route` them.

        For tests and tools holding bare events; it does not check which edge sent them.
        Ingest places its batches itself (``hub.placement``) and calls :meth:`route`.
        """
        wanted = [e for e in events if any(_wants(h, e.kind) for h in self.handlers)]
        if not wanted:
            return Effects()
        ids = sorted({e.device_id for e in wanted})
        rows = await conn.execute(_DEVICE_ROWS, {"ids": ids})
        known = {
            str(r.id): DeviceRow(
                str(r.id), str(r.profile), r.household_id, r.grid_id, str(r.place), r.edge_id
            )
            for r in rows
        }
        return await self.route(
            conn, [(known[e.device_id], e) for e in events if e.device_id in known], now
        )

    async def on_tick(self, conn: AsyncConnection, now: datetime) -> Effects:
        effects = Effects()
        for handler in self.handlers:
            effects.extend(await handler.on_tick(conn, now))
        return effects
