"""Join the branches that the trust boundary (0011, 0012), the live feed and desk board
(0014, 0015), the four registry levels (0016) and the wellbeing watch (0017) were built on
in parallel, and the device state (0009) left beside the facilities (0010) last time, so the
history has one head again.

Parallel branches run in no fixed order: when 0011 (which rebuilds ``tasks`` in SQLite's
batch mode) ran after 0014, the live feed's triggers on ``tasks`` were dropped with the old
table. They are created here again when missing, so a migrated database is whole whatever
the order (the hub also checks at start-up, ``hub.notify.stream``).

Revision ID: 0018
Revises: 0009, 0011, 0012, 0015, 0016, 0017
Create Date: 2026-12-07 07:30:00
"""

from collections.abc import Sequence

from alembic import op

from hub.db.schema import live_feed_triggers

revision: str = "0018"
down_revision: str | Sequence[str] | None = ("0009", "0011", "0012", "0015", "0016", "0017")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # PostgreSQL alters tables in place, so its triggers were never lost; creating them
    # again when missing is harmless there and keeps the two back ends alike.
    for trigger in live_feed_triggers(op.get_bind().dialect.name):
        op.execute(trigger)


def downgrade() -> None:
    pass
