"""Runs the device handlers' ``on_tick`` periodically (overdue parcels, night-time leak
windows, grouped outages): one transaction per tick, effects dispatched after commit.
A failing tick is logged and retried at the next one; it never stops the hub."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from hub.effects import EffectDispatcher
from hub.handlers.router import DeviceEventRouter

log = logging.getLogger(__name__)


class DeviceTimer:
    def __init__(
        self,
        engine: AsyncEngine,
        router: DeviceEventRouter,
        effects: EffectDispatcher,
        clock: Callable[[], datetime],
        tick_s: float,
    ) -> None:
        self._engine = engine
        self._router = router
        self._effects = effects
        self._clock = clock
        self._tick_s = tick_s
        self.ticks = 0

    async def tick(self) -> None:
        async with self._engine.begin() as conn:
            effects = await self._router.on_tick(conn, self._clock())
        self.ticks += 1
        if effects.notifications or effects.commands:
            await self._effects.dispatch(effects)

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("device timer tick failed; next in %.0f s", self._tick_s)
            await asyncio.sleep(self._tick_s)
