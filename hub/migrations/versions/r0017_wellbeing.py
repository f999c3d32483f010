"""Wellbeing watch (issue #15): consent, away periods, raw activity, sources, welfare checks.

Revision ID: 0017
Revises: 0010
Create Date: 2026-12-07 06:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "wellbeing_watch",
        sa.Column("household_id", sa.Integer(), nullable=False),
        sa.Column("consent", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("consent_at", _WHEN, nullable=False),
        sa.Column("consent_by", sa.String(length=100), nullable=False),
        sa.Column("consent_note", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("face_person_id", sa.String(length=64), nullable=True),
        sa.Column("check_in_hour", sa.Integer(), nullable=True),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("baseline", sa.Text(), nullable=True),
        sa.Column("baseline_day", sa.Date(), nullable=True),
        sa.Column("alerted_silence_since", _WHEN, nullable=True),
        sa.Column("check_in_day", sa.Date(), nullable=True),
        sa.Column("check_in_task_id", sa.Integer(), nullable=True),
        sa.Column("check_in_prompted_at", _WHEN, nullable=True),
        sa.Column("judged_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["households.id"],
            name=op.f("fk_wellbeing_watch_household_id_households"),
        ),
        sa.PrimaryKeyConstraint("household_id", name=op.f("pk_wellbeing_watch")),
        sa.UniqueConstraint("face_person_id", name=op.f("uq_wellbeing_watch_face_person_id")),
    )
    op.create_table(
        "wellbeing_away",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("household_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("starts_at", _WHEN, nullable=False),
        sa.Column("ends_at", _WHEN, nullable=False),
        sa.Column("note", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["households.id"],
            name=op.f("fk_wellbeing_away_household_id_households"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wellbeing_away")),
    )
    op.create_index(
        op.f("ix_wellbeing_away_household_id_ends_at"),
        "wellbeing_away",
        ["household_id", "ends_at"],
    )
    op.create_table(
        "wellbeing_activity",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("household_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wellbeing_activity")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_wellbeing_activity_household_id_at"), "wellbeing_activity", ["household_id", "at"]
    )
    op.create_index(op.f("ix_wellbeing_activity_at"), "wellbeing_activity", ["at"])
    op.create_table(
        "wellbeing_sources",
        sa.Column("household_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("last_report_at", _WHEN, nullable=True),
        sa.Column("last_activity_at", _WHEN, nullable=True),
        sa.Column("last_kwh", sa.Float(), nullable=True),
        sa.Column("last_kwh_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint(
            "household_id", "source", "device_id", name=op.f("pk_wellbeing_sources")
        ),
    )
    op.create_table(
        "welfare_checks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.Integer(), nullable=False),
        sa.Column("grid_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("evidence", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("opened_at", _WHEN, nullable=False),
        sa.Column("tier", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_escalation_at", _WHEN, nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("outcome_note", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("outcome_by", sa.String(length=100), nullable=True),
        sa.Column("closed_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["households.id"],
            name=op.f("fk_welfare_checks_household_id_households"),
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_welfare_checks_task_id_tasks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_welfare_checks")),
        sa.UniqueConstraint("task_id", name=op.f("uq_welfare_checks_task_id")),
    )
    op.create_index(
        op.f("ix_welfare_checks_closed_at_next_escalation_at"),
        "welfare_checks",
        ["closed_at", "next_escalation_at"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_welfare_checks_closed_at_next_escalation_at"), table_name="welfare_checks"
    )
    op.drop_table("welfare_checks")
    op.drop_table("wellbeing_sources")
    op.drop_index(op.f("ix_wellbeing_activity_at"), table_name="wellbeing_activity")
    op.drop_index(op.f("ix_wellbeing_activity_household_id_at"), table_name="wellbeing_activity")
    op.drop_table("wellbeing_activity")
    op.drop_index(op.f("ix_wellbeing_away_household_id_ends_at"), table_name="wellbeing_away")
    op.drop_table("wellbeing_away")
    op.drop_table("wellbeing_watch")
