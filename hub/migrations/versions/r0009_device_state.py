"""Device state (latest event, readings, online) and device supervision (offline devices
waiting to be grouped, outages) for issue #3.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "device_state",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("last_event_kind", sa.String(length=64), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("readings", sa.Text(), nullable=False),
        sa.Column("reading_times", sa.Text(), nullable=False),
        sa.Column("readings_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("online", sa.Boolean(), nullable=True),
        sa.Column("online_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("offline_reason", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_state")),
    )
    op.create_table(
        "offline_devices",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("offline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("noticed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("edge_id", sa.String(length=64), nullable=True),
        sa.Column("building", sa.String(length=200), nullable=True),
        sa.Column("grid_id", sa.Integer(), nullable=True),
        sa.Column("household_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("outage_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_offline_devices")),
    )
    op.create_index(op.f("ix_offline_devices_state"), "offline_devices", ["state"])
    op.create_table(
        "outages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_key", sa.String(length=300), nullable=False),
        sa.Column("label", sa.String(length=300), nullable=False),
        sa.Column("grid_id", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("back_online", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outages")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_outages_group_key"), "outages", ["group_key"])


def downgrade() -> None:
    op.drop_index(op.f("ix_outages_group_key"), table_name="outages")
    op.drop_table("outages")
    op.drop_index(op.f("ix_offline_devices_state"), table_name="offline_devices")
    op.drop_table("offline_devices")
    op.drop_table("device_state")
