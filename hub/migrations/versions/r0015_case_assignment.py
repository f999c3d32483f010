"""Desk board (issue #12): the worker a case was reassigned to by the hotline desk.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 06:00:00

A nullable column, added in place (``ALTER TABLE … ADD COLUMN``): rebuilding ``cases`` on
SQLite to add a foreign key would copy every case of a busy hub at start-up. The service
checks that the worker exists before it writes one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("cases", sa.Column("assigned_worker_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("assigned_worker_id")
