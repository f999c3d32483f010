"""Bulk statements on the ingest path, in one round trip to the database driver.

Why here, in ``hub.db``: ingest, the case service and the device-event handlers all write
and read in batches, and the helpers know the database driver, not any feature.

Why at all: through SQLAlchemy's asyncio adapter an executemany costs several hops between
the event loop and the driver and per-row parameter handling; at thousands of events a
second that was most of the hub's ingest time. So a statement is compiled once per
dialect, each value goes through its column type's own bind processor (the stored bytes are
what SQLAlchemy would store) and the driver itself runs the batch in the caller's
transaction:

* SQLite (aiosqlite): ``executemany`` on aiosqlite's thread, one hop for the whole batch;
* PostgreSQL (asyncpg): ``executemany`` of one prepared statement, its Bind/Execute pairs
  pipelined to the server in one round trip; and for a plain ``INSERT`` of many rows, the
  binary ``COPY`` protocol (:data:`COPY_FROM_ROWS` rows or more), which is cheaper still
  per row on the server (no per-row statement execution).

Other drivers take SQLAlchemy's ordinary path, which stores the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import UpdateBase

#: A plain INSERT of at least this many rows goes through COPY on PostgreSQL (below it,
#: executemany's pipelined round trip costs about the same and needs no copy set-up).
COPY_FROM_ROWS = 32


@dataclass(frozen=True, slots=True)
class _DriverStatement:
    statement: UpdateBase  # kept so that its id() is never reused while cached
    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]  # per parameter: its type's processor
    #: For a plain INSERT on PostgreSQL: (table, columns in ``names`` order), for COPY.
    copy_into: tuple[str, tuple[str, ...]] | None


_driver_statements: dict[tuple[int, tuple[str, ...], str], _DriverStatement] = {}


def _fast_driver(dialect: Dialect) -> str | None:
    """ "sqlite" or "asyncpg" when the driver's own batch call can be used, else None."""
    if dialect.name == "sqlite" and dialect.paramstyle == "qmark":
        return "sqlite"
    if dialect.name == "postgresql" and dialect.driver == "asyncpg":
        return "asyncpg"
    return None


def _copy_target(
    statement: UpdateBase, names: tuple[str, ...]
) -> tuple[str, tuple[str, ...]] | None:
    """(table, columns) when ``statement`` is a plain ``insert(table)`` that COPY can do:
    no VALUES of its own (so every parameter is one column's value, no SQL around it), no
    ON CONFLICT, no RETURNING."""
    if type(statement) is not Insert or statement._values or statement._multi_values:
        return None
    if statement._returning or statement._post_values_clause is not None:
        return None
    columns = statement.table.columns
    if not names or not all(name in columns for name in names):
        return None
    return str(statement.table.name), names


async def bulk_execute(
    conn: AsyncConnection, statement: UpdateBase, rows: Sequence[Mapping[str, Any]]
) -> None:
    """``conn.execute(statement, rows)`` (an executemany), in one driver call (see above)."""
    if not rows:
        return
    dialect = conn.dialect
    driver_name = _fast_driver(dialect)
    if driver_name is None:
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
        copy_into = None
        if driver_name == "asyncpg" and set(names) == set(keys):
            copy_into = _copy_target(statement, names)
        prepared = _DriverStatement(statement, str(compiled), names, processors, copy_into)
        _driver_statements[cache_key] = prepared
    pairs = tuple(zip(prepared.names, prepared.processors, strict=True))
    params = [tuple(row[n] if p is None else p(row[n]) for n, p in pairs) for row in rows]
    driver = await _driver(conn)
    if driver_name == "sqlite":
        await driver.executemany(prepared.sql, params)
    elif prepared.copy_into is not None and len(params) >= COPY_FROM_ROWS:
        table, columns = prepared.copy_into
        await driver.copy_records_to_table(table, records=params, columns=list(columns))
    else:
        await driver.executemany(prepared.sql, params)


async def _driver(conn: AsyncConnection) -> Any:
    """The driver's connection under ``conn``, inside the caller's transaction.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement; a batch that
    came first would otherwise run outside the transaction (committed even if the caller
    rolls back). One cheap statement through SQLAlchemy makes it begin.
    """
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    if conn.dialect.name == "postgresql" and not driver.is_in_transaction():
        await conn.exec_driver_sql("SELECT 1")
    return driver


@dataclass(frozen=True, slots=True)
class _DriverQuery:
    statement: Select[Any]  # kept so that its id() is never reused while cached
    compiled: SQLCompiler
    results: tuple[Callable[[Any], Any] | None, ...]  # per column: its type's processor


_driver_queries: dict[tuple[int, str], _DriverQuery] = {}


async def select_rows(
    conn: AsyncConnection, statement: Select[Any], params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """``conn.execute(statement, params).all()`` as plain tuples, in one driver call.

    For module-level queries on the ingest path (see above for why); an ``expanding`` IN
    parameter is expanded by SQLAlchemy itself, and bind and result values go through the
    column types' own processors.
    """
    dialect = conn.dialect
    driver_name = _fast_driver(dialect)
    if driver_name is None:
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
    driver = await _driver(conn)
    if driver_name == "sqlite":
        rows = await driver.execute_fetchall(state.statement, bound)
    else:
        rows = await driver.fetch(state.statement, *bound)
    convert = prepared.results
    return [
        tuple(v if p is None else p(v) for p, v in zip(convert, row, strict=True)) for row in rows
    ]
