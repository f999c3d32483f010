"""The sheet handlers of an import: each row created, changed or left alone, in order.

Rows go through the same services as the API (:mod:`hub.services.levels`, ``staff``,
``rosters``, ``households``, ``registry``), so the same rules, roles and audit rows
apply; what a service refuses becomes a problem on the row. The order of
:data:`hub.domain.office_sheets.KINDS` means what a sheet refers to exists before it; a
grid's backup worker is set after the workers. Natural keys and the "a missing column
leaves that field alone" rule: :mod:`hub.services.office_import`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import time
from typing import Any

from sqlalchemy import select

from hub.db.schema import devices, edges, grids, residents, workers
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
    Row,
)
from hub.services import households as household_service
from hub.services import levels as level_service
from hub.services import registry, rosters, staff
from hub.services.errors import InvalidInput, ServiceError
from hub.services.import_lookups import COLUMNS, ImportState, present_keys
from hub.services.rosters import ShiftInput


class SheetImporter(ImportState):
    """Applies parsed sheets in import order; problems go to the report, rows go on."""

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
            if "backup_worker_phone" in present_keys(row) and row.get("backup_worker_phone"):
                backup = await self.worker_by_phone(row, "backup_worker_phone")
                if backup is None:
                    continue
            elif "backup_worker_phone" not in present_keys(row):
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
                column = COLUMNS["shifts"].get(p.field.split(".")[-1], None)
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
