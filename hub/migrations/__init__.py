"""Alembic migration environment of the hub; run through :mod:`hub.db.migrate`."""
