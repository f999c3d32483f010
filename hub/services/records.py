"""Small helpers the registry services share: pages, search patterns, scope, snapshots.

* :func:`page` runs a query for one page and counts all matches (for ``X-Total-Count``);
* :func:`contains` turns a search text into a LIKE pattern that matches it literally;
* :func:`require_grid` raises :class:`Forbidden` when a grid worker reaches past their
  grids, with the same bilingual message everywhere;
* :func:`snapshot` makes a row fit for the audit log's before/after (JSON text).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.domain.access import Principal
from hub.services.errors import FieldProblem, Forbidden, InvalidInput, NotFound

#: What the audit log keeps instead of medical notes: the log is read more widely.
REDACTED = "[redacted]"


async def page(
    conn: AsyncConnection, query: Select[Any], limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of ``query`` (already ordered) as dicts, and the number of all matches."""
    total = (await conn.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = await conn.execute(query.limit(limit).offset(offset))
    return [dict(row) for row in rows.mappings()], int(total)


def contains(column: ColumnElement[Any], text: str) -> ColumnElement[bool]:
    """``column`` contains ``text`` literally (``%`` and ``_`` in it match themselves),
    ignoring the case of Latin letters: SQLite's LIKE does, PostgreSQL's does not, so
    ``ilike`` (``lower(…) LIKE lower(…)`` on SQLite, ILIKE on PostgreSQL) makes both agree."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.ilike(literal("%") + escaped + literal("%"), escape="\\")


def require_grid(principal: Principal, grid_id: int | None, what: str) -> None:
    """Refuse a caller who does not see ``grid_id`` (a grid worker of other grids).

    ``what`` names the record asked for, e.g. ``"household 12"``. A record of another grid
    is answered exactly as one that does not exist (:func:`not_found`, API 404), so the
    answer does not tell which ids exist in other grids (issue #11). A grid itself
    (``"grid 3"``, a filter or a field) is refused with 403 whether it exists or not.
    """
    if principal.sees_grid(grid_id):
        return
    kind, _, record_id = what.partition(" ")
    if kind == "grid":
        raise Forbidden(f"{what} is outside your grids / 该网格不在您负责的网格内")
    raise not_found(kind, record_id)


_ZH = {
    "household": "住户",
    "device": "设备",
    "resident": "居民",
    "contact": "联系人",
    "case": "工单",
    "task": "任务",
    "command": "命令",
}


def not_found(kind: str, record_id: object) -> NotFound:
    """The one answer for a record that does not exist or is outside the caller's grids."""
    zh = _ZH.get(kind, "记录")
    return NotFound(f"{kind} {record_id} not found / {zh} {record_id} 不存在")


def invalid(field: str, message: str) -> InvalidInput:
    """A 422 for one field."""
    return InvalidInput([FieldProblem(field, message)])


def snapshot(row: Mapping[str, Any], *, redact: Iterable[str] = ()) -> dict[str, Any]:
    """``row`` as JSON-able values, with the named columns redacted (if not empty)."""
    hidden = set(redact)
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in hidden and value:
            out[key] = REDACTED
        elif isinstance(value, datetime | date):
            out[key] = value.isoformat()
        elif isinstance(value, time):
            out[key] = value.strftime("%H:%M")
        else:
            out[key] = value
    return out


def changed(before: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``changes`` that differ from ``before``."""
    return {key: value for key, value in changes.items() if before.get(key) != value}
