"""What importing one row needs: finding records by natural key, and reporting problems.

:class:`ImportState` is the state of one import (ids found or made so far, the report) and
the lookups every sheet uses: a community by name, a street by name, a grid by community
and name, a worker by phone, a household by community and address. Each lookup that finds
nothing (or finds two) reports a problem on the row's cell and answers ``None``, so the
sheet handlers (:mod:`hub.services.import_sheets`) skip the row and go on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import communities, grids, households, streets, workers
from hub.domain.access import Principal
from hub.domain.office_sheets import Row, SheetKind, SheetProblem, kind_of
from hub.services.errors import InvalidInput, ServiceError

T = TypeVar("T")

#: A service's field name → the sheet column it came from, per sheet.
COLUMNS: dict[str, dict[str, str]] = {
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


class ImportState:
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

    # -- problems ---------------------------------------------------------------------
    def problem(self, row: Row, column: str | None, message: str) -> None:
        label = _label(row, column)
        self.report.problems.append(SheetProblem(row.sheet, row.number, label, message))

    def refused(self, row: Row, err: ServiceError | IntegrityError) -> None:
        """A service said no: one problem per field it named, in the row's columns."""
        columns = COLUMNS.get(_kind_key(row), {})
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
                "grid" if "grid" in present_keys(row) else "grids",
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


def present_keys(row: Row) -> set[str]:
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
