"""Shared hub fixtures: a real, migrated SQLite database with the demo community in it."""

from __future__ import annotations

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


@pytest.fixture
async def engine(tmp_path: Path, seed_time: datetime) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db' / 'hub.db'}"
    upgrade_to_head(url)
    engine = create_engine(url)
    async with engine.begin() as conn:
        await seed_demo_community(conn, seed_time)
    try:
        yield engine
    finally:
        await engine.dispose()
