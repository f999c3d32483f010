"""Hub replicas (issue #14): the table in which replicas show they are alive.

Each ingesting replica bumps its row's ``beat`` every heartbeat; the others share the
edges out among the replicas whose beat they saw move lately (``hub.replicas``).

Revision ID: 0023
Revises: 0019
Create Date: 2026-12-07 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

_WHEN = sa.DateTime(timezone=True)

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hub_replicas",
        sa.Column("replica_id", sa.String(64), primary_key=True),
        sa.Column("beat", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("ready", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("seen_at", _WHEN, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hub_replicas")
