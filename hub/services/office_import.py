"""Import a street office's registers: levels, grids, workers, shifts, households, residents,
devices, from its own XLSX workbook or CSV files; all or nothing; idempotent.

How it runs. The whole import is one transaction: every row is resolved by its natural key
and created, changed or left alone through the same services the API uses (so the same
validation, roles and audit rows), and every problem (a cell, a reference, a rule the
service refuses) is collected with its sheet, row and column instead of stopping at the
first. Then the transaction commits only if this is not a dry run and nothing was wrong;
otherwise it rolls back, and the report lists everything. A dry run is the same run
rolled back, so it sees exactly what a commit would meet.

Natural keys, so that importing a corrected file again changes only what changed, and the
same file twice changes nothing the second time:

=============  =====================================================================
levels         district name; (district, street name); (street, community name)
grids          (community, grid name)
workers        phone number
shifts         a grid's rows are its whole weekly roster (replaced only if different);
               a desk worker's rows (no grid) are their whole desk week
households     (community, address)
residents      (household, name)
devices        device id
=============  =====================================================================

A community is named by its name; a name two streets share is refused as ambiguous.
Nothing is deleted by an import: retire or delete through the API. Medical notes are
written only with ``medical_notes=True`` (the explicitly authorised path, audited per
household); a file that carries them without it is refused with a problem per cell.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from hub.domain.access import Principal
from hub.domain.office_sheets import (
    KINDS,
    ParsedSheet,
    RawSheet,
    SheetProblem,
    kind_of,
    parse_sheet,
)
from hub.services.audit import record_audit
from hub.services.import_lookups import ImportReport, Tally
from hub.services.import_sheets import SheetImporter
from hub.services.sheet_files import UnreadableFile, read_file

__all__ = ["MAX_PROBLEMS", "ImportFile", "ImportReport", "Tally", "import_files"]

MAX_PROBLEMS = 500  # in one report; more would bury the first ones


@dataclass(frozen=True, slots=True)
class ImportFile:
    """One uploaded file: its name (a CSV's names its sheet) and its bytes."""

    name: str
    data: bytes


async def import_files(
    engine: AsyncEngine,
    actor: Principal,
    files: Sequence[ImportFile],
    *,
    profiles: frozenset[str],
    now: datetime,
    commit: bool,
    medical_notes: bool = False,
) -> ImportReport:
    """Check and apply ``files`` in one transaction; commit only if asked and all is well."""
    report = ImportReport(dry_run=not commit)
    sheets: list[ParsedSheet] = []
    for upload in files:
        report.files_sha256.append(hashlib.sha256(upload.data).hexdigest())
        try:
            raw_sheets = read_file(upload.data, _stem(upload.name))
        except UnreadableFile as err:
            report.problems.append(err.problem)
            continue
        sheets += _parsed(raw_sheets, report)
    if not sheets and not report.problems:
        report.problems.append(
            SheetProblem(
                ", ".join(f.name for f in files) or "file",
                None,
                None,
                "no sheet to import; name sheets (or CSV files) 组织架构, 网格, 工作人员, 班次, "
                "住户, 居民, 设备 / 没有可导入的工作表",
            )
        )
    if report.problems and not sheets:
        return report
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            importer = SheetImporter(conn, actor, now, report, profiles, medical_notes)
            await importer.run(sheets)
            if commit and not report.problems and report.changes == 0:
                await transaction.rollback()  # the same file again: nothing to write
                report.committed = True
            elif commit and not report.problems:
                await record_audit(
                    conn,
                    actor=actor,
                    action="registry.import",
                    target_type="import",
                    target_id=report.files_sha256[0][:16],
                    at=now,
                    after={
                        "files_sha256": report.files_sha256,
                        "sheets": report.sheets,
                        "counts": {k: vars(v) for k, v in report.counts.items()},
                        "medical_notes": medical_notes,
                    },
                )
                await transaction.commit()
                report.committed = True
            else:
                await transaction.rollback()
        except BaseException:
            await transaction.rollback()
            raise
    del report.problems[MAX_PROBLEMS:]
    return report


def _stem(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


def _parsed(raw_sheets: Sequence[RawSheet], report: ImportReport) -> list[ParsedSheet]:
    parsed = []
    for raw in raw_sheets:
        kind = kind_of(raw.name)
        if kind is None:
            if raw.header:  # an empty "Sheet2" a spreadsheet adds is not worth a word
                names = ", ".join(f"{k.zh} ({k.key})" for k in KINDS)
                report.problems.append(
                    SheetProblem(
                        raw.name,
                        None,
                        None,
                        f"unknown sheet {raw.name!r}; expected one of {names} / 未知工作表",
                    )
                )
            continue
        sheet, problems = parse_sheet(kind, raw)
        report.problems += problems
        if sheet is not None:
            parsed.append(sheet)
            report.sheets.append(raw.name)
    return parsed
