"""Shared hub fixtures: a real, migrated SQLite database with the demo community in it.

Migrating takes about a second and a half (more on a busy machine) and seeding a fifth of
that, for every one of hundreds of tests; so the database is migrated and seeded once per
session and seed time, and each test works on its own copy of that template file.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.db.engine import create_engine
from hub.db.migrate import upgrade_to_head
from hub.services.org import seed_demo_community

SEEDED_AT = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # a Monday, 09:00 in Shanghai


@pytest.fixture
def seed_time() -> datetime:
    """When the demo community is seeded; a test module may override it."""
    return SEEDED_AT


@pytest.fixture(scope="session")
def seeded_templates(tmp_path_factory: pytest.TempPathFactory) -> dict[datetime, Path]:
    """Seed time → a migrated, seeded template database (filled in on first use)."""
    return {}


def copy_sqlite_file(source: Path, target: Path) -> None:
    """Copy a closed SQLite database, with its WAL if one was left behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    wal = source.with_name(source.name + "-wal")
    if wal.exists():  # normally checkpointed away when the last connection closed
        shutil.copyfile(wal, target.with_name(target.name + "-wal"))


@pytest.fixture
async def engine(
    tmp_path: Path,
    seed_time: datetime,
    seeded_templates: dict[datetime, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[AsyncEngine]:
    template = seeded_templates.get(seed_time)
    if template is None:
        template = tmp_path_factory.mktemp("hub-template") / "hub.db"
        url = f"sqlite+aiosqlite:///{template}"
        upgrade_to_head(url)
        seeding = create_engine(url)
        async with seeding.begin() as conn:
            await seed_demo_community(conn, seed_time)
        await seeding.dispose()
        seeded_templates[seed_time] = template
    copy = tmp_path / "db" / "hub.db"
    copy_sqlite_file(template, copy)
    engine = create_engine(f"sqlite+aiosqlite:///{copy}")
    try:
        yield engine
    finally:
        await engine.dispose()
