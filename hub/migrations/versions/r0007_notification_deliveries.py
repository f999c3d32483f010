"""Outcome of each notification sent through an HTTP channel (WeCom, DingTalk, SMS, webhook).

Revision ID: 0007
Revises: 0002
Create Date: 2026-11-26 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_notification_deliveries_state_at"), "notification_deliveries", ["state", "at"]
    )
    op.create_index(
        op.f("ix_notification_deliveries_case_id"), "notification_deliveries", ["case_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_notification_deliveries_case_id"), table_name="notification_deliveries")
    op.drop_index(op.f("ix_notification_deliveries_state_at"), table_name="notification_deliveries")
    op.drop_table("notification_deliveries")
