"""The shared facilities of a community as device-event handlers (issue #3).

One module per facility, each a :class:`~hub.handlers.router.DeviceEventHandler`:

* :mod:`.doors`: access log; forced / held-open doors → ``door_alert`` task + worker told;
* :mod:`.parcels`: parcels in lockers, the household's webhook, overdue parcels of
  residents living alone → ``delivery`` task; compartment left open → ``door_alert``;
* :mod:`.water`: night-time flow per meter → ``leak_check`` task;
* :mod:`.bins`: full → ``collection`` task; hot or tipped → ``bin_alert`` task + worker told.

Electricity meters need nothing here: their readings are device state and history.
Thresholds and windows: :class:`hub.domain.facility_rules.FacilitySettings`; the rules
themselves are pure functions in :mod:`hub.domain.facility_rules`.
"""

from __future__ import annotations

from datetime import tzinfo

from hub.domain.facility_rules import FacilitySettings
from hub.handlers.facilities.bins import BinHandler
from hub.handlers.facilities.doors import DoorHandler
from hub.handlers.facilities.parcels import ParcelHandler
from hub.handlers.facilities.water import WaterHandler
from hub.handlers.router import DeviceEventHandler

__all__ = ["BinHandler", "DoorHandler", "ParcelHandler", "WaterHandler", "facility_handlers"]


def facility_handlers(
    settings: FacilitySettings, tz: tzinfo, ack_base_url: str = ""
) -> list[DeviceEventHandler]:
    """Every facility handler, configured; the order does not matter (they share no rows)."""
    return [
        DoorHandler(tz, ack_base_url),
        ParcelHandler(settings, tz, ack_base_url),
        WaterHandler(settings, tz, ack_base_url),
        BinHandler(settings, tz, ack_base_url),
    ]
