"""The notifier interface and the fan-out to several channels."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from hub.domain.notification import Notification

log = logging.getLogger(__name__)


class Notifier(Protocol):
    async def notify(self, notification: Notification) -> None:
        """Hand over one notification. Must return quickly and never raise."""
        ...


class Fanout:
    def __init__(self, channels: Sequence[Notifier]) -> None:
        self._channels = list(channels)

    async def notify(self, notification: Notification) -> None:
        for channel in self._channels:
            try:
                await channel.notify(notification)
            except Exception:
                log.exception("notification channel %s failed", type(channel).__name__)
