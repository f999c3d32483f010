"""The device features the hub runs (issue #3), in the order their handlers see events.

One place lists them, so a newcomer sees every rule the hub applies to device events
(``hub.services.device_handlers`` explains the interface)."""

from __future__ import annotations

from hub.config import HubConfig
from hub.services.device_handlers import DeviceEventHandler


def device_handlers(config: HubConfig) -> list[DeviceEventHandler]:
    return []
