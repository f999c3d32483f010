"""Helpers for the device-side edge tests: a fake event sink, the CB-100 profile and
waiting on a condition with a deadline (never a bare sleep as synchronisation)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from contract import Lane
from edge.errors import OutboxError
from profiles import DeviceProfile, load_profile

REPO = Path(__file__).resolve().parents[2]
CB100_PROFILE = REPO / "device_profiles" / "cb-100.yaml"


async def eventually(
    condition: Callable[[], object], within_s: float = 5.0, what: str = "condition"
) -> None:
    """Re-check ``condition`` every millisecond until it is truthy or the deadline passes."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what}")
        await asyncio.sleep(0.001)


@dataclass(frozen=True)
class RecordedEvent:
    device_id: str
    kind: str
    lane: Lane
    data: dict[str, Any]
    dedupe_key: str | None


@dataclass
class FakeSink:
    """In-memory :class:`edge.sink.EventSink` with dedupe, an optional gate (a slow disk)
    and scripted failures (a full disk)."""

    events: list[RecordedEvent] = field(default_factory=list)
    calls: list[RecordedEvent] = field(default_factory=list)
    fail_next: int = 0
    gate: asyncio.Event | None = None
    _keys: set[str] = field(default_factory=set)

    async def record(
        self,
        device_id: str,
        kind: str,
        lane: Lane,
        data: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        frame_seq: int | None = None,
    ) -> bool:
        event = RecordedEvent(device_id, kind, lane, dict(data), dedupe_key)
        self.calls.append(event)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next > 0:
            self.fail_next -= 1
            raise OutboxError("disk full (simulated)")
        if dedupe_key is not None and dedupe_key in self._keys:
            return False
        if dedupe_key is not None:
            self._keys.add(dedupe_key)
        self.events.append(event)
        return True

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


@pytest.fixture(scope="session")
def cb100_profile() -> DeviceProfile:
    return load_profile(CB100_PROFILE)


@pytest.fixture
def fake_sink() -> FakeSink:
    return FakeSink()
