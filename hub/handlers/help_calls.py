"""Help calls as one device-event handler: SOS, fall, cancel, presence, service requests.

Why a handler like the others: ingest places every batch once (``hub.placement``) and the
router hands each feature the events it wants; the case service is the help-call feature,
first in the router's line so that a chunk's SOS is acted on before its readings. The
rules stay in :class:`~hub.services.cases.CaseService` (shared with the API's acts and the
escalation sweep); this adapter only feeds it placed events and turns an event it cannot
act on (a button bound to no household) into a refusal for ingest to quarantine.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from contract import Event
from hub.domain.effects import Effects
from hub.handlers.router import DeviceRow
from hub.services.cases import DEVICE_EVENT_KINDS, CaseService
from hub.services.errors import UnknownDevice


class HelpCallHandler:
    kinds: frozenset[str] | None = DEVICE_EVENT_KINDS
    ignored_kinds: frozenset[str] = frozenset()

    def __init__(self, service: CaseService) -> None:
        self.service = service

    async def on_events(
        self, conn: AsyncConnection, events: Sequence[tuple[DeviceRow, Event]], now: datetime
    ) -> Effects:
        effects = Effects()
        for device, event in events:
            if event.kind not in DEVICE_EVENT_KINDS:
                continue  # a direct caller may pass anything
            try:
                effects.extend(await self.service.on_device_event(conn, device, event, now))
            except UnknownDevice as err:
                effects.refused.append((event, err.reason))
        return effects

    async def on_tick(self, conn: AsyncConnection, now: datetime) -> Effects:
        """Nothing: help calls escalate on their own persisted deadlines
        (``hub.escalation_timer``), not on the device tick."""
        return Effects()
