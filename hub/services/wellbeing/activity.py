"""Activity from device events, for the households whose resident consented (issue #15).

The hub already stores every event; this handler only turns the few that say "the resident
is up and about" into ``wellbeing_activity`` rows and keeps, per household and source,
when the device last reported and when it last showed activity (what the periodic judgement
reads, and what tells a quiet flat from a dead meter):

* ``water_reading`` from the household's water meter: flow above ``water_flow_m3h``;
* ``meter_reading`` from its electricity meter: the average draw since the previous
  reading above ``standby_w`` (the fridge and the router never stop), or ``power_w``;
* ``face_pass`` at any door whose ``person_id`` is the resident's (recorded with consent);
* button presses (``sos``, ``service_request``, ``cancel``) and daily check-ins.

An "are you OK?" prompt (``wellbeing_prompts``) waiting for an answer is answered by the
first activity after it; a check-in press while one waits is stored as source ``answer``
(and still counts as the day's check-in), so the baseline never learns from spells that
the prompt itself cut short.

Households without consent are skipped before anything is stored. Rows are coalesced
(one per source per ``coalesce_s``), so a running shower is one row, not sixty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from contract import Event
from hub.db.bulk import bulk_execute
from hub.db.schema import (
    households,
    tasks,
    wellbeing_activity,
    wellbeing_prompts,
    wellbeing_sources,
    wellbeing_watch,
)
from hub.domain.effects import Effects
from hub.domain.facility_rules import number
from hub.domain.wellbeing import Source, electricity_active
from hub.domain.wellbeing_settings import WellbeingSettings
from hub.handlers.facilities.common import InputProblems, text_value
from hub.handlers.router import DeviceRow

BUTTON_KINDS = frozenset({"sos", "service_request", "cancel"})
CHECK_IN_KINDS = frozenset({"check_in"})
ACTIVITY_KINDS = (
    frozenset({"water_reading", "meter_reading", "face_pass"}) | BUTTON_KINDS | CHECK_IN_KINDS
)


@dataclass(slots=True)
class _Seen:
    household_id: int
    source: Source
    device_id: str
    at: datetime
    active: bool
    kwh: float | None = None


class WellbeingActivityHandler:
    """Reads activity for consenting households out of device events."""

    kinds: frozenset[str] | None = ACTIVITY_KINDS
    ignored_kinds: frozenset[str] = frozenset()

    def __init__(self, settings: WellbeingSettings) -> None:
        self.settings = settings
        self.problems = InputProblems("wellbeing")

    async def on_events(
        self, conn: AsyncConnection, events: Sequence[tuple[DeviceRow, Event]], now: datetime
    ) -> Effects:
        if not self.settings.enabled:
            return Effects()
        watched = await _watched(conn)
        if not watched:
            return Effects()
        faces = {face: hh for hh, face in watched.items() if face}
        seen: list[_Seen] = []
        for device, event in events:
            at = min(event.occurred_at, now)  # a fast device clock is "now", not the future
            if event.kind == "face_pass":
                person = text_value(event.data, "person_id")
                household = faces.get(person) if person else None
                if household is not None:
                    seen.append(_Seen(household, Source.DOOR, device.id, at, True))
                continue
            if device.household_id is None or device.household_id not in watched:
                continue
            item = self._reading(device, event, at)
            if item is not None:
                seen.append(item)
        if seen:
            asked = await _waiting_prompts(conn, sorted({s.household_id for s in seen}))
            for item in seen:
                since = asked.get(item.household_id)
                if item.source is Source.CHECK_IN and since is not None and item.at >= since:
                    item.source = Source.ANSWER
            await self._store(conn, seen, now)
        return Effects()

    def _reading(self, device: DeviceRow, event: Event, at: datetime) -> _Seen | None:
        household = device.household_id
        assert household is not None
        if event.kind in BUTTON_KINDS:
            return _Seen(household, Source.BUTTON, device.id, at, True)
        if event.kind in CHECK_IN_KINDS:
            return _Seen(household, Source.CHECK_IN, device.id, at, True)
        if event.kind == "water_reading":
            flow = number(event.data.get("flow_m3h"))
            if flow is None or flow < 0:
                self.problems.count(device.id, event.kind, "flow_m3h is not a number >= 0")
                return None
            return _Seen(
                household, Source.WATER, device.id, at, flow > self.settings.water_flow_m3h
            )
        # meter_reading: activity is decided against the previous energy reading in _store
        kwh = number(event.data.get("energy_kwh"))
        power = number(event.data.get("power_w"))
        if kwh is None and power is None:
            self.problems.count(device.id, event.kind, "neither energy_kwh nor power_w")
            return None
        active = power is not None and power > self.settings.standby_w
        return _Seen(household, Source.ELECTRICITY, device.id, at, active, kwh)

    async def _store(self, conn: AsyncConnection, seen: list[_Seen], now: datetime) -> None:
        keys = {(s.household_id, s.source.value, s.device_id) for s in seen}
        rows = await conn.execute(
            sa.select(wellbeing_sources).where(
                wellbeing_sources.c.household_id.in_(sorted({k[0] for k in keys}))
            )
        )
        state: dict[tuple[int, str, str], dict[str, Any]] = {
            (r.household_id, r.source, r.device_id): dict(r._mapping) for r in rows
        }
        new_keys = keys - state.keys()
        for key in new_keys:
            state[key] = {
                "household_id": key[0],
                "source": key[1],
                "device_id": key[2],
                "last_report_at": None,
                "last_activity_at": None,
                "last_kwh": None,
                "last_kwh_at": None,
            }
        coalesce = timedelta(seconds=self.settings.coalesce_s)
        activity: list[dict[str, Any]] = []
        changed: set[tuple[int, str, str]] = set(new_keys)
        for item in sorted(seen, key=lambda s: s.at):
            key = (item.household_id, item.source.value, item.device_id)
            row = state[key]
            changed.add(key)
            if row["last_report_at"] is None or item.at > row["last_report_at"]:
                row["last_report_at"] = item.at
            active = item.active
            if item.kwh is not None:
                prev, prev_at = row["last_kwh"], row["last_kwh_at"]
                if prev is not None and prev_at is not None and item.at > prev_at:
                    active = active or bool(
                        electricity_active(
                            prev, prev_at, item.kwh, item.at, self.settings.standby_w
                        )
                    )
                if prev_at is None or item.at > prev_at:
                    row["last_kwh"], row["last_kwh_at"] = item.kwh, item.at
            if not active:
                continue
            last = row["last_activity_at"]
            if last is not None and item.at < last + coalesce:
                continue
            row["last_activity_at"] = item.at
            activity.append(
                {
                    "household_id": item.household_id,
                    "source": item.source.value,
                    "device_id": item.device_id,
                    "at": item.at,
                }
            )
        await bulk_execute(conn, sa.insert(wellbeing_activity), activity)
        await _answer_prompts(conn, activity)
        for key in sorted(changed):
            values = state[key]
            if key in new_keys:
                await conn.execute(sa.insert(wellbeing_sources).values(**values))
            else:
                await conn.execute(
                    sa.update(wellbeing_sources)
                    .where(
                        wellbeing_sources.c.household_id == key[0],
                        wellbeing_sources.c.source == key[1],
                        wellbeing_sources.c.device_id == key[2],
                    )
                    .values(
                        last_report_at=values["last_report_at"],
                        last_activity_at=values["last_activity_at"],
                        last_kwh=values["last_kwh"],
                        last_kwh_at=values["last_kwh_at"],
                    )
                )
        check_ins = [s for s in seen if s.source in (Source.CHECK_IN, Source.ANSWER)]
        await _close_check_in_calls(conn, check_ins, now)

    async def on_tick(self, conn: AsyncConnection, now: datetime) -> Effects:
        return Effects()  # the watch's judgement is WellbeingWatch's (hub.services.wellbeing)


async def _watched(conn: AsyncConnection) -> dict[int, str | None]:
    """Consenting households of residents living alone → their face id at the door."""
    query = (
        sa.select(wellbeing_watch.c.household_id, wellbeing_watch.c.face_person_id)
        .join_from(wellbeing_watch, households, wellbeing_watch.c.household_id == households.c.id)
        .where(wellbeing_watch.c.consent.is_(True), households.c.lives_alone.is_(True))
    )
    return {int(r.household_id): r.face_person_id for r in await conn.execute(query)}


async def _waiting_prompts(conn: AsyncConnection, household_ids: list[int]) -> dict[int, datetime]:
    """Households with a prompt waiting for an answer → when it was asked (the earliest)."""
    rows = await conn.execute(
        sa.select(wellbeing_prompts.c.household_id, sa.func.min(wellbeing_prompts.c.asked_at))
        .where(
            wellbeing_prompts.c.household_id.in_(household_ids),
            wellbeing_prompts.c.answered_at.is_(None),
            wellbeing_prompts.c.welfare_task_id.is_(None),
        )
        .group_by(wellbeing_prompts.c.household_id)
    )
    return {int(r[0]): r[1] for r in rows}


async def _answer_prompts(conn: AsyncConnection, activity: list[dict[str, Any]]) -> None:
    """The first activity at or after a waiting prompt answers it (in time order)."""
    for row in sorted(activity, key=lambda r: r["at"]):
        await conn.execute(
            sa.update(wellbeing_prompts)
            .where(
                wellbeing_prompts.c.household_id == row["household_id"],
                wellbeing_prompts.c.answered_at.is_(None),
                wellbeing_prompts.c.welfare_task_id.is_(None),
                wellbeing_prompts.c.asked_at <= row["at"],
            )
            .values(answered_at=row["at"], answer=row["source"])
        )


async def _close_check_in_calls(
    conn: AsyncConnection, check_ins: list[_Seen], now: datetime
) -> None:
    """A check-in that arrives makes the desk's pending call about it unnecessary."""
    for item in check_ins:
        task_id = (
            await conn.execute(
                sa.select(wellbeing_watch.c.check_in_task_id).where(
                    wellbeing_watch.c.household_id == item.household_id
                )
            )
        ).scalar()
        if task_id is None:
            continue
        await conn.execute(
            sa.update(tasks)
            .where(tasks.c.id == task_id, tasks.c.state != "done")
            .values(state="done", done_at=now)
        )
        await conn.execute(
            sa.update(wellbeing_watch)
            .where(wellbeing_watch.c.household_id == item.household_id)
            .values(check_in_task_id=None)
        )
