"""Bring the database schema up to date with Alembic, without an ``alembic.ini``.

The hub calls :func:`upgrade_to_head` at start-up, before it opens its async engine, so a
fresh install and an upgraded one start from the same schema. Alembic runs synchronously:
for SQLite the async URL the hub is configured with is translated to its sync twin
(``sqlite+aiosqlite`` → ``sqlite``, the standard library's driver); for PostgreSQL the
revisions run on an asyncpg engine through ``run_sync`` (``hub/migrations/env.py``), so the
hub needs one PostgreSQL driver, not two. That event loop is a private one in a helper
thread, so this function may be called from sync code and from inside a coroutine alike.

For developers: ``python -m hub.db.migrate revision -m "add x"`` autogenerates a revision
against ``var/hub/hub.db`` (or the URL in ``HUB_DB_URL``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from hub.db.engine import DEFAULT_URL, ensure_sqlite_directory

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

_SYNC_DRIVERS = {
    "sqlite+aiosqlite": "sqlite",
}


def sync_url(url: str) -> str:
    """The URL Alembic runs on: SQLite's sync driver; others (asyncpg) unchanged."""
    parsed = make_url(url)
    driver = _SYNC_DRIVERS.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def alembic_config(url: str) -> Config:
    """A programmatic Alembic config; the URL travels in ``attributes`` (no %-escaping)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    config.attributes["url"] = sync_url(url)
    return config


def upgrade_to_head(url: str) -> None:
    """Apply every pending revision on every branch. A no-op when current."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        ensure_sqlite_directory(parsed)
    in_thread(command.upgrade, alembic_config(url), "heads")


def in_thread(function: Callable[..., object], *args: object) -> None:
    """Run ``function`` in a helper thread and wait: env.py's ``asyncio.run`` for asyncpg
    must not meet the caller's running event loop. Its errors are raised here."""
    with ThreadPoolExecutor(1, thread_name_prefix="alembic") as pool:
        pool.submit(function, *args).result()


def main(argv: list[str]) -> int:
    url = os.environ.get("HUB_DB_URL", DEFAULT_URL)
    if argv[:1] == ["upgrade"]:
        upgrade_to_head(url)
        return 0
    if argv[:1] == ["revision"] and argv[1:2] == ["-m"] and len(argv) == 3:
        upgrade_to_head(url)
        in_thread(command.revision, alembic_config(url), argv[2], True)
        return 0
    sys.stderr.write('usage: python -m hub.db.migrate upgrade | revision -m "message"\n')
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
