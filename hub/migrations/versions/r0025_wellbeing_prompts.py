"""Wellbeing watch (issue #15): "are you OK?" prompts (关爱询问) before a welfare check.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | Sequence[str] | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "wellbeing_prompts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("household_id", sa.Integer(), nullable=False),
        sa.Column("silence_since", _WHEN, nullable=False),
        sa.Column("asked_at", _WHEN, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("command_id", sa.String(length=64), nullable=True),
        sa.Column("answered_at", _WHEN, nullable=True),
        sa.Column("answer", sa.String(length=16), nullable=True),
        sa.Column("welfare_task_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["households.id"],
            name=op.f("fk_wellbeing_prompts_household_id_households"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wellbeing_prompts")),
    )
    op.create_index(
        op.f("ix_wellbeing_prompts_household_id_asked_at"),
        "wellbeing_prompts",
        ["household_id", "asked_at"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_wellbeing_prompts_household_id_asked_at"), table_name="wellbeing_prompts"
    )
    op.drop_table("wellbeing_prompts")
