"""The long-lived objects of a running hub, owned by the app lifespan (see ``hub.app``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from hub.config import HubConfig
from hub.effects import EffectDispatcher
from hub.escalation_timer import EscalationTimer
from hub.ingest import Ingest
from hub.notify.stream import WorkerStreams
from hub.services.cases import CaseService
from hub.services.remote_config import RemoteConfigService


@dataclass(slots=True)
class HubRuntime:
    config: HubConfig
    engine: AsyncEngine
    service: CaseService
    effects: EffectDispatcher
    streams: WorkerStreams
    ingest: Ingest
    timer: EscalationTimer
    clock: Callable[[], datetime]
    remote_config: RemoteConfigService | None = None  # issue #4
