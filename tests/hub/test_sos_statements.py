"""The SOS path runs as few SQL statements as its guarantees allow (issue #13), counted by
SQLite's own trace on a real file: a new help call from a registered button."""

from __future__ import annotations

from pathlib import Path

from bench.ingest_profile import _prepare, count_sos_statements

#: BEGIN; store the event (one INSERT … RETURNING); place it (the device, its last seen);
#: the household's open case, its place, the roster (4 reads); the case, its audit lines,
#: notifications, the button's feedback command; device state; the wellbeing watch; COMMIT.
#: It was 20 before issue #13. The next cut is the roster's four reads.
SOS_STATEMENTS = 17


async def test_one_sos_runs_at_most_the_counted_statements(tmp_path: Path) -> None:
    engine = await _prepare(tmp_path / "hub.db")
    try:
        count, statements = await count_sos_statements(engine)
    finally:
        await engine.dispose()
    assert count <= SOS_STATEMENTS, "\n".join(statements)
    assert statements[0] == "BEGIN" and statements[-1] == "COMMIT"
    assert any(s.startswith("INSERT INTO cases") for s in statements)
