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
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.db.schema import (
    communities,
    devices,
    edges,
    grids,
    households,
    residents,
    streets,
    workers,
)
from hub.domain.access import Principal
from hub.domain.device_rows import Placement
from hub.domain.office_sheets import (
    DEVICES,
    GRIDS,
    HOUSEHOLDS,
    KINDS,
    LEVELS,
    RESIDENTS,
    SHIFTS,
    WORKERS,
    ParsedSheet,
    RawSheet,
    Row,
    SheetKind,
    SheetProblem,
    kind_of,
    parse_sheet,
)
from hub.services import households as household_service
from hub.services import levels as level_service
from hub.services import registry, rosters, staff
from hub.services.audit import record_audit
from hub.services.errors import InvalidInput, ServiceError
from hub.services.rosters import ShiftInput
from hub.services.sheet_files import UnreadableFile, read_file

T = TypeVar("T")
MAX_PROBLEMS = 500  # in one report; more would bury the first ones

#: A service's field name → the sheet column it came from, per sheet.
_COLUMNS: dict[str, dict[str, str]] = {
    "grids": {
        "community_id": "community",
        "name": "grid",
        "backup_worker_id": "backup_worker_phone",
    },
    "workers": {
        "community_id": "community",
        "street_id": "street",
        "grid_ids": "grids",
        "role": "role",
        "phone": "phone",
        "name": "name",
    },
    "shifts": {
        "worker_id": "worker_phone",
        "grid_id": "grid",
        "start_local": "start",
        "end_local": "end",
        "weekday": "weekday",
        "role": "role",
    },
    "households": {"grid_id": "grid", "address": "address", "medical_notes": "medical_notes"},
    "residents": {"household_id": "household_address", "phone": "phone", "name": "name"},
    "devices": {
        "profile": "profile",
        "household_id": "household_address",
        "household_address": "household_address",
        "grid_id": "grid",
        "edge_id": "edge_id",
        "bus": "bus",
        "address": "bus_address",
        "device_id": "device_id",
    },
}


@dataclass
class Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class ImportReport:
    """What an import did (or, in a dry run or when refused, would have done)."""

    dry_run: bool
    committed: bool = False
    files_sha256: list[str] = field(default_factory=list)
    sheets: list[str] = field(default_factory=list)
    counts: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    problems: list[SheetProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return sum(t.created + t.updated for t in self.counts.values())


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
            importer = _Importer(conn, actor, now, report, profiles, medical_notes)
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


class _Importer:
    """One import's state: ids found or made so far, by natural key, and the report."""

    def __init__(
        self,
        conn: AsyncConnection,
        actor: Principal,
        now: datetime,
        report: ImportReport,
        profiles: frozenset[str],
        medical_notes: bool,
    ) -> None:
        self.conn = conn
        self.actor = actor
        self.now = now
        self.report = report
        self.profiles = profiles
        self.medical_notes = medical_notes
        self.community_ids: dict[str, set[int]] = defaultdict(set)
        self.street_ids: dict[str, set[int]] = defaultdict(set)
        self.households_seen: dict[tuple[int, str], int] = {}  # → first row
        self.new_grids: set[int] = set()
        self.levels_seen: set[tuple[str, int]] = set()  # (kind, id) counted once

    async def run(self, sheets: Sequence[ParsedSheet]) -> None:
        by_kind: dict[str, list[ParsedSheet]] = defaultdict(list)
        for sheet in sheets:
            by_kind[sheet.kind.key].append(sheet)
        steps: dict[str, Callable[[ParsedSheet], Awaitable[None]]] = {
            LEVELS.key: self.levels,
            GRIDS.key: self.grids,
            WORKERS.key: self.workers,
            SHIFTS.key: self.shifts,
            HOUSEHOLDS.key: self.households,
            RESIDENTS.key: self.residents,
            DEVICES.key: self.devices,
        }
        for kind in KINDS:
            for sheet in by_kind.get(kind.key, []):
                await steps[kind.key](sheet)
            if kind is WORKERS:
                for sheet in by_kind.get(GRIDS.key, []):
                    await self.grid_backups(sheet)

    # -- problems ---------------------------------------------------------------------
    def problem(self, row: Row, column: str | None, message: str) -> None:
        label = _label(row, column)
        self.report.problems.append(SheetProblem(row.sheet, row.number, label, message))

    def refused(self, row: Row, err: ServiceError | IntegrityError) -> None:
        """A service said no: one problem per field it named, in the row's columns."""
        columns = _COLUMNS.get(_kind_key(row), {})
        if isinstance(err, InvalidInput):
            for p in err.problems:
                name = p.field.split(".")[-1]
                self.problem(row, columns.get(name), p.message)
        elif isinstance(err, IntegrityError):
            self.problem(row, None, "conflicts with another record / 与已有记录冲突")
        else:
            self.problem(row, None, str(err))

    async def attempt(self, row: Row, call: Awaitable[T]) -> T | None:
        try:
            return await call
        except (ServiceError, IntegrityError) as err:
            self.refused(row, err)
            return None

    def tally(self, kind: SheetKind, outcome: str) -> None:
        count = self.report.counts[kind.key]
        setattr(count, outcome, getattr(count, outcome) + 1)

    # -- lookups ----------------------------------------------------------------------
    async def community(self, row: Row, column: str = "community") -> int | None:
        name = row.text(column)
        if not name or column in row.bad:
            return None
        ids = set(self.community_ids.get(name, set()))
        if not ids:
            query = select(communities.c.id).where(
                communities.c.name == name, communities.c.retired_at.is_(None)
            )
            ids = {r.id for r in await self.conn.execute(query)}
        if not ids:
            self.problem(row, column, f"unknown community {name!r} / 未知社区 {name!r}")
            return None
        if len(ids) > 1:
            self.problem(
                row,
                column,
                f"{len(ids)} communities are named {name!r}; rename one / 有 {len(ids)} 个同名社区",
            )
            return None
        return next(iter(ids))

    async def street(self, row: Row) -> int | None:
        name = row.text("street")
        if not name or "street" in row.bad:
            return None
        ids = set(self.street_ids.get(name, set()))
        if not ids:
            query = select(streets.c.id).where(
                streets.c.name == name, streets.c.retired_at.is_(None)
            )
            ids = {r.id for r in await self.conn.execute(query)}
        if len(ids) != 1:
            what = "unknown street" if not ids else f"{len(ids)} streets are named"
            self.problem(row, "street", f"{what} {name!r} / 街道 {name!r} 不存在或重名")
            return None
        return next(iter(ids))

    async def grid(self, row: Row, community_id: int | None, name: str) -> int | None:
        if community_id is None:
            return None
        query = select(grids.c.id).where(grids.c.community_id == community_id, grids.c.name == name)
        found = (await self.conn.execute(query)).scalar()
        if found is None:
            self.problem(
                row,
                "grid" if "grid" in _keys(row) else "grids",
                f"unknown grid {name!r} in community {row.text('community')!r} / "
                f"社区 {row.text('community')!r} 没有网格 {name!r}",
            )
            return None
        return int(found)

    async def worker_by_phone(self, row: Row, column: str) -> int | None:
        phone = row.get(column)
        if not phone:
            return None
        query = select(workers.c.id).where(workers.c.phone == phone)
        found = (await self.conn.execute(query)).scalar()
        if found is None:
            self.problem(
                row, column, f"no worker with phone {phone} / 没有电话为 {phone} 的工作人员"
            )
            return None
        return int(found)

    async def household(self, row: Row, community_id: int | None) -> int | None:
        address = row.text("household_address")
        if community_id is None or not address or "household_address" in row.bad:
            return None
        found = await self._household_at(community_id, address)
        if found is None:
            self.problem(
                row,
                "household_address",
                f"no household at {address!r} in {row.text('community')!r} / 找不到该地址的住户",
            )
            return None
        return int(found["id"])

    async def _household_at(self, community_id: int, address: str) -> dict[str, Any] | None:
        query = (
            select(households)
            .join(grids, grids.c.id == households.c.grid_id)
            .where(grids.c.community_id == community_id, households.c.address == address)
        )
        found = (await self.conn.execute(query)).mappings().first()
        return dict(found) if found is not None else None

    # -- sheets -----------------------------------------------------------------------
    async def levels(self, sheet: ParsedSheet) -> None:
        for row in sheet.rows:
            if row.bad:
                continue
            district, street, community = (row.text(k) for k in ("district", "street", "community"))
            if community and not street:
                self.problem(row, "street", "a community needs its street / 社区须填写所属街道")
                continue
            district_id = await self.level(row, level_service.DISTRICT, {"name": district})
            if district_id is None or not street:
                continue
            street_id = await self.level(
                row, level_service.STREET, {"district_id": district_id, "name": street}
            )
            if street_id is None:
                continue
            self.street_ids[street].add(street_id)
            if community:
                community_id = await self.level(
                    row, level_service.COMMUNITY, {"street_id": street_id, "name": community}
                )
                if community_id is not None:
                    self.community_ids[community].add(community_id)

    async def level(
        self, row: Row, level: level_service.Level, key: Mapping[str, Any]
    ) -> int | None:
        table = level.table
        query = select(table.c.id, table.c.retired_at).where(
            *(table.c[k] == v for k, v in key.items())
        )
        found = (await self.conn.execute(query)).first()
        if found is not None:
            if found.retired_at is not None:
                self.problem(
                    row,
                    level.kind if level.kind != "district" else "district",
                    f"{level.kind} {key['name']!r} is retired / {level.zh} {key['name']!r} 已撤销",
                )
                return None
            if (level.kind, int(found.id)) not in self.levels_seen:
                self.levels_seen.add((level.kind, int(found.id)))
                self.tally(LEVELS, "unchanged")
            return int(found.id)
        created = await self.attempt(
            row, level_service.create_level(self.conn, level, self.actor, key, self.now)
        )
        if created is None:
            return None
        self.levels_seen.add((level.kind, int(created["id"])))
        self.tally(LEVELS, "created")
        return int(created["id"])

    async def grids(self, sheet: ParsedSheet) -> None:
        for row in sheet.rows:
            community_id = await self.community(row)
            if community_id is None or row.bad:
                continue
            name = row.text("grid")
            query = select(grids.c.id).where(
                grids.c.community_id == community_id, grids.c.name == name
            )
            if (await self.conn.execute(query)).first() is not None:
                continue  # counted once its backup is settled (grid_backups)
            created = await self.attempt(
                row,
                staff.create_grid(
                    self.conn,
                    self.actor,
                    community_id=community_id,
                    name=name,
                    backup_worker_id=None,
                    now=self.now,
                ),
            )
            if created is not None:
                self.tally(GRIDS, "created")
                self.new_grids.add(int(created["id"]))

    async def grid_backups(self, sheet: ParsedSheet) -> None:
        """After the workers: each grid's backup worker, by phone (empty: none)."""
        for row in sheet.rows:
            if row.bad:
                continue
            community_id = await self._quiet_community(row)
            if community_id is None:
                continue
            query = select(grids.c.id, grids.c.backup_worker_id).where(
                grids.c.community_id == community_id, grids.c.name == row.text("grid")
            )
            grid = (await self.conn.execute(query)).first()
            if grid is None:
                continue
            backup = None
            if "backup_worker_phone" in _keys(row) and row.get("backup_worker_phone"):
                backup = await self.worker_by_phone(row, "backup_worker_phone")
                if backup is None:
                    continue
            elif "backup_worker_phone" not in _keys(row):
                backup = grid.backup_worker_id
            made = grid.id in self.new_grids  # counted as created; its backup is part of it
            if backup == grid.backup_worker_id:
                if not made:
                    self.tally(GRIDS, "unchanged")
                continue
            changed = await self.attempt(
                row,
                staff.update_grid(
                    self.conn, self.actor, grid.id, {"backup_worker_id": backup}, self.now
                ),
            )
            if changed is not None and not made:
                self.tally(GRIDS, "updated")

    async def _quiet_community(self, row: Row) -> int | None:
        """The community of a row already checked (problems were reported the first time)."""
        name = row.text("community")
        ids = set(self.community_ids.get(name, set()))
        if not ids:
            query = select(communities.c.id).where(
                communities.c.name == name, communities.c.retired_at.is_(None)
            )
            ids = {r.id for r in await self.conn.execute(query)}
        return next(iter(ids)) if len(ids) == 1 else None

    async def workers(self, sheet: ParsedSheet) -> None:
        seen: dict[str, int] = {}
        for row in sheet.rows:
            phone = row.get("phone")
            if phone:
                first = seen.setdefault(phone, row.number)
                if first != row.number:
                    self.problem(
                        row, "phone", f"phone {phone} is also in row {first} / 与第 {first} 行重复"
                    )
                    continue
            community_id = await self.community(row) if row.text("community") else None
            street_id = await self.street(row) if row.text("street") else None
            grid_ids: list[int] = []
            for name in row.get("grids") or []:
                if community_id is None:
                    if row.text("community") == "":
                        self.problem(
                            row, "community", "grids need their community / 填写网格时须填写社区"
                        )
                    break
                grid_id = await self.grid(row, community_id, name)
                if grid_id is not None:
                    grid_ids.append(grid_id)
            if row.bad or len(grid_ids) != len(row.get("grids") or []):
                continue
            if (row.text("community") and community_id is None) or (
                row.text("street") and street_id is None
            ):
                continue
            values = {
                "name": row.text("name"),
                "phone": phone,
                "role": row.get("role"),
                "community_id": community_id,
                "street_id": street_id,
            }
            query = select(workers).where(workers.c.phone == phone)
            existing = (await self.conn.execute(query)).mappings().first()
            if existing is None:
                made = await self.attempt(
                    row,
                    staff.create_worker(
                        self.conn, self.actor, **values, grid_ids=grid_ids, now=self.now
                    ),
                )
                if made is not None:
                    self.tally(WORKERS, "created")
                continue
            current = await staff.get_worker(self.conn, existing["id"])
            # A column the sheet does not have leaves that field as it is.
            present = {"name", "phone", "role"} | {
                f"{c}_id" for c in ("community", "street") if c in sheet.columns
            }
            changes = {k: v for k, v in values.items() if k in present and current[k] != v}
            if "grids" in sheet.columns and sorted(current["grid_ids"]) != sorted(grid_ids):
                changes["grid_ids"] = grid_ids
            if not current["active"]:
                changes["active"] = True
            if not changes:
                self.tally(WORKERS, "unchanged")
                continue
            changed = await self.attempt(
                row,
                staff.update_worker(self.conn, self.actor, existing["id"], changes, self.now),
            )
            if changed is not None:
                self.tally(WORKERS, "updated")

    async def shifts(self, sheet: ParsedSheet) -> None:
        by_grid: dict[int, list[tuple[Row, ShiftInput]]] = defaultdict(list)
        by_desk: dict[int, list[tuple[Row, ShiftInput]]] = defaultdict(list)
        for row in sheet.rows:
            if row.bad:
                continue
            worker_id = await self.worker_by_phone(row, "worker_phone")
            grid_id = None
            if row.text("grid"):
                community_id = await self.community(row)
                if community_id is None:
                    if not row.text("community"):
                        self.problem(
                            row, "community", "a grid needs its community / 填写网格时须填写社区"
                        )
                    continue
                grid_id = await self.grid(row, community_id, row.text("grid"))
                if grid_id is None:
                    continue
            if worker_id is None:
                continue
            shift = ShiftInput(
                worker_id,
                grid_id,
                row.get("weekday"),
                row.get("start"),
                row.get("end"),
                row.get("role") or "primary",
            )
            (by_grid[grid_id] if grid_id is not None else by_desk[worker_id]).append((row, shift))
        for grid_id, entries in by_grid.items():
            await self._roster(grid_id, entries)
        for worker_id, entries in by_desk.items():
            await self._desk_week(worker_id, entries)

    async def _roster(self, grid_id: int, entries: list[tuple[Row, ShiftInput]]) -> None:
        current = await rosters.list_shifts(self.conn, grid_id=grid_id)
        if _shift_set(current) == {_shift_key(s) for _, s in entries}:
            self.report.counts[SHIFTS.key].unchanged += len(entries)
            return
        try:
            await rosters.replace_grid_shifts(
                self.conn, self.actor, grid_id, [s for _, s in entries], self.now
            )
        except InvalidInput as err:
            for p in err.problems:
                row = _row_of(p.field, entries)
                column = _COLUMNS["shifts"].get(p.field.split(".")[-1], None)
                self.problem(row, column, p.message)
            return
        except ServiceError as err:
            self.refused(entries[0][0], err)
            return
        if current:
            self.report.counts[SHIFTS.key].updated += len(entries)
        else:
            self.report.counts[SHIFTS.key].created += len(entries)

    async def _desk_week(self, worker_id: int, entries: list[tuple[Row, ShiftInput]]) -> None:
        current = await rosters.list_shifts(self.conn, worker_id=worker_id, desk=True)
        if _shift_set(current) == {_shift_key(s) for _, s in entries}:
            self.report.counts[SHIFTS.key].unchanged += len(entries)
            return
        for old in current:
            await rosters.delete_shift(self.conn, self.actor, old["id"], self.now)
        for row, shift in entries:
            made = await self.attempt(
                row, rosters.create_shift(self.conn, self.actor, shift, self.now)
            )
            if made is not None:
                self.tally(SHIFTS, "updated" if current else "created")

    async def households(self, sheet: ParsedSheet) -> None:
        has_notes = "medical_notes" in sheet.columns
        for row in sheet.rows:
            community_id = await self.community(row)
            if community_id is None:
                continue
            address = row.text("address")
            if address and "address" not in row.bad:
                first = self.households_seen.setdefault((community_id, address), row.number)
                if first != row.number:
                    self.problem(
                        row,
                        "address",
                        f"duplicate household: {address!r} is also in row {first} / "
                        f"住户重复：该地址与第 {first} 行相同",
                    )
                    continue
            notes_text = row.text("medical_notes")
            if notes_text and not self.medical_notes and "medical_notes" not in row.bad:
                self.problem(
                    row,
                    "medical_notes",
                    "medical notes are imported only when authorised (python -m hub import "
                    "--medical-notes, or medical_notes=true); the import is audited / "
                    "健康备注须经授权导入（--medical-notes），并记入审计日志",
                )
            grid_id = None
            if row.text("grid") and "grid" not in row.bad:
                grid_id = await self.grid(row, community_id, row.text("grid"))
            if row.bad or grid_id is None:
                continue
            values: dict[str, Any] = {"grid_id": grid_id, "address": address}
            for key in ("lives_alone", "notes"):
                if key in sheet.columns:
                    values[key] = row.get(key) if key == "lives_alone" else row.text(key)
            if has_notes and self.medical_notes:
                values["medical_notes"] = notes_text
            existing = await self._household_at(community_id, address)
            if existing is None:
                made = await self.attempt(
                    row,
                    household_service.create_household(
                        self.conn,
                        self.actor,
                        **values,
                        now=self.now,
                        notes_authorised=self.medical_notes,
                    ),
                )
                if made is not None:
                    self.tally(HOUSEHOLDS, "created")
                continue
            changes = {k: v for k, v in values.items() if existing[k] != v}
            if not changes:
                self.tally(HOUSEHOLDS, "unchanged")
                continue
            changed = await self.attempt(
                row,
                household_service.update_household(
                    self.conn,
                    self.actor,
                    existing["id"],
                    changes,
                    self.now,
                    notes_authorised=self.medical_notes,
                ),
            )
            if changed is not None:
                self.tally(HOUSEHOLDS, "updated")

    async def residents(self, sheet: ParsedSheet) -> None:
        seen: dict[tuple[int, str], int] = {}
        for row in sheet.rows:
            community_id = await self.community(row)
            household_id = await self.household(row, community_id)
            if household_id is None or row.bad:
                continue
            name = row.text("name")
            first = seen.setdefault((household_id, name), row.number)
            if first != row.number:
                self.problem(row, "name", f"{name} is also in row {first} / 与第 {first} 行重复")
                continue
            values: dict[str, Any] = {
                key: row.get(key) for key in ("phone", "birth_year") if key in sheet.columns
            }
            query = select(residents).where(
                residents.c.household_id == household_id, residents.c.name == name
            )
            existing = (await self.conn.execute(query)).mappings().first()
            if existing is None:
                made = await self.attempt(
                    row,
                    household_service.create_resident(
                        self.conn, self.actor, household_id, {"name": name, **values}, self.now
                    ),
                )
                if made is not None:
                    self.tally(RESIDENTS, "created")
                continue
            changes = {k: v for k, v in values.items() if existing[k] != v}
            if not changes:
                self.tally(RESIDENTS, "unchanged")
                continue
            changed = await self.attempt(
                row,
                household_service.update_resident(
                    self.conn, self.actor, existing["id"], changes, self.now
                ),
            )
            if changed is not None:
                self.tally(RESIDENTS, "updated")

    async def devices(self, sheet: ParsedSheet) -> None:
        seen: dict[str, int] = {}
        registered = {
            r.edge_id
            for r in await self.conn.execute(
                select(edges.c.edge_id).where(edges.c.retired_at.is_(None))
            )
        }
        unregistered: set[str] = set()
        for row in sheet.rows:
            device_id = row.text("device_id")
            if device_id:
                first = seen.setdefault(device_id, row.number)
                if first != row.number:
                    self.problem(
                        row,
                        "device_id",
                        f"{device_id} is also in row {first} / 与第 {first} 行重复",
                    )
                    continue
            community_id = await self.community(row) if row.text("community") else None
            household_id = grid_id = None
            if row.text("household_address"):
                if not row.text("community"):
                    self.problem(
                        row, "community", "required with 住户地址 / 填写住户地址时须填写社区"
                    )
                    continue
                household_id = await self.household(row, community_id)
                if household_id is None:
                    continue
            elif row.text("grid"):
                if not row.text("community"):
                    self.problem(row, "community", "required with 网格 / 填写网格时须填写社区")
                    continue
                grid_id = await self.grid(row, community_id, row.text("grid"))
                if grid_id is None:
                    continue
            if row.bad:
                continue
            edge_id = row.text("edge_id")
            if edge_id not in registered:
                unregistered.add(edge_id)
            entry = Placement(
                device_id=device_id,
                profile=row.text("profile"),
                household_id=household_id,
                grid_id=grid_id,
                place=row.text("place"),
                edge_id=edge_id,
                bus=row.text("bus") or None,
                address=row.text("bus_address") or None,
            )
            query = select(devices.c.id, devices.c.retired_at).where(devices.c.id == device_id)
            existing = (await self.conn.execute(query)).first()
            if existing is None:
                made = await self.attempt(
                    row,
                    registry.create_device(self.conn, self.actor, entry, self.profiles, self.now),
                )
                if made is not None:
                    self.tally(DEVICES, "created")
                continue
            if existing.retired_at is not None:
                self.problem(
                    row, "device_id", f"device {device_id} is retired / 设备 {device_id} 已停用"
                )
                continue
            current = await registry.get_device(self.conn, self.actor, device_id)
            wanted = {
                "profile": entry.profile,
                "household_id": entry.household_id,
                "place": entry.place,
                "edge_id": entry.edge_id,
                "bus": entry.bus,
                "address": entry.address,
            }
            placed = bool({"household_address", "grid"} & sheet.columns)  # where it is
            said = {  # a column the sheet does not have leaves that field as it is
                "profile": True,
                "edge_id": True,
                "household_id": placed,
                "place": "place" in sheet.columns,
                "bus": "bus" in sheet.columns,
                "address": "bus_address" in sheet.columns,
            }
            changes = {k: v for k, v in wanted.items() if said[k] and current[k] != v}
            if placed and household_id is None and current["grid_id"] != grid_id:
                changes["grid_id"] = grid_id
            if not changes:
                self.tally(DEVICES, "unchanged")
                continue
            changed = await self.attempt(
                row,
                registry.update_device(
                    self.conn, self.actor, device_id, changes, self.profiles, self.now
                ),
            )
            if changed is not None:
                self.tally(DEVICES, "updated")
        self.report.warnings += [
            f"edge {edge} is not registered yet: register it (POST /api/v1/edges) before its "
            f"devices report / 边缘网关 {edge} 尚未登记"
            for edge in sorted(unregistered)
        ]


def _keys(row: Row) -> set[str]:
    return set(row.values) | set(row.bad)


def _kind_key(row: Row) -> str:
    kind = kind_of(row.sheet)
    return kind.key if kind is not None else ""


def _label(row: Row, column: str | None) -> str | None:
    if column is None:
        return None
    kind = kind_of(row.sheet)
    if kind is not None:
        for candidate in kind.columns:
            if candidate.key == column:
                return candidate.label
    return column


def _shift_key(shift: ShiftInput) -> tuple[int, int, time, time, str]:
    return (shift.worker_id, shift.weekday, shift.start_local, shift.end_local, shift.role)


def _shift_set(rows: Sequence[Mapping[str, Any]]) -> set[tuple[int, int, time, time, str]]:
    return {
        (r["worker_id"], r["weekday"], r["start_local"], r["end_local"], r["role"]) for r in rows
    }


def _row_of(field_name: str, entries: Sequence[tuple[Row, ShiftInput]]) -> Row:
    """The row of ``shifts[3].worker_id`` (a problem from replacing a grid's roster)."""
    if field_name.startswith("shifts[") and "]" in field_name:
        index = field_name[len("shifts[") : field_name.index("]")]
        if index.isdigit() and int(index) < len(entries):
            return entries[int(index)][0]
    return entries[0][0]
