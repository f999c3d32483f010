"""CSV import of devices: every row checked, every problem reported, all or nothing.

The row rules are pure (``read_csv``/``check_rows``); the import itself runs on a real
SQLite file with the demo community, so "nothing imported" is checked in the database.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.db import schema
from hub.domain.access import Principal, Role
from hub.domain.device_rows import MAX_ROWS, Placement, RegistryView, check_rows, read_csv
from hub.services.csv_import import decode_csv, import_devices
from hub.services.errors import InvalidInput

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
PROFILES = frozenset({"cb-100"})
OPERATOR = Principal(kind="user", name="op", role=Role.OPERATOR)
HEADER = "device_id,profile,household_id,household_address,place,grid_id,edge_id,bus,address"
ADDRESS_1 = "幸福里小区3号楼2单元301室"  # household 1, grid 1


async def run_import(engine: AsyncEngine, text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    async with engine.begin() as conn:
        report = await import_devices(conn, OPERATOR, data, PROFILES, T0)
    return report.device_ids


async def device_ids(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(sa.select(schema.devices.c.id))).scalars())


async def audit_actions(engine: AsyncEngine) -> list[tuple[str, str, dict[str, object]]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(schema.audit_log.c.action, schema.audit_log.c.actor, schema.audit_log.c.after)
        )
        return [(r.action, r.actor, r.after) for r in rows]


async def test_a_good_file_is_imported_whole_with_one_audit_row(engine: AsyncEngine) -> None:
    text = (
        f"{HEADER}\n"
        "cb100-10001,cb-100,1,,卧室,,edge-a,/dev/ttyUSB0,10001\n"
        f"cb100-10002,cb-100,,{ADDRESS_1},客厅,,edge-a,/dev/ttyUSB0,10002\n"
        "gate-7,cb-100,,,7号楼门口,2,edge-a,/dev/ttyUSB1,1\n"
    )
    assert await run_import(engine, text) == ["cb100-10001", "cb100-10002", "gate-7"]
    async with engine.connect() as conn:
        rows = {
            r.id: r
            for r in await conn.execute(
                sa.select(schema.devices).where(schema.devices.c.id.in_(["cb100-10002", "gate-7"]))
            )
        }
    assert (rows["cb100-10002"].household_id, rows["cb100-10002"].place) == (1, "客厅")
    assert (rows["gate-7"].household_id, rows["gate-7"].grid_id) == (None, 2)
    [(action, actor, after)] = await audit_actions(engine)
    assert (action, actor) == ("device.import", "user:op")
    assert after["device_ids"] == ["cb100-10001", "cb100-10002", "gate-7"]
    assert after["count"] == 3


async def test_broken_rows_import_nothing_and_each_is_reported(engine: AsyncEngine) -> None:
    before = await device_ids(engine)
    text = (
        f"{HEADER}\n"
        "cb100-20001,cb-100,1,,,,edge-a,/dev/ttyUSB0,1\n"  # row 2: fine
        "cb100-20002,cb-999,1,,,,,,\n"  # row 3: unknown profile
        "cb100-20003,cb-100,99,,,,,,\n"  # row 4: unknown household
        "cb100-20004,cb-100,,,,99,,,\n"  # row 5: unknown grid
        "cb100-20001,cb-100,2,,,,,,\n"  # row 6: duplicate of row 2
        "cb100-77626,cb-100,1,,,,,,\n"  # row 7: already registered (demo seed)
        "cb100-20007,cb-100,abc,,,,,,\n"  # row 8: not a number
        "cb100-20008,cb-100,,,,,edge-a,/dev/ttyUSB0,1\n"  # row 9: same bus address as row 2
        "cb100-20009,cb-100,1,,,2,,,\n"  # row 10: household 1 is in grid 1
        "bad id!,cb-100,,,,,,,\n"  # row 11: malformed id
        "cb100-20011,cb-100,,不存在的地址,,,,,\n"  # row 12: no such address
    )
    with pytest.raises(InvalidInput) as caught:
        await run_import(engine, text)
    found = [(p.row, p.field) for p in caught.value.problems]
    assert found == [
        (3, "profile"),
        (4, "household_id"),
        (5, "grid_id"),
        (6, "device_id"),
        (7, "device_id"),
        (8, "household_id"),
        (9, "address"),
        (10, "grid_id"),
        (11, "device_id"),
        (12, "household_address"),
    ]
    messages = {p.row: p.message for p in caught.value.problems}
    assert "also in row 2" in messages[6]
    assert "already registered" in messages[7]
    assert "also in row 2" in messages[9]
    assert all(" / " in m for m in messages.values())  # English / Chinese
    assert await device_ids(engine) == before
    assert await audit_actions(engine) == []


async def test_a_file_that_fails_only_against_the_database_imports_nothing(
    engine: AsyncEngine,
) -> None:
    """Rows that are each well-formed but one names a device registered meanwhile."""
    await run_import(engine, "device_id,profile,household_id\ncb100-30001,cb-100,1\n")
    before = await device_ids(engine)
    with pytest.raises(InvalidInput) as caught:
        await run_import(
            engine, "device_id,profile,household_id\ncb100-30002,cb-100,2\ncb100-30001,cb-100,3\n"
        )
    assert [(p.row, p.field) for p in caught.value.problems] == [(3, "device_id")]
    assert await device_ids(engine) == before


async def test_excel_files_in_gb18030_and_with_a_bom_are_read(engine: AsyncEngine) -> None:
    text = f"device_id,profile,household_address,place\ncb100-40001,cb-100,{ADDRESS_1},卧室\n"
    assert await run_import(engine, text.encode("gb18030")) == ["cb100-40001"]
    bom = "\ufeffdevice_id,profile,household_id,place\ncb100-40002,cb-100,1,厨房\n"
    assert await run_import(engine, bom.encode("utf-8")) == ["cb100-40002"]


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("", "file", "the file is empty"),
        ("device_id,profile\n", "file", "no device rows"),
        ("device_id,profile,colour\nx,cb-100,red\n", "colour", "unknown column 'colour'"),
        ("device_id,place\nx,y\n", "profile", "required column 'profile' is missing"),
        ("device_id,profile,profile\nx,cb-100,cb-100\n", "profile", "appears twice"),
    ],
)
async def test_whole_file_problems(
    engine: AsyncEngine, text: str, field: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await run_import(engine, text)
    [problem] = caught.value.problems
    assert problem.field == field
    assert message in problem.message


def test_undecodable_bytes_are_refused_readably() -> None:
    with pytest.raises(InvalidInput, match="neither UTF-8 nor GB18030"):
        decode_csv(b"device_id,profile\n\xff\xfe\xfa,cb-100\n")


def test_rows_are_numbered_as_a_spreadsheet_shows_them() -> None:
    """Header row 1; blank lines count; a quoted value with a line break is one row."""
    text = 'device_id,profile,place\n"a1",cb-100,"two\nlines"\n\n,cb-100,\n'
    rows, problems = read_csv(text)
    assert problems == []
    placements, problems = check_rows(rows, RegistryView(profiles=PROFILES))
    assert placements == [Placement("a1", "cb-100", place="two\nlines")]
    assert [(p.row, p.field) for p in problems] == [(4, "device_id")]


def test_too_many_values_in_a_row_and_too_many_rows() -> None:
    _, problems = read_csv("device_id,profile\na,cb-100,extra\n")
    assert [(p.row, p.field) for p in problems] == [(2, "row")]
    big = "device_id,profile\n" + "".join(f"d{i},cb-100\n" for i in range(MAX_ROWS + 1))
    rows, problems = read_csv(big)
    assert rows == []
    assert [p.field for p in problems] == ["file"]


async def test_an_oversize_cell_and_formula_text_are_cell_problems_not_a_500(
    engine: AsyncEngine,
) -> None:
    """Issue #11/#16: a field over the csv module's 128 KiB limit, and =HYPERLINK(...)."""
    huge = "x" * (200 * 1024)
    text = (
        f"{HEADER}\n"
        f"cb100-40001,cb-100,1,,{huge},,edge-a,,\n"
        'cb100-40002,cb-100,1,,"=HYPERLINK(""http://evil.example"",""点击"")",,edge-a,,\n'
        "cb100-40003,cb-100,1,,@SUM(A1),,edge-a,,\n"
        "cb100-40004,cb-100,1,,客厅,,edge-a,,\n"
    )
    with pytest.raises(InvalidInput) as caught:
        await run_import(engine, text)
    found = [(p.row, p.field) for p in caught.value.problems]
    assert found == [(2, "place"), (3, "place"), (4, "place")]
    messages = [p.message for p in caught.value.problems]
    assert "204800 characters" in messages[0] and huge not in messages[0]
    assert all("formula" in m for m in messages[1:])
    assert not {"cb100-40001", "cb100-40004"} & await device_ids(engine)
