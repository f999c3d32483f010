"""Events refused at ingest are marked, so no history shows them as the device's (issue #11).

An event whose device is not registered behind the sending edge is quarantined, but its
row stays in ``events``: its uid is what recognises a resend as a duplicate and what the
order gate checks a later batch against. ``refused`` keeps such a row out of a device's
event list and readings, where a forged reading from another edge would otherwise show as
the device's own. A constant default needs no table copy on SQLite.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "events",
        sa.Column("refused", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("refused")
