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
from hub.services.errors import FieldProblem, Forbidden, InvalidInput

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
    """``column`` contains ``text`` literally (``%`` and ``_`` in it match themselves)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(literal("%") + escaped + literal("%"), escape="\\")


def require_grid(principal: Principal, grid_id: int | None, what: str) -> None:
    """Refuse a caller who does not see ``grid_id`` (a grid worker of other grids)."""
    if not principal.sees_grid(grid_id):
        raise Forbidden(
            f"{what} is outside your grids / {_ZH.get(what.split()[0], '该记录')}不在您负责的网格内"
        )


_ZH = {"household": "该住户", "device": "该设备", "resident": "该居民", "grid": "该网格"}


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
