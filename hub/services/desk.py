"""What the 96890 hotline desk board reads: open cases, callers' households, system health.

* :func:`open_cases`: every case still active, with who has it (the worker who took it,
  or the workers of the latest notification round it waits on), when the resident started
  waiting, when the answer came, and the next escalation step and deadline;
* :func:`search_households`: the caller on the phone may give a name, a phone number
  (their own or a relative's: emergency contacts are searched too) or an address;
* :func:`system_health`: offline devices, low batteries, edges with a backlog or buffer
  pressure, quarantined messages, open tasks by kind.

The desk's acts on a case (reassign, add a note) are transitions of the case and live in
:class:`hub.services.cases.CaseService`. Medical notes are never read here: the desk may
not see them (``hub.domain.access``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import (
    case_notifications,
    cases,
    device_state,
    devices,
    edge_status,
    emergency_contacts,
    households,
    quarantine,
    residents,
    tasks,
    workers,
)
from hub.domain.case import ACTIVE_STATES, AWAITING_ACK_STATES, LABELS, CaseState, display_key
from hub.domain.escalation import TIER_LABELS, TIERS, Tier
from hub.services.areas import Areas
from hub.services.case_queries import case_from_row
from hub.services.records import contains
from hub.services.tasks import WELLBEING_TASK_KINDS

#: A battery at or below this level is shown as low (the CB-100 reports below 20 %).
LOW_BATTERY_PCT = 20
#: An edge whose oldest unsent event is older than this has a backlog worth a look.
BACKLOG_AGE_S = 60.0
#: Rows listed per health section (counts are always complete).
LISTED = 50
#: Task kinds on the health panel, in the order shown, with their labels.
TASK_KIND_LABELS: dict[str, tuple[str, str]] = {
    "service_request": ("便民服务", "service requests"),
    "collection": ("垃圾清运", "collections"),
    "delivery": ("包裹送上门", "deliveries"),
    "maintenance": ("设备维护", "maintenance"),
    "door_alert": ("门禁告警", "door alerts"),
    "bin_alert": ("垃圾桶告警", "bin alerts"),
    "leak_check": ("漏水检查", "leak checks"),
    "outage": ("停电", "outages"),
    "welfare_check": ("关爱探访", "welfare checks"),
    "check_in_call": ("报平安未到，待致电", "missed check-ins to call"),
}

_ORDER = {
    CaseState.OPEN: 0,
    CaseState.DISPATCHED: 0,
    CaseState.ACKNOWLEDGED: 1,
    CaseState.ON_SITE: 2,
}


def _first_resident() -> Any:
    return (
        select(residents.c.name)
        .where(residents.c.household_id == households.c.id)
        .order_by(residents.c.id)
        .limit(1)
        .scalar_subquery()
    )


async def open_cases(
    conn: AsyncConnection, areas: Areas, grid_ids: Sequence[int] | None
) -> list[dict[str, Any]]:
    """Active cases, those waiting for an answer first (longest waiting on top)."""
    query = (
        select(
            cases,
            households.c.address,
            households.c.lives_alone,
            _first_resident().label("resident_name"),
        )
        .join_from(cases, households, cases.c.household_id == households.c.id)
        .where(cases.c.state.in_([s.value for s in ACTIVE_STATES]))
    )
    if grid_ids is not None:
        query = query.where(cases.c.grid_id.in_(sorted(grid_ids)))
    rows = (await conn.execute(query)).mappings().all()
    ids = [int(r["id"]) for r in rows]
    rounds = await _latest_rounds(conn, ids)
    names = await _names(
        conn,
        {w for r in rows for w in (r["acknowledged_by"], r["assigned_worker_id"]) if w}
        | {w for notified in rounds.values() for w, _ in notified},
    )
    board = [_board_row(row, areas, rounds.get(int(row["id"]), []), names) for row in rows]
    board.sort(key=lambda c: (_ORDER[CaseState(c["state"])], c["opened_at"], c["id"]))
    return board


def _board_row(
    row: Any, areas: Areas, notified: list[tuple[int, str]], names: dict[int, str]
) -> dict[str, Any]:
    case = case_from_row(row)
    key = display_key(case)
    zh, en = LABELS[key]
    told: list[tuple[int, str | None]]
    if case.state in (CaseState.ACKNOWLEDGED, CaseState.ON_SITE):
        # on site without an acknowledgement: the presence key was pressed at the door
        holder_kind = "taken"
        told = [(case.acknowledged_by, None)] if case.acknowledged_by else []
    elif notified:
        holder_kind = "waiting"
        told = [(w, tier) for w, tier in notified]
    else:
        holder_kind = "nobody"
        told = []
    holders = [{"worker_id": w, "tier": t, "name": names.get(w, f"#{w}")} for w, t in told]
    answered = [t for t in (case.acknowledged_at, case.arrived_at) if t is not None]
    area = areas.by_grid.get(case.grid_id)
    tier = Tier.at(case.tier)
    return {
        "id": case.id,
        "state": case.state.value,
        "display": {"key": key, "zh": zh, "en": en},
        "kind": case.kind,
        "channel": case.channel,
        "tier": case.tier,
        "tier_label": {"zh": TIER_LABELS[tier][0], "en": TIER_LABELS[tier][1]},
        "cancel_requested": case.cancel_requested,
        "press_count": case.press_count,
        "opened_at": case.opened_at,
        "answered_at": min(answered) if answered else None,
        "deadline_at": case.deadline_at if case.state in AWAITING_ACK_STATES else None,
        "next_step": _next_step(case.state, case.tier),
        "holder_kind": holder_kind,
        "holders": holders,
        "assigned_worker_id": case.assigned_worker_id,
        "household_id": case.household_id,
        "address": row["address"],
        "resident_name": row["resident_name"] or "",
        "lives_alone": bool(row["lives_alone"]),
        "grid_id": case.grid_id,
        "grid_name": area.grid.name if area else "",
        "community_id": area.community.id if area else None,
        "community_name": area.community.name if area else "",
        "street_id": area.street.id if area else None,
        "street_name": area.street.name if area else "",
        "note": case.note,
        "updated_at": case.updated_at,
    }


def _next_step(state: CaseState, tier_index: int) -> dict[str, str] | None:
    """What the escalation timer will do at the deadline, in words."""
    if state is CaseState.OPEN:
        return {"zh": "重新派单", "en": "dispatch again"}
    if state is not CaseState.DISPATCHED:
        return None
    if tier_index + 1 < len(TIERS):
        zh, en = TIER_LABELS[TIERS[tier_index + 1]]
        return {"zh": f"升级至{zh}", "en": f"escalate to the {en}"}
    zh, en = TIER_LABELS[TIERS[-1]]
    return {"zh": f"再次通知{zh}", "en": f"notify the {en} again"}


async def _latest_rounds(
    conn: AsyncConnection, case_ids: list[int]
) -> dict[int, list[tuple[int, str]]]:
    """Per case, the workers (and tier) of its most recent notification round."""
    if not case_ids:
        return {}
    query = (
        select(
            case_notifications.c.case_id,
            case_notifications.c.worker_id,
            case_notifications.c.tier,
            case_notifications.c.notified_at,
        )
        .where(case_notifications.c.case_id.in_(case_ids))
        .order_by(case_notifications.c.id)
    )
    by_case: dict[int, list[tuple[int, str, datetime]]] = defaultdict(list)
    for case_id, worker_id, tier, at in await conn.execute(query):
        by_case[case_id].append((worker_id, tier, at))
    latest = {}
    for case_id, told in by_case.items():
        last = max(at for _, _, at in told)
        latest[case_id] = list(dict.fromkeys((w, t) for w, t, at in told if at == last))
    return latest


async def _names(conn: AsyncConnection, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    query = select(workers.c.id, workers.c.name).where(workers.c.id.in_(sorted(ids)))
    return {row.id: row.name for row in await conn.execute(query)}


# -- households, for a phone case --------------------------------------------------------


def _digits(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.replace(func.replace(column, "-", ""), " ", "")


async def search_households(
    conn: AsyncConnection, areas: Areas, q: str, limit: int = 20
) -> list[dict[str, Any]]:
    """Households whose address, resident's name or phone, or contact's phone contains q."""
    text = q.strip()
    digits = text.replace("-", "").replace(" ", "")
    matches: list[ColumnElement[bool]] = [
        contains(households.c.address, text),
        households.c.id.in_(
            select(residents.c.household_id).where(contains(residents.c.name, text))
        ),
    ]
    if digits.lstrip("+").isdigit() and len(digits) >= 3:
        matches += [
            households.c.id.in_(
                select(residents.c.household_id).where(contains(_digits(residents.c.phone), digits))
            ),
            households.c.id.in_(
                select(emergency_contacts.c.household_id).where(
                    contains(_digits(emergency_contacts.c.phone), digits)
                )
            ),
        ]
    query = (
        select(
            households.c.id, households.c.grid_id, households.c.address, households.c.lives_alone
        )
        .where(or_(*matches))
        .order_by(households.c.id)
        .limit(limit)
    )
    found = [dict(r) for r in (await conn.execute(query)).mappings()]
    ids = [h["id"] for h in found]
    people: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for household_id, name, phone in await conn.execute(
        select(residents.c.household_id, residents.c.name, residents.c.phone)
        .where(residents.c.household_id.in_(ids))
        .order_by(residents.c.id)
    ):
        people[household_id].append({"name": name, "phone": phone})
    contacts: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for household_id, name, relation, phone in await conn.execute(
        select(
            emergency_contacts.c.household_id,
            emergency_contacts.c.name,
            emergency_contacts.c.relation,
            emergency_contacts.c.phone,
        )
        .where(emergency_contacts.c.household_id.in_(ids))
        .order_by(emergency_contacts.c.id)
    ):
        contacts[household_id].append({"name": name, "relation": relation, "phone": phone})
    active: dict[int, int] = {}
    for household_id, case_id in await conn.execute(
        select(cases.c.household_id, func.max(cases.c.id))
        .where(cases.c.household_id.in_(ids), cases.c.state.in_([s.value for s in ACTIVE_STATES]))
        .group_by(cases.c.household_id)
    ):
        active[household_id] = case_id
    for household in found:
        area = areas.by_grid.get(household["grid_id"])
        household["lives_alone"] = bool(household["lives_alone"])
        household["grid_name"] = area.grid.name if area else ""
        household["community_name"] = area.community.name if area else ""
        household["street_name"] = area.street.name if area else ""
        household["residents"] = people.get(household["id"], [])
        household["emergency_contacts"] = contacts.get(household["id"], [])
        household["active_case_id"] = active.get(household["id"])
    return found


# -- device and facility health ----------------------------------------------------------


async def system_health(
    conn: AsyncConnection,
    grid_ids: Sequence[int] | None,
    now: datetime,
    *,
    wellbeing: bool = True,
) -> dict[str, Any]:
    """Offline devices, low batteries, edges needing a look, quarantine, open tasks by kind.

    Devices and tasks follow the grid filter (a device's grid is its household's, or its
    own for a gate or a bin); edges and quarantine are the whole hub's. ``wellbeing``:
    welfare checks and check-in calls are counted too (not for an admin: issue #15).
    """
    return {
        "now": now,
        **await _device_health(conn, grid_ids),
        "edges": await _edges(conn, now),
        "quarantine": await _quarantine(conn, now),
        "open_tasks": await _open_tasks(conn, grid_ids, wellbeing),
    }


async def _device_health(conn: AsyncConnection, grid_ids: Sequence[int] | None) -> dict[str, Any]:
    grid = func.coalesce(households.c.grid_id, devices.c.grid_id)
    base = (
        select(
            devices.c.id,
            devices.c.profile,
            devices.c.place,
            devices.c.edge_id,
            devices.c.last_seen,
            devices.c.battery_pct,
            households.c.address,
            grid.label("grid_id"),
            device_state.c.offline_reason,
            device_state.c.online_changed_at,
        )
        .join_from(devices, households, devices.c.household_id == households.c.id, isouter=True)
        .join(device_state, device_state.c.device_id == devices.c.id, isouter=True)
        .where(devices.c.retired_at.is_(None))
    )
    if grid_ids is not None:
        base = base.where(grid.in_(sorted(grid_ids)))
    offline = and_(devices.c.online.is_(False), devices.c.last_seen.is_not(None))
    low = devices.c.battery_pct <= LOW_BATTERY_PCT

    async def listed(
        condition: ColumnElement[bool], order: Any
    ) -> tuple[list[dict[str, Any]], int]:
        query = base.where(condition)
        total = (
            await conn.execute(select(func.count()).select_from(query.subquery()))
        ).scalar_one()
        rows = (await conn.execute(query.order_by(order, devices.c.id).limit(LISTED))).mappings()
        return [dict(r) for r in rows], int(total)

    offline_rows, offline_total = await listed(offline, devices.c.last_seen)
    low_rows, low_total = await listed(low, devices.c.battery_pct)
    every = base.subquery()
    counts = (
        await conn.execute(select(func.count(), func.count().filter(every.c.last_seen.is_(None))))
    ).one()
    return {
        "devices": {"total": int(counts[0]), "never_seen": int(counts[1])},
        "offline_devices": {"total": offline_total, "rows": offline_rows},
        "low_battery": {"total": low_total, "threshold_pct": LOW_BATTERY_PCT, "rows": low_rows},
    }


async def _edges(conn: AsyncConnection, now: datetime) -> list[dict[str, Any]]:
    """Every edge's last status, with what needs a look named in ``problems``."""
    listed = []
    for edge_id, online, at, info in await conn.execute(
        select(
            edge_status.c.edge_id, edge_status.c.online, edge_status.c.at, edge_status.c.info
        ).order_by(edge_status.c.edge_id)
    ):
        info = info if isinstance(info, dict) else {}
        depth = _number(info.get("outbox_depth"))
        age = _number(info.get("oldest_unsent_age_s"))
        dropped = info.get("dropped")
        dropped_total = (
            sum(int(v) for v in dropped.values() if isinstance(v, int))
            if isinstance(dropped, dict)
            else 0
        )
        problems = []
        if not online:
            problems.append("offline")
        if depth and age is not None and age > BACKLOG_AGE_S:
            problems.append("backlog")
        if info.get("buffer_pressure") is True:
            problems.append("buffer_pressure")
        if dropped_total:
            problems.append("dropped")
        listed.append(
            {
                "edge_id": edge_id,
                "online": bool(online),
                "at": at,
                "age_s": round((now - at).total_seconds(), 1),
                "outbox_depth": depth,
                "oldest_unsent_age_s": age,
                "buffer_pressure": info.get("buffer_pressure") is True,
                "fill_pct": _number(info.get("fill_pct")),
                "dropped": dropped_total,
                "problems": problems,
            }
        )
    listed.sort(key=lambda e: (not e["problems"], e["edge_id"]))
    return listed


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


async def _quarantine(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
    since = now - timedelta(hours=24)
    total, recent = (
        await conn.execute(
            select(func.count(), func.count().filter(quarantine.c.received_at >= since))
        )
    ).one()
    latest = [
        {**dict(r), "reason": r["reason"][:300]}
        for r in (
            await conn.execute(
                select(
                    quarantine.c.id,
                    quarantine.c.received_at,
                    quarantine.c.edge_id,
                    quarantine.c.topic,
                    quarantine.c.reason,
                )
                .order_by(quarantine.c.id.desc())
                .limit(5)
            )
        ).mappings()
    ]
    return {"total": int(total), "last_24h": int(recent), "latest": latest}


async def _open_tasks(
    conn: AsyncConnection, grid_ids: Sequence[int] | None, wellbeing: bool
) -> list[dict[str, Any]]:
    query = (
        select(tasks.c.kind, tasks.c.state, func.count())
        .where(tasks.c.state != "done")
        .group_by(tasks.c.kind, tasks.c.state)
    )
    if grid_ids is not None:
        query = query.where(tasks.c.grid_id.in_(sorted(grid_ids)))
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for kind, state, number in await conn.execute(query):
        counts[kind][state] = int(number)
    return [
        {
            "kind": kind,
            "zh": zh,
            "en": en,
            "open": counts[kind].get("open", 0),
            "acknowledged": counts[kind].get("acknowledged", 0),
        }
        for kind, (zh, en) in TASK_KIND_LABELS.items()
        if wellbeing or kind not in WELLBEING_TASK_KINDS
    ]
