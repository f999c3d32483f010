"""Command deadlines (issue #11): every device command has a time after which it is
``expired`` and never executed; the hub stops resending it then.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-07 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: rows written before this revision, and button feedback queued by the case
    # service, get theirs from the device's profile when the dispatcher first publishes.
    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("commands") as batch:
        batch.drop_column("deadline_at")
