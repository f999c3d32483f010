"""The hub's database engine: async SQLAlchemy over SQLite (the default) or PostgreSQL.

The back end is chosen by the URL alone: ``sqlite+aiosqlite:///path/hub.db`` (the embedded
default, one community, ``make demo``) or ``postgresql+asyncpg://user@host:5432/hub`` (a
city: several hub processes on one server; docs/postgres.md). The same Alembic revisions
build both.

SQLite settings are applied on every new connection, because PRAGMAs are per connection:

* ``journal_mode=WAL`` lets the dashboard read while ingest writes;
* ``synchronous=FULL`` makes a commit durable before the hub acks an SOS to the edge
  (the edge deletes its copy on that ack, so a lost commit would lose the call);
* ``foreign_keys=ON`` because SQLite leaves them off unless asked;
* ``busy_timeout=5000`` so a writer waits for another instead of failing at once.

PostgreSQL sessions get their settings at connect time (asyncpg's ``server_settings``):

* ``synchronous_commit=on``, for the same reason as ``synchronous=FULL``: the edge deletes
  an SOS on the hub's ack, so the commit must be on disk (and, with synchronous standbys
  configured, on them) before that; a server configured with ``off`` does not change it;
* ``TimeZone=UTC``, so anything the server renders as text is UTC like the hub's times;
* ``application_name``, so ``pg_stat_activity`` says which connections are the hub's;
* a connect timeout and a statement timeout, because an I/O call without one can hang a
  hub for ever (a lock held by a stuck session elsewhere, a server that stopped answering).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

DEFAULT_URL = "sqlite+aiosqlite:///var/hub/hub.db"
#: The URL drivers the hub runs on (tested); anything else is refused at start-up.
SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)

POSTGRESQL_SETTINGS = {
    "synchronous_commit": "on",
    "TimeZone": "UTC",
    "application_name": "hub",
    "statement_timeout": "30000",  # ms; the longest statement is a bulk import page
}
POSTGRESQL_CONNECT_TIMEOUT_S = 10.0


def create_engine(
    url: str = DEFAULT_URL,
    *,
    echo: bool = False,
    application_name: str = "hub",
    pool_size: int = 10,
) -> AsyncEngine:
    """An :class:`AsyncEngine` for ``url``; for a SQLite file, its directory is created."""
    parsed = make_url(url)
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise ValueError(
            f"database_url: driver {parsed.drivername!r} is not one the hub runs on "
            f"({', '.join(SUPPORTED_DRIVERS)})"
        )
    if parsed.get_backend_name() == "sqlite":
        ensure_sqlite_directory(parsed)
        engine = create_async_engine(parsed, echo=echo)
        event.listen(engine.sync_engine, "connect", _apply_sqlite_pragmas)
        return engine
    settings = {**POSTGRESQL_SETTINGS, "application_name": application_name}
    return create_async_engine(
        parsed,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,  # a server restart leaves dead connections in the pool
        connect_args={"server_settings": settings, "timeout": POSTGRESQL_CONNECT_TIMEOUT_S},
    )


def describe_url(url: str) -> str:
    """``url`` for a log line: the driver, host and database, never the password."""
    return make_url(url).render_as_string(hide_password=True)


def ensure_sqlite_directory(url: URL) -> None:
    """SQLite creates the file but not its directory; do that for file databases."""
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _apply_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()
