"""``python -m hub import``: import the street office's registers from the shell.

Takes the office's XLSX workbook and/or CSV files (a CSV file's name names its sheet:
``住户.csv`` or ``households.csv``). A dry run unless ``--commit``: every problem is
printed with its sheet, row and column, and nothing is written; with ``--commit`` the
files are imported all or nothing. Importing the same corrected file again changes only
what changed. ``--medical-notes`` is the explicitly authorised path for 健康备注 (each
household's write is audited). The actor in the audit log is ``cli:<login user>``.

The database comes from the hub's configuration file and ``HUB__...`` environment, and is
migrated first, so this works on a fresh install before the hub has ever started.
Exit status: 0 imported (or a clean dry run), 1 problems found, 2 usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from contract.config_file import ConfigError, load_config
from hub.db.engine import create_engine
from hub.db.migrate import upgrade_to_head
from hub.domain.access import Principal, Role
from hub.services.office_import import ImportFile, ImportReport, import_files
from hub.services.registry import known_profiles
from hub.services.sheet_files import MAX_BYTES


class _ImportSettings(BaseModel):
    """The fields this command needs; the rest of the hub's file is not checked here."""

    model_config = {"extra": "ignore"}
    database_url: str = "sqlite+aiosqlite:///var/hub/hub.db"
    profiles_dir: Path = Path("device_profiles")


def _say(text: str) -> None:
    print(text)  # noqa: T201 - a console command talks on the console


def print_report(report: ImportReport) -> None:
    for problem in report.problems:
        _say(f"问题 / problem: {problem}")
    for warning in report.warnings:
        _say(f"注意 / warning: {warning}")
    for sheet, tally in report.counts.items():
        _say(
            f"{sheet}: created {tally.created}, updated {tally.updated}, "
            f"unchanged {tally.unchanged} / 新增 {tally.created}，修改 {tally.updated}，"
            f"不变 {tally.unchanged}"
        )
    if report.problems:
        _say(
            f"{len(report.problems)} problems; nothing was written / "
            f"共 {len(report.problems)} 个问题，未写入任何数据"
        )
    elif report.committed:
        _say(f"imported: {report.changes} changes / 导入完成：{report.changes} 处变更")
    else:
        _say(
            f"dry run: no problems, {report.changes} changes would be made; add --commit / "
            f"试运行无问题，将有 {report.changes} 处变更；加 --commit 正式导入"
        )


async def _run(
    settings: _ImportSettings, files: list[ImportFile], commit: bool, medical_notes: bool
) -> ImportReport:
    engine = create_engine(settings.database_url)
    try:
        actor = Principal(kind="cli", name=getpass.getuser(), role=Role.ADMIN)
        profiles = await asyncio.to_thread(known_profiles, settings.profiles_dir)
        return await import_files(
            engine,
            actor,
            files,
            profiles=profiles,
            now=datetime.now(UTC),
            commit=commit,
            medical_notes=medical_notes,
        )
    finally:
        await engine.dispose()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hub import",
        description="Import the office's registers (XLSX workbook or CSV files): a dry run "
        "unless --commit. Template: docs/registry-template.xlsx.",
    )
    parser.add_argument("files", nargs="+", type=Path, help="XLSX and/or CSV files")
    parser.add_argument("--config", "-c", help="the hub's YAML configuration file")
    parser.add_argument("--commit", action="store_true", help="write (default: a dry run)")
    parser.add_argument(
        "--medical-notes",
        action="store_true",
        help="authorise importing 健康备注 (medical notes); audited per household",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_config(args.config, _ImportSettings, env_prefix="HUB")
    except ConfigError as err:
        print(f"hub: configuration error:\n{err}", file=sys.stderr)  # noqa: T201
        return 2
    files = []
    for path in args.files:
        try:
            with path.open("rb") as handle:
                files.append(ImportFile(path.name, handle.read(MAX_BYTES + 1)))
        except OSError as err:
            print(f"hub: cannot read {path}: {err}", file=sys.stderr)  # noqa: T201
            return 2
    upgrade_to_head(settings.database_url)
    report = asyncio.run(_run(settings, files, args.commit, args.medical_notes))
    print_report(report)
    return 1 if report.problems else 0
