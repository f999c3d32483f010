"""The wellbeing watch (关爱守护, issue #15), wired to the hub.

* :mod:`.activity`: device events → activity of consenting households (a device handler);
* :mod:`.watch`: the periodic judgement, welfare checks (关爱探访) and their escalation,
  missed daily check-ins (报平安), retention of raw activity;
* :mod:`.records`: consent, away periods, audited reads, outcomes (for the API).

The rules themselves are pure: :mod:`hub.domain.wellbeing`.
"""

from __future__ import annotations

from datetime import tzinfo

from hub.domain.wellbeing_settings import WellbeingSettings
from hub.handlers.router import DeviceEventHandler
from hub.services.wellbeing.activity import WellbeingActivityHandler
from hub.services.wellbeing.watch import WellbeingWatch

__all__ = ["WellbeingActivityHandler", "WellbeingWatch", "wellbeing_handlers"]


def wellbeing_handlers(
    settings: WellbeingSettings, tz: tzinfo, ack_base_url: str = ""
) -> list[DeviceEventHandler]:
    return [WellbeingActivityHandler(settings), WellbeingWatch(settings, tz, ack_base_url)]
