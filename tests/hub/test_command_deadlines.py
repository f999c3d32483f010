"""The hub's side of command deadlines and result origin (issue #11), on a real SQLite file
with the real effect dispatcher and a recording broker stand-in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import Command, CommandResult
from hub.db.schema import commands, devices
from hub.domain.effects import Effects
from hub.effects import EffectDispatcher
from simulators.stack import REPO_ROOT
from tests.hub.test_device_commands import NoNotifier, RecordingBroker

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def _setup(engine: AsyncEngine) -> tuple[EffectDispatcher, RecordingBroker, Clock]:
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(devices).values(household_id=None),
            [{"id": "door-gate-3", "profile": "fr-door", "grid_id": 1, "edge_id": "edge-1"}],
        )
    broker, clock = RecordingBroker(), Clock()
    dispatcher = EffectDispatcher(
        engine, broker, NoNotifier(), clock, retry_s=5, profiles_dir=REPO_ROOT / "device_profiles"
    )
    return dispatcher, broker, clock


async def _add(engine: AsyncEngine, command_id: str, **values: Any) -> None:
    row = {
        "id": command_id,
        "edge_id": "edge-1",
        "device_id": "door-gate-3",
        "name": "open_door",
        "args": {"duration_s": 3},
        "state": "pending",
        "created_at": T0,
        **values,
    }
    async with engine.begin() as conn:
        await conn.execute(sa.insert(commands).values(**row))


async def _row(engine: AsyncEngine, command_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        found = (await conn.execute(sa.select(commands).where(commands.c.id == command_id))).first()
    assert found is not None
    return dict(found._mapping)


async def test_a_command_goes_out_with_its_deadline_and_the_time_left(engine: AsyncEngine) -> None:
    dispatcher, broker, clock = await _setup(engine)
    await _add(engine, "c1", deadline_at=T0 + timedelta(seconds=10))
    clock.now = T0 + timedelta(seconds=4)
    await dispatcher.dispatch(Effects(commands=[Command("c1", "door-gate-3", "open_door", {})]))
    [(_topic, payload)] = broker.published
    wire = Command.decode(payload)
    assert wire.deadline == T0 + timedelta(seconds=10)
    assert wire.ttl_s == 6.0
    assert wire.args == {"duration_s": 3}
    assert (await _row(engine, "c1"))["state"] == "sent"


async def test_past_its_deadline_a_command_is_expired_and_never_sent_again(
    engine: AsyncEngine,
) -> None:
    dispatcher, broker, clock = await _setup(engine)
    await _add(
        engine,
        "c1",
        state="sent",
        sent_at=T0,
        deadline_at=T0 + timedelta(seconds=10),
    )
    clock.now = T0 + timedelta(seconds=11)  # an edge outage: no result came
    assert await dispatcher.resend_unconfirmed() == 0
    assert broker.published == []
    row = await _row(engine, "c1")
    assert (row["state"], row["result_at"]) == ("expired", clock.now)
    assert "deadline" in row["detail"]
    clock.now += timedelta(minutes=10)
    assert await dispatcher.resend_unconfirmed() == 0
    assert broker.published == []


async def test_button_feedback_without_a_stored_deadline_gets_the_profiles(
    engine: AsyncEngine,
) -> None:
    """The case service queues feedback without ``deadline_at``: the dispatcher uses the
    device's profile (cb-100: button_feedback deadline_s 300) from ``created_at``."""
    dispatcher, broker, clock = await _setup(engine)
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(devices).values(
                id="cb100-1", profile="cb-100", grid_id=1, edge_id="edge-1", household_id=None
            )
        )
    await _add(engine, "f1", device_id="cb100-1", name="button_feedback", args={"code": "received"})
    await _add(engine, "f2", device_id="cb100-1", name="button_feedback", args={"code": "received"})
    clock.now = T0 + timedelta(seconds=100)
    assert await dispatcher.resend_unconfirmed() == 2
    wire = Command.decode(broker.published[0][1])
    assert wire.deadline == T0 + timedelta(seconds=300)
    assert (await _row(engine, "f1"))["deadline_at"] == T0 + timedelta(seconds=300)
    clock.now = T0 + timedelta(seconds=301)
    assert await dispatcher.resend_unconfirmed() == 0
    assert (await _row(engine, "f2"))["state"] == "expired"


async def test_a_result_counts_only_from_the_edge_the_command_went_to(
    engine: AsyncEngine,
) -> None:
    dispatcher, _broker, _clock = await _setup(engine)
    await _add(engine, "c1", state="sent", sent_at=T0, deadline_at=T0 + timedelta(seconds=10))
    before = await _row(engine, "c1")
    forged = CommandResult("c1", "door-gate-3", "ok", "opened")
    reason = await dispatcher.on_result("edge-2", forged)
    assert reason is not None and "sent to edge 'edge-1'" in reason
    reason = await dispatcher.on_result("edge-1", CommandResult("c1", "door-gate-9", "ok"))
    assert reason is not None and "door-gate-3" in reason
    reason = await dispatcher.on_result("edge-1", CommandResult("nope", "door-gate-3", "ok"))
    assert reason is not None and "unknown command" in reason
    assert await _row(engine, "c1") == before
    assert dispatcher.stats["results_refused"] == 3
    assert await dispatcher.on_result("edge-1", forged) is None
    assert (await _row(engine, "c1"))["state"] == "ok"


async def test_a_late_result_from_the_edge_replaces_the_hubs_expired(engine: AsyncEngine) -> None:
    """The edge may have run the command just before its deadline; what it says wins."""
    dispatcher, _broker, clock = await _setup(engine)
    await _add(engine, "c1", state="sent", sent_at=T0, deadline_at=T0 + timedelta(seconds=10))
    clock.now = T0 + timedelta(seconds=12)
    await dispatcher.resend_unconfirmed()
    assert (await _row(engine, "c1"))["state"] == "expired"
    assert await dispatcher.on_result("edge-1", CommandResult("c1", "door-gate-3", "ok")) is None
    assert (await _row(engine, "c1"))["state"] == "ok"
