"""Live feed (issue #12): the pages' stream events, durable, with triggers on cases and tasks.

Revision ID: 0014
Revises: 0010
Create Date: 2026-12-07 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Copied, not imported: a migration must not change when the schema module does.
_TRIGGERS = (
    """CREATE TRIGGER live_feed_case_insert AFTER INSERT ON cases BEGIN
        INSERT INTO live_feed (event, case_id, grid_id) VALUES ('case', NEW.id, NEW.grid_id);
    END""",
    """CREATE TRIGGER live_feed_case_update AFTER UPDATE ON cases
    WHEN OLD.state IS NOT NEW.state OR OLD.tier IS NOT NEW.tier
        OR OLD.acknowledged_by IS NOT NEW.acknowledged_by
        OR OLD.cancel_requested IS NOT NEW.cancel_requested
        OR OLD.grid_id IS NOT NEW.grid_id OR OLD.press_count IS NOT NEW.press_count
    BEGIN
        INSERT INTO live_feed (event, case_id, grid_id) VALUES ('case', NEW.id, NEW.grid_id);
    END""",
    """CREATE TRIGGER live_feed_task_insert AFTER INSERT ON tasks BEGIN
        INSERT INTO live_feed (event, task_id, grid_id) VALUES ('task', NEW.id, NEW.grid_id);
    END""",
    """CREATE TRIGGER live_feed_task_update AFTER UPDATE ON tasks
    WHEN OLD.state IS NOT NEW.state OR OLD.acknowledged_by IS NOT NEW.acknowledged_by
        OR OLD.grid_id IS NOT NEW.grid_id
        OR OLD.assigned_worker_id IS NOT NEW.assigned_worker_id
    BEGIN
        INSERT INTO live_feed (event, task_id, grid_id) VALUES ('task', NEW.id, NEW.grid_id);
    END""",
)
_TRIGGER_NAMES = (
    "live_feed_case_insert",
    "live_feed_case_update",
    "live_feed_task_insert",
    "live_feed_task_update",
)


def upgrade() -> None:
    op.create_table(
        "live_feed",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("grid_id", sa.Integer(), nullable=True),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column(
            "at", sa.String(length=32), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_live_feed")),
        sqlite_autoincrement=True,
    )
    for trigger in _TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    for name in _TRIGGER_NAMES:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("live_feed")
