"""The device features the hub runs (issue #3), in the order their handlers see events.

One place lists them, so a newcomer sees every rule the hub applies to device events
(``hub.handlers.router`` explains the interface). Help calls
(:class:`~hub.handlers.help_calls.HelpCallHandler`, which needs the app's case service)
come before all of these: ``hub.app`` puts them first, and ingest does so itself for a
router built without them (``hub.ingest.Ingest``)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from hub.config import HubConfig
from hub.handlers.device_state import DeviceStateHandler
from hub.handlers.facilities import facility_handlers
from hub.handlers.router import DeviceEventHandler
from hub.handlers.supervision import SupervisionHandler
from hub.services.wellbeing import wellbeing_handlers


def device_handlers(config: HubConfig) -> list[DeviceEventHandler]:
    tz = ZoneInfo(config.timezone)
    base_url = config.api.public_base_url
    return [
        DeviceStateHandler(),  # latest state per device, for the API
        # offline / online / low battery: maintenance tasks, one outage alert per power cut
        SupervisionHandler(config.supervision, tz=tz, ack_base_url=base_url),
        # doors, parcels, water meters, bins
        *facility_handlers(config.facilities, tz, base_url),
        # the wellbeing watch of residents living alone (issue #15): activity, welfare checks
        *wellbeing_handlers(config.wellbeing, tz, base_url),
    ]
