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
# PostgreSQL's twins (see ``hub.db.schema.LIVE_FEED_TRIGGERS_POSTGRESQL`` for why the
# feed's ids are renumbered at commit); PostgreSQL never ran this revision before it had them.
_TRIGGERS_POSTGRESQL = (
    """CREATE OR REPLACE FUNCTION live_feed_case() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO live_feed (event, case_id, grid_id) VALUES ('case', NEW.id, NEW.grid_id);
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE FUNCTION live_feed_task() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO live_feed (event, task_id, grid_id) VALUES ('task', NEW.id, NEW.grid_id);
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE FUNCTION live_feed_commit_order() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(1279874629);
        UPDATE live_feed SET id = nextval(pg_get_serial_sequence('live_feed', 'id'))
            WHERE id = NEW.id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER live_feed_case_insert AFTER INSERT ON cases
    FOR EACH ROW EXECUTE FUNCTION live_feed_case()""",
    """CREATE TRIGGER live_feed_case_update AFTER UPDATE ON cases FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.tier IS DISTINCT FROM NEW.tier
        OR OLD.acknowledged_by IS DISTINCT FROM NEW.acknowledged_by
        OR OLD.cancel_requested IS DISTINCT FROM NEW.cancel_requested
        OR OLD.grid_id IS DISTINCT FROM NEW.grid_id
        OR OLD.press_count IS DISTINCT FROM NEW.press_count)
    EXECUTE FUNCTION live_feed_case()""",
    """CREATE TRIGGER live_feed_task_insert AFTER INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION live_feed_task()""",
    """CREATE TRIGGER live_feed_task_update AFTER UPDATE ON tasks FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state
        OR OLD.acknowledged_by IS DISTINCT FROM NEW.acknowledged_by
        OR OLD.grid_id IS DISTINCT FROM NEW.grid_id
        OR OLD.assigned_worker_id IS DISTINCT FROM NEW.assigned_worker_id)
    EXECUTE FUNCTION live_feed_task()""",
    """CREATE CONSTRAINT TRIGGER live_feed_commit_order AFTER INSERT ON live_feed
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION live_feed_commit_order()""",
)
_TRIGGER_NAMES = (
    "live_feed_case_insert",
    "live_feed_case_update",
    "live_feed_task_insert",
    "live_feed_task_update",
)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    # SQLite's CURRENT_TIMESTAMP is UTC text "YYYY-MM-DD HH:MM:SS"; PostgreSQL's would be in
    # the session's time zone with fractions, so it is given the same text explicitly.
    at_default = (
        "to_char(timezone('UTC', now()), 'YYYY-MM-DD HH24:MI:SS')"
        if postgresql
        else "CURRENT_TIMESTAMP"
    )
    op.create_table(
        "live_feed",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("grid_id", sa.Integer(), nullable=True),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column("at", sa.String(length=32), server_default=sa.text(at_default), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_live_feed")),
        sqlite_autoincrement=True,
    )
    for trigger in _TRIGGERS_POSTGRESQL if postgresql else _TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in _TRIGGER_NAMES:
        table = "tasks" if "task" in name else "cases"
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgresql else ""))
    op.drop_table("live_feed")
    if postgresql:
        for function in ("live_feed_case", "live_feed_task", "live_feed_commit_order"):
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
