"""The hub's database engine: async SQLAlchemy over SQLite by default, PostgreSQL later.

SQLite settings are applied on every new connection, because PRAGMAs are per connection:

* ``journal_mode=WAL`` lets the dashboard read while ingest writes;
* ``synchronous=FULL`` makes a commit durable before the hub acks an SOS to the edge
  (the edge deletes its copy on that ack, so a lost commit would lose the call);
* ``foreign_keys=ON`` because SQLite leaves them off unless asked;
* ``busy_timeout=5000`` so a writer waits for another instead of failing at once;
* ``cache_size`` of 64 MiB per connection (SQLite's default is 2 MB) and reads through a
  256 MiB ``mmap``: ingest's every chunk probes the ``events`` uid index and the device
  indexes, and at millions of rows (about 60 bytes of uid index per event) a 2 MB cache
  sent most probes to the file; the memory is taken as pages are read, not up front, and
  mapped pages are shared by every connection through the OS page cache (issue #13).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

DEFAULT_URL = "sqlite+aiosqlite:///var/hub/hub.db"

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA cache_size=-65536",  # KiB: 64 MiB
    "PRAGMA mmap_size=268435456",  # 256 MiB
)


def create_engine(url: str = DEFAULT_URL, *, echo: bool = False) -> AsyncEngine:
    """An :class:`AsyncEngine` for ``url``; for a SQLite file, its directory is created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        ensure_sqlite_directory(parsed)
    engine = create_async_engine(parsed, echo=echo)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _apply_sqlite_pragmas)
    return engine


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
