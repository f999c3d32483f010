"""Parcel lockers: who has a parcel waiting, telling the household, and bringing overdue
parcels to residents who live alone.

* ``parcel_deposited`` adds a ``parcels`` row; ``parcel_picked_up`` closes it;
  ``door_left_open`` (a compartment left open) files a ``door_alert`` task for the
  locker's grid and tells its on-duty grid worker. The grid worker, not a locker operator,
  because the hub knows who is on duty in every grid and nothing about the operator
  companies; the worker can call the operator from the task.
* The household is told by a webhook (``facilities.parcel_webhook``: a URL template, e.g.
  the property company's resident app). The row is marked ``notice_state = pending`` in
  ingest's transaction, and the tick (its own transaction, so only committed parcels are
  seen) hands pending notices to an :class:`~hub.notify.http.HttpChannel`, the same
  retry/timeout path as the workers' webhooks. Delivery runs in the background; its
  outcome (sent / failed, attempts, last error) is written back on the parcel row at the
  next tick. Ingest never waits for the receiver; a hub that stops before the outcome is
  written sends the notice again after restart (at least once).
* The tick marks parcels still waiting ``parcel_overdue_h`` (48 h) after deposit as
  overdue, once. For a household whose resident lives alone (``households.lives_alone``)
  the grid gets a ``delivery`` task ("代收包裹送上门"), one per household per tick listing
  its overdue parcels, and the on-duty worker is told; other households' parcels are only
  marked overdue (the API lists them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import quote

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from contract import Event
from contract.envelope import format_time
from hub.db.schema import devices, households, parcels
from hub.domain.effects import Effects
from hub.domain.facility_rules import FacilitySettings, ParcelWebhookSettings, overdue_cutoff
from hub.domain.notification import Notification
from hub.handlers.facilities.common import (
    DEFAULT_TZ,
    InputProblems,
    int_value,
    open_device_task,
    text_value,
    where,
    where_en,
)
from hub.handlers.router import DeviceRow
from hub.notify.http import (
    DeliveryFailed,
    DeliveryOutcome,
    HttpChannel,
    HttpRequest,
    RetryPolicy,
    http_failure,
)
from hub.services.alerts import notify_grid_worker
from hub.services.errors import NotFound
from hub.services.tasks import file_device_task

log = logging.getLogger(__name__)

PARCEL_KINDS = frozenset({"parcel_deposited", "parcel_picked_up", "door_left_open"})
#: Pending notices handed to the webhook per tick, at most.
NOTICES_PER_TICK = 200


@dataclass(frozen=True, slots=True)
class ParcelNotice(Notification):
    """What a household's webhook is told: a :class:`Notification` (so the shared HTTP
    channel can carry it) addressed to no worker (``worker_id`` 0, tier "household"),
    plus the parcel."""

    parcel_row: int = 0
    parcel_id: str = ""
    device_id: str = ""
    compartment: int = 0
    place: str = ""


class HouseholdWebhook:
    """The :class:`~hub.notify.http.MessageFormat` of the household parcel webhook."""

    channel = "parcel_webhook"

    def __init__(self, url_template: str) -> None:
        self.url = url_template

    async def request(self, notification: Notification) -> HttpRequest:
        if not isinstance(notification, ParcelNotice):
            raise DeliveryFailed("the parcel webhook carries parcel notices only")
        url = self.url.format(
            household_id=notification.household_id,
            parcel_id=quote(notification.parcel_id, safe=""),
            device_id=quote(notification.device_id, safe=""),
            compartment=notification.compartment,
        )
        body = {
            "type": "parcel_deposited",
            "household_id": notification.household_id,
            "address": notification.address,
            "parcel_id": notification.parcel_id,
            "device_id": notification.device_id,
            "place": notification.place,
            "compartment": notification.compartment,
            "deposited_at": format_time(notification.occurred_at),
            "message_zh": notification.message_zh,
            "message_en": notification.message_en,
        }
        return HttpRequest(url, body)

    def failure(self, response: httpx.Response) -> str | None:
        return http_failure(response)


class _Outcomes:
    """The channel's recorder: keeps outcomes until the next tick writes them."""

    def __init__(self) -> None:
        self.finished: list[DeliveryOutcome] = []

    async def record(self, outcome: DeliveryOutcome) -> None:
        self.finished.append(outcome)


def notice_text(place: str, compartment: int) -> tuple[str, str]:
    return (
        f"您的包裹已存入{place}快递柜第 {compartment} 格，请及时取件。",
        f"Your parcel is in compartment {compartment} of the locker at {place}; please pick it up.",
    )


class ParcelHandler:
    """Parcels, household notices, overdue deliveries and compartments left open."""

    kinds: frozenset[str] | None = PARCEL_KINDS

    ignored_kinds: frozenset[str] = frozenset()

    def __init__(
        self,
        settings: FacilitySettings | None = None,
        tz: tzinfo = DEFAULT_TZ,
        ack_base_url: str = "",
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings or FacilitySettings()
        self.tz = tz
        self.ack_base_url = ack_base_url
        self.problems = InputProblems("parcels")
        self._transport = transport
        self._outcomes = _Outcomes()
        self._channel: HttpChannel | None = None
        self._in_flight: set[int] = set()

    # -- events ----------------------------------------------------------------------------

    async def on_events(
        self, conn: AsyncConnection, events: Sequence[tuple[DeviceRow, Event]], now: datetime
    ) -> Effects:
        effects = Effects()
        wanted = {
            h
            for _, e in events
            if e.kind == "parcel_deposited" and (h := int_value(e.data, "household_id")) is not None
        }
        known: set[int] = set()
        if wanted:
            query = sa.select(households.c.id).where(households.c.id.in_(sorted(wanted)))
            known = {int(r.id) for r in await conn.execute(query)}
        for device, event in events:  # in order: a deposit and its pickup may share a batch
            if event.kind == "parcel_deposited":
                await self._deposited(conn, device, event, known)
            elif event.kind == "parcel_picked_up":
                await self._picked_up(conn, device, event)
            else:
                effects.extend(await self._left_open(conn, device, event, now))
        return effects

    async def _deposited(
        self, conn: AsyncConnection, device: DeviceRow, event: Event, known: set[int]
    ) -> None:
        parcel_id = text_value(event.data, "parcel_id")
        compartment = int_value(event.data, "compartment")
        if parcel_id is None or compartment is None:
            self.problems.count(device.id, event.kind, "no parcel_id or compartment")
            return
        household_id = int_value(event.data, "household_id")
        if household_id is None and event.data.get("household_id") is not None:
            self.problems.count(device.id, event.kind, "household_id is not an id")
        if household_id is not None and household_id not in known:
            self.problems.count(device.id, event.kind, f"unknown household {household_id}")
            household_id = None
        waiting = sa.select(parcels.c.id).where(
            parcels.c.device_id == device.id,
            parcels.c.parcel_id == parcel_id,
            parcels.c.picked_up_at.is_(None),
        )
        if (await conn.execute(waiting)).first() is not None:
            self.problems.count(device.id, event.kind, "parcel already waiting")
            return
        notify = self.settings.parcel_webhook is not None and household_id is not None
        await conn.execute(
            sa.insert(parcels).values(
                device_id=device.id,
                compartment=compartment,
                parcel_id=parcel_id,
                household_id=household_id,
                deposited_at=event.occurred_at,
                notice_state="pending" if notify else "none",
            )
        )

    async def _picked_up(self, conn: AsyncConnection, device: DeviceRow, event: Event) -> None:
        parcel_id = text_value(event.data, "parcel_id")
        if parcel_id is None:
            self.problems.count(device.id, event.kind, "no parcel_id")
            return
        result = await conn.execute(
            sa.update(parcels)
            .where(
                parcels.c.device_id == device.id,
                parcels.c.parcel_id == parcel_id,
                parcels.c.picked_up_at.is_(None),
            )
            .values(
                picked_up_at=event.occurred_at,
                notice_state=sa.case(
                    (parcels.c.notice_state == "pending", "skipped"),
                    else_=parcels.c.notice_state,
                ),
            )
        )
        if result.rowcount == 0:
            self.problems.count(device.id, event.kind, "no such parcel waiting")

    async def _left_open(
        self, conn: AsyncConnection, device: DeviceRow, event: Event, now: datetime
    ) -> Effects:
        compartment = int_value(event.data, "compartment")
        which = f"第 {compartment} 格" if compartment is not None else "有格口"
        which_en = f"compartment {compartment}" if compartment is not None else "a compartment"
        zh = f"快递柜{which}门未关：{where(device)}"
        en = f"locker {which_en} left open: {where_en(device)}"
        _, effects = await open_device_task(
            conn,
            device,
            kind="door_alert",
            zh=zh,
            en=en,
            now=now,
            tz=self.tz,
            ack_base_url=self.ack_base_url,
        )
        return effects

    # -- time ------------------------------------------------------------------------------

    async def on_tick(self, conn: AsyncConnection, now: datetime) -> Effects:
        await self._write_outcomes(conn)
        effects = await self._overdue(conn, now)
        await self._send_notices(conn)
        return effects

    async def _overdue(self, conn: AsyncConnection, now: datetime) -> Effects:
        cutoff = overdue_cutoff(now, self.settings.parcel_overdue_after)
        query = (
            sa.select(
                parcels.c.id,
                parcels.c.device_id,
                parcels.c.compartment,
                parcels.c.parcel_id,
                parcels.c.household_id,
                households.c.grid_id,
                households.c.lives_alone,
                devices.c.place,
            )
            .join_from(parcels, households, parcels.c.household_id == households.c.id, isouter=True)
            .join(devices, devices.c.id == parcels.c.device_id, isouter=True)
            .where(
                parcels.c.picked_up_at.is_(None),
                parcels.c.overdue_at.is_(None),
                parcels.c.deposited_at <= cutoff,
            )
            .order_by(parcels.c.deposited_at, parcels.c.id)
        )
        rows = list(await conn.execute(query))
        if not rows:
            return Effects()
        await conn.execute(
            sa.update(parcels)
            .where(parcels.c.id.in_([r.id for r in rows]), parcels.c.overdue_at.is_(None))
            .values(overdue_at=now)
        )
        lone: dict[int, list[Any]] = {}
        for r in rows:
            if r.household_id is not None and r.lives_alone:
                lone.setdefault(int(r.household_id), []).append(r)
        effects = Effects()
        for household_id, found in lone.items():
            effects.extend(await self._delivery(conn, household_id, found, now))
        return effects

    async def _delivery(
        self, conn: AsyncConnection, household_id: int, found: list[Any], now: datetime
    ) -> Effects:
        hours = f"{self.settings.parcel_overdue_h:g}"
        lockers_zh = "、".join(
            f"{r.place or r.device_id}（{r.device_id}）第 {r.compartment} 格" for r in found
        )
        lockers_en = ", ".join(
            f"{r.place or r.device_id} ({r.device_id}) compartment {r.compartment}" for r in found
        )
        zh = f"代收包裹送上门：独居老人的包裹超过 {hours} 小时未取，{lockers_zh}"
        en = (
            f"deliver the parcel to the door: a resident living alone has not picked up "
            f"{len(found)} parcel(s) for {hours} h: {lockers_en}"
        )
        grid_id = found[0].grid_id
        task_id = await file_device_task(
            conn,
            kind="delivery",
            device_id=None,  # one task per household's parcels, not one per locker
            household_id=household_id,
            grid_id=grid_id,
            detail=f"{zh} / {en}",
            now=now,
        )
        if task_id is None:  # cannot happen without a device id; kept for the type
            return Effects()
        await conn.execute(
            sa.update(parcels)
            .where(parcels.c.id.in_([r.id for r in found]))
            .values(delivery_task_id=task_id)
        )
        return Effects(
            notifications=await notify_grid_worker(
                conn,
                grid_id=grid_id,
                kind="delivery",
                message_zh=zh,
                message_en=en,
                task_id=task_id,
                household_id=household_id,
                device_id=None,
                now=now,
                tz=self.tz,
                ack_base_url=self.ack_base_url,
            )
        )

    # -- household notices -----------------------------------------------------------------

    def _channel_for(self, webhook: ParcelWebhookSettings) -> HttpChannel:
        if self._channel is None:
            policy = RetryPolicy(
                attempts=webhook.attempts, timeout_s=webhook.timeout_s, backoff_s=webhook.backoff_s
            )
            self._channel = HttpChannel(
                HouseholdWebhook(webhook.url_template),
                policy,
                recorder=self._outcomes,
                transport=self._transport,
            )
        return self._channel

    async def _write_outcomes(self, conn: AsyncConnection) -> None:
        finished, self._outcomes.finished = self._outcomes.finished, []
        for outcome in finished:
            notice = outcome.notification
            if not isinstance(notice, ParcelNotice):
                continue
            await conn.execute(
                sa.update(parcels)
                .where(parcels.c.id == notice.parcel_row, parcels.c.notice_state == "pending")
                .values(
                    notice_state="sent" if outcome.delivered else "failed",
                    notice_attempts=parcels.c.notice_attempts + outcome.attempts,
                    notice_error=outcome.error[:300],
                    noticed_at=outcome.at,
                )
            )
            self._in_flight.discard(notice.parcel_row)

    async def _send_notices(self, conn: AsyncConnection) -> None:
        webhook = self.settings.parcel_webhook
        if webhook is None:
            return
        query = (
            sa.select(parcels, households.c.address, devices.c.place)
            .join_from(parcels, households, parcels.c.household_id == households.c.id)
            .join(devices, devices.c.id == parcels.c.device_id, isouter=True)
            .where(parcels.c.notice_state == "pending")
            .order_by(parcels.c.id)
        )
        if self._in_flight:
            query = query.where(parcels.c.id.not_in(sorted(self._in_flight)))
        rows = (await conn.execute(query.limit(NOTICES_PER_TICK))).mappings().all()
        if not rows:
            return
        channel = self._channel_for(webhook)
        for row in rows:
            place = row["place"] or row["device_id"]
            zh, en = notice_text(place, int(row["compartment"]))
            notice = ParcelNotice(
                case_id=None,
                worker_id=0,
                tier="household",
                kind="parcel_deposited",
                resident_name="",
                address=row["address"],
                grid_name="",
                household_id=int(row["household_id"]),
                occurred_at=row["deposited_at"],
                message_zh=zh,
                message_en=en,
                ack_path="",
                parcel_row=int(row["id"]),
                parcel_id=row["parcel_id"],
                device_id=row["device_id"],
                compartment=int(row["compartment"]),
                place=place,
            )
            self._in_flight.add(notice.parcel_row)
            await channel.notify(notice)

    async def drain(self) -> None:
        """Wait for the notices under way (tests; an orderly shutdown)."""
        if self._channel is not None:
            await self._channel.drain()

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.aclose()
            self._channel = None


#: A parcel's state, from its times: waiting, overdue (still waiting, past the limit),
#: picked_up.
PARCEL_STATES = ("waiting", "overdue", "picked_up")
_locker = sa.alias(devices, name="locker")
#: The grid a parcel belongs to: its household's, else the locker's own grid.
parcel_grid = sa.func.coalesce(households.c.grid_id, _locker.c.grid_id)
_STATE_CONDITIONS: dict[str, tuple[Any, ...]] = {
    "waiting": (parcels.c.picked_up_at.is_(None), parcels.c.overdue_at.is_(None)),
    "overdue": (parcels.c.picked_up_at.is_(None), parcels.c.overdue_at.is_not(None)),
    "picked_up": (parcels.c.picked_up_at.is_not(None),),
}
_STATE = sa.case(
    (parcels.c.picked_up_at.is_not(None), "picked_up"),
    (parcels.c.overdue_at.is_not(None), "overdue"),
    else_="waiting",
)


async def list_parcels(
    conn: AsyncConnection,
    *,
    household_id: int | None = None,
    state: str | None = None,
    device_id: str | None = None,
    grid_ids: Sequence[int] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Parcels, newest deposit first, with their state and grid; ``grid_ids`` narrows to
    those grids (a grid worker's). Returns the page and the number on all pages."""
    conditions: list[Any] = []
    if household_id is not None:
        conditions.append(parcels.c.household_id == household_id)
    if device_id is not None:
        conditions.append(parcels.c.device_id == device_id)
    if state is not None:
        if state not in PARCEL_STATES:
            raise ValueError(f"state {state!r} is not one of {', '.join(PARCEL_STATES)}")
        conditions.extend(_STATE_CONDITIONS[state])
    if grid_ids is not None:
        conditions.append(parcel_grid.in_(sorted(grid_ids)))
    joined = parcels.join(households, parcels.c.household_id == households.c.id, isouter=True).join(
        _locker, _locker.c.id == parcels.c.device_id, isouter=True
    )
    total = (
        await conn.execute(sa.select(sa.func.count()).select_from(joined).where(*conditions))
    ).scalar_one()
    query = (
        sa.select(
            parcels.c.id,
            parcels.c.device_id,
            _locker.c.place.label("place"),
            parcels.c.compartment,
            parcels.c.parcel_id,
            parcels.c.household_id,
            households.c.address.label("household_address"),
            parcel_grid.label("grid_id"),
            _STATE.label("state"),
            parcels.c.deposited_at,
            parcels.c.picked_up_at,
            parcels.c.overdue_at,
            parcels.c.delivery_task_id,
            parcels.c.notice_state,
            parcels.c.notice_attempts,
            parcels.c.notice_error,
            parcels.c.noticed_at,
        )
        .select_from(joined)
        .where(*conditions)
        .order_by(parcels.c.deposited_at.desc(), parcels.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    return rows, int(total)


async def household_grid(conn: AsyncConnection, household_id: int) -> int:
    """The household's grid; NotFound when there is no such household."""
    query = sa.select(households.c.grid_id).where(households.c.id == household_id)
    grid: int | None = (await conn.execute(query)).scalar()
    if grid is None:
        raise NotFound(f"household {household_id} not found / 住户 {household_id} 不存在")
    return grid
