"""Device registry and residents: where a device sits, soft retirement, birth years.

Adds to ``devices``: ``grid_id`` (grid of a device outside any household), ``bus`` and
``address`` (where the edge reaches it), ``retired_at`` (soft delete), ``updated_at``;
and to ``residents``: ``birth_year``. Batch mode, because SQLite cannot add a foreign key
in place (the table is copied, rows and all).

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-26 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("grid_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("bus", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("address", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key(op.f("fk_devices_grid_id_grids"), "grids", ["grid_id"], ["id"])
        batch.create_index(op.f("ix_devices_grid_id"), ["grid_id"], unique=False)
        batch.create_index(op.f("ix_devices_edge_id"), ["edge_id"], unique=False)
    with op.batch_alter_table("residents") as batch:
        batch.add_column(sa.Column("birth_year", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("residents") as batch:
        batch.drop_column("birth_year")
    with op.batch_alter_table("devices") as batch:
        batch.drop_index(op.f("ix_devices_edge_id"))
        batch.drop_index(op.f("ix_devices_grid_id"))
        batch.drop_constraint(op.f("fk_devices_grid_id_grids"), type_="foreignkey")
        batch.drop_column("updated_at")
        batch.drop_column("retired_at")
        batch.drop_column("address")
        batch.drop_column("bus")
        batch.drop_column("grid_id")
