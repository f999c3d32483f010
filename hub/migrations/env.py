"""Alembic environment: runs revisions on a synchronous engine derived from the hub's URL.

The URL comes from ``config.attributes["url"]`` (set by :mod:`hub.db.migrate`), or from
``sqlalchemy.url`` for hand-made configs. SQLite cannot ALTER most things in place, so
revisions run in batch mode there. A PostgreSQL URL names the asyncpg driver (the hub's
only PostgreSQL driver): its revisions run on an async engine through ``run_sync``, in an
event loop of their own (``hub.db.migrate`` calls us in a helper thread).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, create_engine, pool
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from hub.db.schema import JSONText, UTCDateTime, metadata

config = context.config


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render the hub's Python-side column types as the plain types they store as.

    Revisions must not import application code that may change after they are written.
    """
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, JSONText):
        return "sa.Text()"
    return False


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: set config.attributes['url'] or sqlalchemy.url")
    return str(url)


def run_offline() -> None:
    """Emit SQL instead of executing it (``alembic upgrade --sql``)."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    url = _url()
    if make_url(url).get_dialect().is_async:
        asyncio.run(_run_online_async(url))
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _run_on(connection)
    finally:
        engine.dispose()


async def _run_online_async(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_on)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
