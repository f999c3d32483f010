"""Ingest trust (issue #11): quarantine rows name their device, refused-and-not-kept events
are counted, service-request tasks count repeat presses.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("device_id", sa.String(length=64), nullable=True))
        batch.create_index(
            batch.f("ix_quarantine_edge_id_device_id"), ["edge_id", "device_id"], unique=False
        )
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("press_count", sa.Integer(), server_default=sa.text("1"), nullable=False)
        )
    op.create_table(
        "quarantine_dropped",
        sa.Column("edge_id", sa.String(length=64), nullable=False),
        sa.Column("cause", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("edge_id", "cause", name=op.f("pk_quarantine_dropped")),
    )


def downgrade() -> None:
    op.drop_table("quarantine_dropped")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("press_count")
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_index(batch.f("ix_quarantine_edge_id_device_id"))
        batch.drop_column("device_id")
