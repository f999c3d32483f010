"""Alembic revisions, one file each, applied in order by :func:`hub.db.migrate.upgrade_to_head`."""
