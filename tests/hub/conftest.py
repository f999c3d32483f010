"""Shared hub fixtures: a real, migrated database with the demo community in it.

Migrating takes about a second and a half (more on a busy machine) and seeding a fifth of
that, for every one of hundreds of tests; so the database is migrated once per session and
back end, seeded once per seed time (on a copy of the migrated one), and each test works
on its own copy of that template: a
copy of the SQLite file, or on PostgreSQL a database made with ``CREATE DATABASE …
TEMPLATE`` (a file-level copy inside the server, tens of milliseconds) and dropped after.
Which back end a test gets is ``db_backend`` (tests/conftest.py): every test here that
takes ``database_url`` or ``engine`` runs on both, SQLite and PostgreSQL. A module that
wants an empty (migrated, not seeded) database overrides ``seed_time`` to return None.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.db.engine import create_engine
from hub.db.migrate import upgrade_to_head
from hub.services.org import seed_demo_community
from simulators.postgres import PostgresCluster
from tests.conftest import copy_sqlite_file

SEEDED_AT = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # a Monday, 09:00 in Shanghai


@pytest.fixture
def seed_time() -> datetime | None:
    """When the demo community is seeded; a test module may override it (None: not at all,
    a migrated, empty database as a new street office starts with)."""
    return SEEDED_AT


@pytest.fixture(scope="session")
def seeded_templates(tmp_path_factory: pytest.TempPathFactory) -> dict[datetime | None, Path]:
    """Seed time → a migrated, seeded template database (filled in on first use)."""
    return {}


@pytest.fixture(scope="session")
def pg_templates() -> dict[datetime | None, str]:
    """Seed time → the name of a migrated, seeded PostgreSQL template database."""
    return {}


_database_numbers = itertools.count(1)
#: Databases of finished tests: dropped when the next one is made (one admin connection per
#: test instead of two); the last is removed with the cluster.
_finished: list[str] = []


async def pg_template(
    cluster: PostgresCluster, seed_time: datetime | None, known: dict[datetime | None, str]
) -> str:
    """The template database for ``seed_time``, made on first use: the migrated one (None)
    by migrating, a seeded one as a copy of that, seeded; the migrations (seconds) run
    once per session and back end, whatever the number of seed times."""
    name = known.get(seed_time)
    if name is None:
        base = None if seed_time is None else await pg_template(cluster, None, known)
        name = f"template_{len(known) + 1}"
        url = await cluster.create_database(name, template=base)
        await migrate_or_seed(url, seed_time)
        known[seed_time] = name
    return name


async def sqlite_template(
    seed_time: datetime | None,
    known: dict[datetime | None, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """:func:`pg_template`'s twin: a template file, a seeded one a copy of the migrated."""
    path = known.get(seed_time)
    if path is None:
        path = tmp_path_factory.mktemp("hub-template") / "hub.db"
        if seed_time is not None:
            copy_sqlite_file(await sqlite_template(None, known, tmp_path_factory), path)
        await migrate_or_seed(f"sqlite+aiosqlite:///{path}", seed_time)
        known[seed_time] = path
    return path


async def migrate_or_seed(url: str, seed_time: datetime | None) -> None:
    """Migrate an empty database (``seed_time`` None), or seed a migrated one."""
    if seed_time is None:
        upgrade_to_head(url)
        return
    seeding = create_engine(url)
    async with seeding.begin() as conn:
        await seed_demo_community(conn, seed_time)
    await seeding.dispose()  # no session may stay on a template that is copied


@pytest.fixture
async def database_url(
    request: pytest.FixtureRequest,
    db_backend: str,
    tmp_path: Path,
    seed_time: datetime | None,
    seeded_templates: dict[datetime | None, Path],
    pg_templates: dict[datetime | None, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[str]:
    """The URL of this test's own migrated, seeded database, on the test's back end."""
    if db_backend == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        template = await pg_template(cluster, seed_time, pg_templates)
        name = f"test_{next(_database_numbers)}"
        url = await cluster.create_database(name, template=template, dropping=_finished)
        _finished[:] = [name]
        yield url
        return
    template_file = await sqlite_template(seed_time, seeded_templates, tmp_path_factory)
    copy = tmp_path / "db" / "hub.db"
    copy_sqlite_file(template_file, copy)
    yield f"sqlite+aiosqlite:///{copy}"


@pytest.fixture
async def unmigrated_database_url(
    request: pytest.FixtureRequest, db_backend: str, tmp_path: Path
) -> AsyncIterator[str]:
    """The URL of a database with nothing in it, not even the schema: for migration tests."""
    if db_backend == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        name = f"test_{next(_database_numbers)}"
        url = await cluster.create_database(name, dropping=_finished)
        _finished[:] = [name]
        yield url
        return
    (tmp_path / "db").mkdir()
    yield f"sqlite+aiosqlite:///{tmp_path / 'db' / 'hub.db'}"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()
