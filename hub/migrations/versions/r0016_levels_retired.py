"""Districts, streets and communities can be retired (issue #16).

Adds ``retired_at`` to ``districts``, ``streets`` and ``communities``: the registry API
creates, changes and retires the three levels above the grids, and a retired level keeps
its row (grids, cases and the audit log refer to it). Adding a nullable column needs no
table copy on SQLite.

Revision ID: 0016
Revises: 0010
Create Date: 2026-12-07 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("districts", "streets", "communities")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("retired_at")
