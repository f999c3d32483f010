"""The quarantine: what ingest refused, with the reason, bounded so a flood cannot fill it.

An edge that sends garbage or events for devices that are not its own gets each refusal
kept for an operator (``GET /api/v1/quarantine``), but only so many: per sending edge and
device, per sending edge, and in the whole table. Each cap keeps the NEWEST rows (an
operator looking now wants what is happening now) and removes the oldest; whatever is
removed or never stored is counted in ``quarantine_dropped`` (per edge and cause), which
survives a restart. Refusals are written in one statement per call, so a batch of 10,000
unknown-device events costs a handful of statements, not 10,000 (and at most
``per_edge`` rows are written).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import quarantine, quarantine_dropped

PAYLOAD_CHARS = 65536  # of a whole refused message; an event's payload is far smaller


@dataclass(frozen=True, slots=True)
class QuarantineLimits:
    """Defaults as in ``hub.config.IngestSettings``, where they are explained."""

    per_device: int = 50
    per_edge: int = 1000
    max_rows: int = 10000


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused message (``device_id`` None) or event, to keep with its reason."""

    topic: str
    reason: str
    payload: bytes | str
    device_id: str | None = None


_INSERT = insert(quarantine)
_BUMP = (
    update(quarantine_dropped)
    .where(
        quarantine_dropped.c.edge_id == bindparam("b_edge"),
        quarantine_dropped.c.cause == bindparam("b_cause"),
    )
    .values(
        count=quarantine_dropped.c.count + bindparam("b_count", type_=Integer),
        last_at=bindparam("b_at"),
    )
)


async def add_refusals(
    conn: AsyncConnection,
    edge_id: str | None,
    refusals: Sequence[Refusal],
    now: datetime,
    limits: QuarantineLimits = QuarantineLimits(),
) -> int:
    """Keep ``refusals`` from ``edge_id`` within the caps; returns how many were stored."""
    if not refusals:
        return 0
    dropped: Counter[str] = Counter()
    # What this call would push out again at once is never written at all.
    by_device: Counter[str | None] = Counter()
    kept: list[Refusal] = []
    for refusal in reversed(refusals):
        if len(kept) >= limits.per_edge:
            dropped["edge_cap"] += 1
        elif by_device[refusal.device_id] >= limits.per_device:
            dropped["device_cap"] += 1
        else:
            by_device[refusal.device_id] += 1
            kept.append(refusal)
    kept.reverse()
    await conn.execute(
        _INSERT,
        [
            {
                "received_at": now,
                "edge_id": edge_id,
                "topic": r.topic,
                "reason": r.reason,
                "payload": _as_text(r.payload),
                "device_id": r.device_id,
            }
            for r in kept
        ],
    )
    dropped["device_cap"] += await _trim_devices(conn, edge_id, set(by_device), limits.per_device)
    dropped["edge_cap"] += await _trim(conn, _of_edge(edge_id), limits.per_edge)
    await _count_dropped(conn, edge_id or "", dropped, now)
    pruned = await _trim(conn, None, limits.max_rows)
    if pruned:
        await _count_dropped(conn, "", Counter({"pruned": pruned}), now)
    return len(kept)


async def add_quarantine(
    conn: AsyncConnection,
    edge_id: str | None,
    topic: str,
    reason: str,
    payload: bytes | str,
    now: datetime,
    limits: QuarantineLimits = QuarantineLimits(),
) -> int:
    """Keep one message the hub refused, with the reason, for an operator to inspect.

    Payloads that are not UTF-8 are kept as ``base64:...`` so nothing is lost. Returns the
    row's id (0 if a cap left it out, which is then counted).
    """
    if not await add_refusals(conn, edge_id, [Refusal(topic, reason, payload)], now, limits):
        return 0
    newest = select(func.max(quarantine.c.id))
    return int((await conn.execute(newest)).scalar_one())


async def list_quarantine(
    conn: AsyncConnection, limit: int = 50, offset: int = 0
) -> list[dict[str, Any]]:
    query = select(quarantine).order_by(quarantine.c.id.desc()).limit(limit).offset(offset)
    return [dict(row) for row in (await conn.execute(query)).mappings()]


async def list_dropped(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Refusals not kept, per edge and cause (``quarantine_dropped``)."""
    query = select(quarantine_dropped).order_by(
        quarantine_dropped.c.edge_id, quarantine_dropped.c.cause
    )
    return [dict(row) for row in (await conn.execute(query)).mappings()]


def _as_text(payload: bytes | str) -> str:
    """The payload as text; base64 when it is not UTF-8 or holds a NUL character, which
    PostgreSQL's text types cannot store (SQLite could; both now store the same)."""
    data = payload.encode("utf-8", errors="replace") if isinstance(payload, str) else payload
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        return text[:PAYLOAD_CHARS]
    return "base64:" + base64.b64encode(data[: PAYLOAD_CHARS // 2]).decode("ascii")


def _of_edge(edge_id: str | None) -> Any:
    column = quarantine.c.edge_id
    return column.is_(None) if edge_id is None else column == edge_id


async def _trim(conn: AsyncConnection, where: Any, keep: int) -> int:
    """Delete the oldest rows matching ``where`` (all rows if None) beyond the newest ``keep``."""
    count = select(func.count()).select_from(quarantine)
    if where is not None:
        count = count.where(where)
    excess = int((await conn.execute(count)).scalar_one()) - keep
    if excess <= 0:
        return 0
    oldest = select(quarantine.c.id).order_by(quarantine.c.id).limit(excess)
    if where is not None:
        oldest = oldest.where(where)
    await conn.execute(delete(quarantine).where(quarantine.c.id.in_(oldest.scalar_subquery())))
    return excess


async def _trim_devices(
    conn: AsyncConnection, edge_id: str | None, device_ids: set[str | None], keep: int
) -> int:
    """Trim each of ``device_ids`` (rows from ``edge_id``) to its newest ``keep`` rows."""
    column = quarantine.c.device_id
    named = sorted(d for d in device_ids if d is not None)
    crowded: list[str | None] = []
    for start in range(0, len(named), 500):
        query = (
            select(column)
            .where(_of_edge(edge_id), column.in_(named[start : start + 500]))
            .group_by(column)
            .having(func.count() > keep)
        )
        crowded.extend(str(row[0]) for row in await conn.execute(query))
    if None in device_ids:
        crowded.append(None)
    removed = 0
    for device_id in crowded:
        of_device = column.is_(None) if device_id is None else column == device_id
        removed += await _trim(conn, _of_edge(edge_id) & of_device, keep)
    return removed


async def _count_dropped(
    conn: AsyncConnection, edge_id: str, dropped: Counter[str], now: datetime
) -> None:
    t = quarantine_dropped
    for cause, count in dropped.items():
        if count <= 0:
            continue
        bumped = await conn.execute(
            _BUMP, {"b_edge": edge_id, "b_cause": cause, "b_count": count, "b_at": now}
        )
        if bumped.rowcount == 0:
            await conn.execute(
                insert(t).values(
                    edge_id=edge_id, cause=cause, count=count, first_at=now, last_at=now
                )
            )
