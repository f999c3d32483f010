"""Join the event uids in seq order (0020, issue #13) and the hub replicas' heartbeat table
(0023, issue #14), built in parallel on 0019, so the history has one head again.

Neither rebuilds a table the live feed's triggers sit on, so nothing else is needed here.

Revision ID: 0024
Revises: 0020, 0023
Create Date: 2026-12-07 09:55:00
"""

from collections.abc import Sequence

revision: str = "0024"
down_revision: str | Sequence[str] | None = ("0020", "0023")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
