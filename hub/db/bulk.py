"""Bulk statements on the ingest path, in one round trip to SQLite's driver.

Why here, in ``hub.db``: ingest, the case service and the device-event handlers all write
and read in batches, and the helpers know the database driver, not any feature. On other
databases they take SQLAlchemy's ordinary path (a PostgreSQL equivalent belongs here too).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import UpdateBase


@dataclass(frozen=True, slots=True)
class _DriverStatement:
    statement: UpdateBase  # kept so that its id() is never reused while cached
    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]  # per parameter: its type's processor


_driver_statements: dict[tuple[int, tuple[str, ...], str], _DriverStatement] = {}


async def bulk_execute(
    conn: AsyncConnection, statement: UpdateBase, rows: Sequence[Mapping[str, Any]]
) -> None:
    """``conn.execute(statement, rows)`` (an executemany), in one round trip on SQLite.

    Why: through SQLAlchemy's asyncio adapter an executemany costs several hops to
    aiosqlite's thread and per-row parameter handling; at thousands of events a second
    that was most of the hub's ingest time. On SQLite the statement is compiled once,
    each value goes through its column type's own bind processor (so the stored bytes are
    what SQLAlchemy would store) and the driver runs ``executemany`` in the caller's
    transaction. Other databases take SQLAlchemy's ordinary path.
    """
    if not rows:
        return
    dialect = conn.dialect
    if dialect.name != "sqlite" or dialect.paramstyle != "qmark":
        await conn.execute(statement, list(rows))
        return
    keys = tuple(rows[0])
    cache_key = (id(statement), keys, dialect.name)
    prepared = _driver_statements.get(cache_key)
    if prepared is None or prepared.statement is not statement:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        names = tuple(compiled.positiontup or ())
        processors = tuple(
            compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names
        )
        prepared = _DriverStatement(statement, str(compiled), names, processors)
        _driver_statements[cache_key] = prepared
    pairs = tuple(zip(prepared.names, prepared.processors, strict=True))
    params = [tuple(row[n] if p is None else p(row[n]) for n, p in pairs) for row in rows]
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    await driver.executemany(prepared.sql, params)


@dataclass(frozen=True, slots=True)
class _DriverQuery:
    statement: Select[Any]  # kept so that its id() is never reused while cached
    compiled: SQLCompiler
    results: tuple[Callable[[Any], Any] | None, ...]  # per column: its type's processor


_driver_queries: dict[tuple[int, str], _DriverQuery] = {}


async def select_rows(
    conn: AsyncConnection, statement: Select[Any], params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """``conn.execute(statement, params).all()`` as plain tuples, in one round trip on SQLite.

    For module-level queries on the ingest path (see ``bulk_execute`` for why); an
    ``expanding`` IN parameter is expanded by SQLAlchemy itself, and bind and result
    values go through the column types' own processors.
    """
    dialect = conn.dialect
    if dialect.name != "sqlite" or dialect.paramstyle != "qmark":
        return [tuple(row) for row in await conn.execute(statement, dict(params))]
    cache_key = (id(statement), dialect.name)
    prepared = _driver_queries.get(cache_key)
    if prepared is None or prepared.statement is not statement:
        compiled = statement.compile(dialect=dialect)
        processors = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None)
            for c in statement.selected_columns
        )
        prepared = _DriverQuery(statement, compiled, processors)
        _driver_queries[cache_key] = prepared
    state = prepared.compiled.construct_expanded_state(dict(params))
    values = state.parameters
    bound = [
        values[n] if n not in state.processors else state.processors[n](values[n])
        for n in state.positiontup or ()
    ]
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    rows = await driver.execute_fetchall(state.statement, bound)
    convert = prepared.results
    return [
        tuple(v if p is None else p(v) for p, v in zip(convert, row, strict=True)) for row in rows
    ]
