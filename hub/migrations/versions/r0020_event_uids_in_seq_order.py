"""Event uids sort in seq order: the seq is zero-padded to 12 digits (issue #13).

``events.uid`` (unique, the hub's identity of an event: a resend is recognised by it) was
``edge:incarnation:seq`` with the seq as written, so ``…:100000`` sorted before ``…:99999``
and every new event went into the middle of the uid index: page splits and cache misses
all over an index of millions of entries. Padded (``…:000000100000``), an edge's new
events are appended at the end of its incarnation's range. Existing rows are rewritten to
the new form here, so a resend of an event stored before the upgrade is still recognised;
a seq of 12 digits or more is already in its final form. The rewrite of a hub with a
million events takes a minute or so (one UPDATE, the index rebuilt as it goes).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DIGITS = "0123456789"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE events SET uid = substring(uid from '^(.*:)[0-9]+$') || "
            "lpad(substring(uid from '([0-9]+)$'), 12, '0') "
            "WHERE length(substring(uid from '([0-9]+)$')) < 12"
        )
        return
    # SQLite: the seq is the digits after the last colon (an incarnation may hold colons)
    op.execute(
        f"UPDATE events SET uid = rtrim(uid, '{_DIGITS}') || "
        f"printf('%012d', CAST(substr(uid, length(rtrim(uid, '{_DIGITS}')) + 1) AS INTEGER)) "
        f"WHERE length(uid) - length(rtrim(uid, '{_DIGITS}')) < 12"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE events SET uid = substring(uid from '^(.*:)[0-9]+$') || "
            "(substring(uid from '([0-9]+)$')::bigint)::text"
        )
        return
    op.execute(
        f"UPDATE events SET uid = rtrim(uid, '{_DIGITS}') || "
        f"CAST(CAST(substr(uid, length(rtrim(uid, '{_DIGITS}')) + 1) AS INTEGER) AS TEXT)"
    )
