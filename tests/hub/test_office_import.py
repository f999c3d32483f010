"""The office's registers imported from XLSX and CSV (issue #16), on SQLite and PostgreSQL.

Starts from an empty, migrated database (copied from one migrated once per session), as a
street office does. "Nothing written" is checked by comparing every table before and
after; the bad workbook is the committed template with one mistake of each kind put in.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import openpyxl
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.db import schema
from hub.domain.access import Principal, Role
from hub.services.errors import Forbidden
from hub.services.households import update_household
from hub.services.office_import import ImportFile, ImportReport, import_files
from simulators.stack import REPO_ROOT

T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
TEMPLATE = REPO_ROOT / "docs" / "registry-template.xlsx"
PROFILES = frozenset({"cb-100"})
ADMIN = Principal(kind="token", name="api", role=Role.ADMIN)


@pytest.fixture
def seed_time() -> None:
    """An empty, migrated database, as a street office starts with (tests/hub/conftest.py)."""
    return None


async def run(
    engine: AsyncEngine,
    *files: tuple[str, bytes],
    commit: bool = True,
    medical_notes: bool = True,
    actor: Principal = ADMIN,
) -> ImportReport:
    return await import_files(
        engine,
        actor,
        [ImportFile(name, data) for name, data in files],
        profiles=PROFILES,
        now=T0,
        commit=commit,
        medical_notes=medical_notes,
    )


async def everything(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in key order: what "nothing changed" is compared on."""
    async with engine.connect() as conn:
        return {
            name: [
                tuple(r) for r in await conn.execute(sa.select(table).order_by(*table.primary_key))
            ]
            for name, table in schema.metadata.tables.items()
        }


def template() -> openpyxl.Workbook:
    return openpyxl.load_workbook(TEMPLATE)


def xlsx(book: openpyxl.Workbook) -> tuple[str, bytes]:
    out = io.BytesIO()
    book.save(out)
    return "registers.xlsx", out.getvalue()


def where(report: ImportReport) -> set[tuple[str, int | None, str | None]]:
    return {(p.sheet, p.row, (p.column or "").split(" ")[0] or None) for p in report.problems}


async def test_the_template_imports_and_a_second_import_changes_nothing(
    engine: AsyncEngine,
) -> None:
    first = await run(engine, ("registry-template.xlsx", TEMPLATE.read_bytes()))
    assert first.problems == [] and first.committed
    assert {k: v.created for k, v in first.counts.items()} == {
        "levels": 3,
        "grids": 2,
        "workers": 6,
        "shifts": 26,
        "households": 2,
        "residents": 3,
        "devices": 1,
    }
    state = await everything(engine)
    assert len(state["households"]) == 2 and len(state["shifts"]) == 26
    lone = [r for r in state["households"] if r[3]]  # lives_alone
    assert [r[2] for r in lone] == ["幸福里小区3号楼2单元301室"]
    [device] = state["devices"]
    assert device[0] == "cb100-77626" and device[3] == "edge-1"  # behind its edge

    second = await run(engine, ("registry-template.xlsx", TEMPLATE.read_bytes()))
    assert second.problems == [] and second.changes == 0
    assert sum(t.unchanged for t in second.counts.values()) == 3 + 2 + 6 + 26 + 2 + 3 + 1
    assert await everything(engine) == state  # not even an audit row


async def test_a_dry_run_writes_nothing_and_reports_what_would_change(
    engine: AsyncEngine,
) -> None:
    before = await everything(engine)
    report = await run(engine, ("t.xlsx", TEMPLATE.read_bytes()), commit=False)
    assert report.problems == [] and not report.committed and report.changes == 43
    assert await everything(engine) == before


async def test_every_kind_of_bad_row_is_reported_with_sheet_row_column_and_nothing_written(
    engine: AsyncEngine,
) -> None:
    book = template()
    book["住户"].append(["幸福里社区", "第九网格", "幸福里小区1号楼101室", "是", "", ""])  # row 4
    book["住户"].append(["幸福里社区", "第一网格", "幸福里小区3号楼2单元301室", "否", "", ""])
    book["工作人员"]["B3"] = "1380000abc"  # bad phone
    book["班次"]["E2"] = "25:00"  # bad shift time
    book["班次"]["F3"] = "23:59"  # a minute uncovered every night
    book["居民"]["C2"] = '=HYPERLINK("http://evil.example","点击")'  # formula text
    book["居民"]["C3"] = "@SUM(A1)"
    before = await everything(engine)

    report = await run(engine, xlsx(book))

    found = where(report)
    assert ("住户", 4, "网格") in found  # unknown grid
    assert ("住户", 5, "地址") in found  # duplicate household (also row 2)
    assert ("工作人员", 3, "电话") in found  # bad phone number
    assert ("班次", 2, "开始") in found  # bad time
    assert ("班次", 3, "结束") in found  # 23:59
    assert ("居民", 2, "姓名") in found and ("居民", 3, "姓名") in found  # formulas
    messages = " ".join(p.message for p in report.problems)
    assert "第九网格" in messages and "row 2" in messages and "23:59" in messages
    assert not report.committed
    assert await everything(engine) == before

    corrected = template()  # the office fixes the cells and imports again
    assert (await run(engine, xlsx(corrected))).committed


async def test_a_missing_column_and_an_oversize_cell_in_csv_files(engine: AsyncEngine) -> None:
    households = "社区,网格,独居\n幸福里社区,第一网格,是\n".encode()  # no 地址
    huge = "x" * (200 * 1024)  # over the csv module's own 128 KiB field limit
    residents = f"社区,住户地址,姓名\n幸福里社区,{huge},张桂英\n".encode()
    levels = "区,街道,社区\n示范区,和平街道,幸福里社区\n".encode("gb18030")  # Excel's CSV
    before = await everything(engine)

    report = await run(
        engine, ("组织架构.csv", levels), ("住户.csv", households), ("居民.csv", residents)
    )

    assert ("住户", 1, "地址") in where(report)  # header row: the missing required column
    [oversize] = [p for p in report.problems if p.sheet == "居民"]
    assert (oversize.row, oversize.column) == (2, "住户地址 (household_address)")
    assert "204800 characters" in oversize.message
    assert await everything(engine) == before


async def test_english_headers_and_sheet_names_are_accepted(engine: AsyncEngine) -> None:
    report = await run(
        engine,
        ("levels.csv", b"district,street,community\nD,S,C\n"),
        ("grids.csv", b"community,grid\nC,G1\n"),
        ("households.csv", b"community,grid,address,lives_alone\nC,G1,Room 1,yes\n"),
    )
    assert report.problems == [] and report.counts["households"].created == 1


async def test_medical_notes_need_the_authorised_path_which_is_audited(
    engine: AsyncEngine,
) -> None:
    refused = await run(engine, ("t.xlsx", TEMPLATE.read_bytes()), medical_notes=False)
    assert [(p.sheet, p.row, p.column) for p in refused.problems] == [
        ("住户", 2, "健康备注 (medical_notes)")
    ]
    assert (await run(engine, ("t.xlsx", TEMPLATE.read_bytes()), medical_notes=True)).committed
    state = await everything(engine)
    assert [r[4] for r in state["households"]] == ["高血压，长期服药", ""]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(schema.audit_log.c.action, schema.audit_log.c.after)
                .where(schema.audit_log.c.action.in_(["medical_notes.write", "registry.import"]))
                .order_by(schema.audit_log.c.id)
            )
        ).all()
    assert [r.action for r in rows] == ["medical_notes.write", "registry.import"]
    assert "高血压" not in str(state["audit_log"])  # the log never holds the notes
    async with engine.begin() as conn:  # the plain API path stays closed to an admin
        with pytest.raises(Forbidden):
            # the first household's id: PostgreSQL's sequence kept the refused run's numbers
            await update_household(
                conn, ADMIN, state["households"][0][0], {"medical_notes": "x"}, T0
            )


async def test_a_corrected_value_is_an_update_not_a_duplicate(engine: AsyncEngine) -> None:
    assert (await run(engine, ("t.xlsx", TEMPLATE.read_bytes()))).committed
    book = template()
    book["住户"]["D3"] = "是"  # the second household now lives alone
    book["居民"]["D3"] = "13900000202"  # 李德福 got a phone
    report = await run(engine, xlsx(book))
    assert report.problems == []
    assert (report.counts["households"].updated, report.counts["residents"].updated) == (1, 1)
    assert report.changes == 2
    state = await everything(engine)
    assert len(state["households"]) == 2 and all(r[3] for r in state["households"])


async def test_a_sheet_without_a_column_leaves_that_field_alone(engine: AsyncEngine) -> None:
    assert (await run(engine, ("t.xlsx", TEMPLATE.read_bytes()))).committed
    before = await everything(engine)
    report = await run(
        engine, ("工作人员.csv", "姓名,电话,角色\n王丽,13800000001,网格员\n".encode())
    )
    assert report.problems == [] and report.changes == 0  # grids and community kept
    assert await everything(engine) == before
    device_only = "设备编号,型号,边缘网关\ncb100-77626,cb-100,edge-1\n".encode()
    report = await run(engine, ("设备.csv", device_only))
    assert report.problems == [] and report.changes == 0  # still in its household
    assert await everything(engine) == before
