"""Facilities (issue #3): door access log, parcels in lockers, water meters' night aggregates.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-02 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "door_access_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.String(length=64), nullable=True),
        sa.Column("card_id", sa.String(length=64), nullable=True),
        sa.Column("similarity", sa.Float(), nullable=True),
        sa.Column("seconds", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_door_access_log")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_door_access_log_device_id_at"), "door_access_log", ["device_id", "at"])
    op.create_table(
        "parcels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("compartment", sa.Integer(), nullable=False),
        sa.Column("parcel_id", sa.String(length=64), nullable=False),
        sa.Column("household_id", sa.Integer(), nullable=True),
        sa.Column("deposited_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("picked_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivery_task_id", sa.Integer(), nullable=True),
        sa.Column(
            "notice_state", sa.String(length=8), server_default=sa.text("'none'"), nullable=False
        ),
        sa.Column("notice_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("notice_error", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("noticed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["households.id"],
            name=op.f("fk_parcels_household_id_households"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parcels")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_parcels_device_id_parcel_id"), "parcels", ["device_id", "parcel_id"])
    op.create_index(
        op.f("ix_parcels_household_id_deposited_at"), "parcels", ["household_id", "deposited_at"]
    )
    op.create_index(
        op.f("ix_parcels_picked_up_at_overdue_at_deposited_at"),
        "parcels",
        ["picked_up_at", "overdue_at", "deposited_at"],
    )
    op.create_index(op.f("ix_parcels_notice_state"), "parcels", ["notice_state"])
    op.create_table(
        "water_nights",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("night", sa.Date(), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.Column("zero_readings", sa.Integer(), nullable=False),
        sa.Column("min_flow_m3h", sa.Float(), nullable=True),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_water_nights")),
        sa.UniqueConstraint("device_id", "night", name=op.f("uq_water_nights_device_id_night")),
    )
    op.create_index(
        op.f("ix_water_nights_evaluated_at_ends_at"), "water_nights", ["evaluated_at", "ends_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_water_nights_evaluated_at_ends_at"), table_name="water_nights")
    op.drop_table("water_nights")
    op.drop_index(op.f("ix_parcels_notice_state"), table_name="parcels")
    op.drop_index(op.f("ix_parcels_picked_up_at_overdue_at_deposited_at"), table_name="parcels")
    op.drop_index(op.f("ix_parcels_household_id_deposited_at"), table_name="parcels")
    op.drop_index(op.f("ix_parcels_device_id_parcel_id"), table_name="parcels")
    op.drop_table("parcels")
    op.drop_index(op.f("ix_door_access_log_device_id_at"), table_name="door_access_log")
    op.drop_table("door_access_log")
