"""SQL whose meaning differs between SQLite and PostgreSQL, pinned to one meaning on both.

Each case here was found moving the hub to PostgreSQL (issue #14, docs/postgres.md).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.db.engine import describe_url
from hub.services.records import contains

pytestmark = pytest.mark.postgres  # on SQLite and on PostgreSQL


@pytest.mark.parametrize(
    ("value", "text", "found"),
    [
        ("Block B, 幸福里", "block b", True),  # SQLite's LIKE ignores Latin case; PG's not
        ("幸福里小区3号楼", "3号楼", True),
        ("100% 完成", "100%", True),
        ("1000 完成", "100%", False),  # % and _ in the text match only themselves
        ("a_b", "a_b", True),
        ("axb", "a_b", False),
        ("C:\\path", "c:\\p", True),
    ],
)
async def test_contains_is_literal_and_ignores_latin_case(
    engine: AsyncEngine, value: str, text: str, found: bool
) -> None:
    async with engine.connect() as conn:
        result = (await conn.execute(sa.select(contains(sa.literal(value), text)))).scalar()
    assert bool(result) is found


def test_the_logged_database_url_hides_its_password() -> None:
    url = "postgresql+asyncpg://hub:s3cret-pw@db.example:5432/hub"
    assert "s3cret" not in describe_url(url)
    assert describe_url(url).startswith("postgresql+asyncpg://hub:***@db.example:5432/hub")
