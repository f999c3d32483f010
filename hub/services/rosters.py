"""Weekly duty shifts (值班表): add, change, delete, replace a grid's roster, with audit.

Consistency kept here, because the help-call routing reads the roster
(:func:`hub.services.org.available_by_tier`):

* a grid shift belongs to an active grid worker assigned to that grid, a desk shift (no
  grid) to a desk worker (community station, street centre, hotline desk), as ``primary``;
* no two shifts clash (rules and messages in :mod:`hub.domain.schedule`);
* no shift ends at 23:59 (a minute uncovered every night: :data:`hub.domain.duty.LAST_MINUTE`).

Overrides (issue #16) are one-off assignments between two UTC instants (sick-leave cover,
a holiday): while one is in force for a grid and role it *replaces* the weekly roster of
that role in that grid (:func:`hub.domain.duty.on_duty`); a desk worker's override makes
them available at their tier. The same worker and grid rules as for shifts apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta
from typing import Any, Literal, cast

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import grids, inserted_id, shift_overrides, shifts, workers
from hub.domain.access import Principal
from hub.domain.duty import LAST_MINUTE, Shift, leaves_last_minute
from hub.domain.schedule import RosterEntry, clashes_with, roster_clashes
from hub.services.audit import record_audit
from hub.services.errors import FieldProblem, InvalidInput, NotFound
from hub.services.records import snapshot
from hub.services.staff import DESK_ROLES, assignments, get_grid, record_exists

ShiftRole = Literal["primary", "backup"]
MAX_PROBLEMS = 50  # per answer; more would bury the first ones


@dataclass(frozen=True, slots=True)
class ShiftInput:
    """A weekly shift as an operator states it (local wall-clock times)."""

    worker_id: int
    grid_id: int | None
    weekday: int
    start_local: time
    end_local: time
    role: ShiftRole = "primary"

    def as_shift(self) -> Shift:
        return Shift(
            self.worker_id, self.grid_id, self.weekday, self.start_local, self.end_local, self.role
        )


async def list_shifts(
    conn: AsyncConnection,
    *,
    grid_id: int | None = None,
    worker_id: int | None = None,
    desk: bool | None = None,
) -> list[dict[str, Any]]:
    """Shifts by grid, weekday and start; ``desk`` selects desk (True) or grid shifts."""
    query = select(shifts).order_by(
        shifts.c.grid_id, shifts.c.weekday, shifts.c.start_local, shifts.c.id
    )
    if grid_id is not None:
        query = query.where(shifts.c.grid_id == grid_id)
    if worker_id is not None:
        query = query.where(shifts.c.worker_id == worker_id)
    if desk is not None:
        query = query.where(shifts.c.grid_id.is_(None) if desk else shifts.c.grid_id.isnot(None))
    return [dict(row) for row in (await conn.execute(query)).mappings()]


async def get_shift(conn: AsyncConnection, shift_id: int) -> dict[str, Any]:
    row = (await conn.execute(select(shifts).where(shifts.c.id == shift_id))).mappings().first()
    if row is None:
        raise NotFound(f"shift {shift_id} not found / 班次 {shift_id} 不存在")
    return dict(row)


async def create_shift(
    conn: AsyncConnection, actor: Principal, shift: ShiftInput, now: datetime
) -> dict[str, Any]:
    await _check_shift_refs(conn, shift, "")
    await _check_clashes(conn, RosterEntry(None, shift.as_shift()))
    shift_id = inserted_id(await conn.execute(insert(shifts).values(**asdict(shift))))
    after = await get_shift(conn, shift_id)
    await record_audit(
        conn,
        actor=actor,
        action="shift.create",
        target_type="shift",
        target_id=shift_id,
        at=now,
        after=snapshot(after),
    )
    return after


async def update_shift(
    conn: AsyncConnection,
    actor: Principal,
    shift_id: int,
    changes: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    before = await get_shift(conn, shift_id)
    merged = {k: before[k] for k in ("worker_id", "grid_id", "weekday", "start_local", "end_local")}
    shift = ShiftInput(**(merged | {"role": before["role"]} | dict(changes)))
    await _check_shift_refs(conn, shift, "")
    await _check_clashes(conn, RosterEntry(shift_id, shift.as_shift()))
    if changes:
        await conn.execute(update(shifts).where(shifts.c.id == shift_id).values(**changes))
    after = await get_shift(conn, shift_id)
    await record_audit(
        conn,
        actor=actor,
        action="shift.update",
        target_type="shift",
        target_id=shift_id,
        at=now,
        before=snapshot(before),
        after=snapshot(after),
    )
    return after


async def delete_shift(
    conn: AsyncConnection, actor: Principal, shift_id: int, now: datetime
) -> None:
    before = await get_shift(conn, shift_id)
    await conn.execute(delete(shifts).where(shifts.c.id == shift_id))
    await record_audit(
        conn,
        actor=actor,
        action="shift.delete",
        target_type="shift",
        target_id=shift_id,
        at=now,
        before=snapshot(before),
    )


async def replace_grid_shifts(
    conn: AsyncConnection,
    actor: Principal,
    grid_id: int,
    roster: Sequence[ShiftInput],
    now: datetime,
) -> list[dict[str, Any]]:
    """Make ``roster`` the whole weekly schedule of the grid, or change nothing.

    Each shift's first clash is reported (not every pair: a roster pasted twice would
    otherwise answer with thousands), and at most :data:`MAX_PROBLEMS` problems in all.
    """
    await get_grid(conn, grid_id)
    problems: list[FieldProblem] = []
    checked_workers: set[int] = set()
    for index, shift in enumerate(roster):
        if shift.worker_id in checked_workers:  # else _check_shift_refs looks at the end
            problems += _last_minute(shift, f"shifts[{index}].")
        if shift.grid_id != grid_id:
            problems.append(
                FieldProblem(
                    f"shifts[{index}].grid_id",
                    f"shift is for grid {shift.grid_id}, not grid {grid_id} / "
                    f"该班次不属于网格 {grid_id}",
                )
            )
        elif shift.worker_id not in checked_workers:  # in one grid, only the worker matters
            checked_workers.add(shift.worker_id)
            try:
                await _check_shift_refs(conn, shift, f"shifts[{index}].")
            except InvalidInput as err:
                problems += err.problems
    entries = [RosterEntry(None, s.as_shift(), label=f"shifts[{i}]") for i, s in enumerate(roster)]
    reported: set[str] = set()
    for found in roster_clashes(entries):
        if found.second.label not in reported:
            reported.add(found.second.label)
            problems.append(FieldProblem(found.second.label, found.message))
    if len(problems) > MAX_PROBLEMS:
        more = len(problems) - MAX_PROBLEMS
        problems = problems[:MAX_PROBLEMS]
        problems.append(FieldProblem("shifts", f"and {more} more / 另有 {more} 个问题"))
    if problems:
        raise InvalidInput(problems)
    before = await list_shifts(conn, grid_id=grid_id)
    await conn.execute(delete(shifts).where(shifts.c.grid_id == grid_id))
    for shift in roster:
        await conn.execute(insert(shifts).values(**asdict(shift)))
    after = await list_shifts(conn, grid_id=grid_id)
    await record_audit(
        conn,
        actor=actor,
        action="grid.shifts.replace",
        target_type="grid",
        target_id=grid_id,
        at=now,
        before=[snapshot(s) for s in before],
        after=[snapshot(s) for s in after],
    )
    return after


async def _check_shift_refs(conn: AsyncConnection, shift: ShiftInput, prefix: str) -> None:
    problems: list[FieldProblem] = _last_minute(shift, prefix)
    worker = (
        await conn.execute(
            select(workers.c.role, workers.c.active).where(workers.c.id == shift.worker_id)
        )
    ).first()
    w = shift.worker_id
    if worker is None:
        problems.append(
            FieldProblem(f"{prefix}worker_id", f"worker {w} does not exist / 工作人员 {w} 不存在")
        )
    elif not worker.active:
        problems.append(
            FieldProblem(f"{prefix}worker_id", f"worker {w} is inactive / 工作人员 {w} 已停用")
        )
    if shift.grid_id is None:
        if worker is not None and worker.role not in DESK_ROLES:
            problems.append(
                FieldProblem(
                    f"{prefix}grid_id",
                    f"worker {w} is a {worker.role}: their shifts need a grid_id / "
                    f"网格员的班次须指定网格",
                )
            )
        if shift.role != "primary":
            problems.append(
                FieldProblem(f"{prefix}role", "desk shifts are primary shifts / 坐席班次只能是主班")
            )
    elif not await record_exists(conn, grids.c.id, shift.grid_id):
        g = shift.grid_id
        problems.append(
            FieldProblem(f"{prefix}grid_id", f"grid {g} does not exist / 网格 {g} 不存在")
        )
    elif worker is not None:
        if worker.role != "grid_worker":
            problems.append(
                FieldProblem(
                    f"{prefix}worker_id",
                    f"worker {w} is a {worker.role}, not a grid worker / 工作人员 {w} 不是网格员",
                )
            )
        elif not (await assignments(conn, worker_ids=[w], grid_ids=[shift.grid_id])):
            problems.append(
                FieldProblem(
                    f"{prefix}worker_id",
                    f"worker {w} is not assigned to grid {shift.grid_id} / "
                    f"工作人员 {w} 未分配到网格 {shift.grid_id}",
                )
            )
    if problems:
        raise InvalidInput(problems)


def _last_minute(shift: ShiftInput, prefix: str) -> list[FieldProblem]:
    if leaves_last_minute(shift.end_local):
        return [FieldProblem(f"{prefix}end_local", LAST_MINUTE)]
    return []


async def _check_clashes(conn: AsyncConnection, candidate: RosterEntry) -> None:
    shift = candidate.shift
    if shift.grid_id is None:
        near = and_(shifts.c.grid_id.is_(None), shifts.c.worker_id == shift.worker_id)
    else:
        near = shifts.c.grid_id == shift.grid_id
    rows = await conn.execute(select(shifts).where(near).order_by(shifts.c.id))
    roster = [
        RosterEntry(
            row.id,
            Shift(
                row.worker_id,
                row.grid_id,
                row.weekday,
                row.start_local,
                row.end_local,
                cast(ShiftRole, row.role),
            ),
        )
        for row in rows
    ]
    found = clashes_with(candidate, roster)
    if found:
        raise InvalidInput([FieldProblem("start_local", c.message) for c in found])


# --- overrides (issue #16) -------------------------------------------------------------

MAX_OVERRIDE = timedelta(days=92)  # a quarter; longer cover belongs in the weekly roster


@dataclass(frozen=True, slots=True)
class OverrideInput:
    """A one-off assignment between two UTC instants (start inclusive, end exclusive)."""

    worker_id: int
    grid_id: int | None
    starts_at: datetime
    ends_at: datetime
    role: ShiftRole = "primary"
    note: str = ""


async def list_overrides(
    conn: AsyncConnection,
    *,
    grid_id: int | None = None,
    worker_id: int | None = None,
    ending_after: datetime | None = None,
) -> list[dict[str, Any]]:
    """Overrides by start; ``ending_after`` leaves out those already over."""
    query = select(shift_overrides).order_by(shift_overrides.c.starts_at, shift_overrides.c.id)
    if grid_id is not None:
        query = query.where(shift_overrides.c.grid_id == grid_id)
    if worker_id is not None:
        query = query.where(shift_overrides.c.worker_id == worker_id)
    if ending_after is not None:
        query = query.where(shift_overrides.c.ends_at > ending_after)
    return [dict(row) for row in (await conn.execute(query)).mappings()]


async def get_override(conn: AsyncConnection, override_id: int) -> dict[str, Any]:
    query = select(shift_overrides).where(shift_overrides.c.id == override_id)
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"shift override {override_id} not found / 临时调班 {override_id} 不存在")
    return dict(row)


async def create_override(
    conn: AsyncConnection, actor: Principal, cover: OverrideInput, now: datetime
) -> dict[str, Any]:
    problems: list[FieldProblem] = []
    if cover.ends_at <= cover.starts_at:
        problems.append(
            FieldProblem("ends_at", "ends_at must be after starts_at / 结束时间须晚于开始时间")
        )
    elif cover.ends_at - cover.starts_at > MAX_OVERRIDE:
        problems.append(
            FieldProblem(
                "ends_at",
                f"at most {MAX_OVERRIDE.days} days; change the weekly roster instead / "
                f"临时调班最长 {MAX_OVERRIDE.days} 天，长期安排请修改值班表",
            )
        )
    if cover.ends_at <= now:
        problems.append(
            FieldProblem("ends_at", "the override would be over already / 该调班已经结束")
        )
    if problems:
        raise InvalidInput(problems)
    clock = time(0, 0)  # the weekly fields do not matter to the reference checks
    await _check_shift_refs(
        conn, ShiftInput(cover.worker_id, cover.grid_id, 0, clock, clock, cover.role), ""
    )
    override_id = inserted_id(await conn.execute(insert(shift_overrides).values(**asdict(cover))))
    after = await get_override(conn, override_id)
    await record_audit(
        conn,
        actor=actor,
        action="shift_override.create",
        target_type="shift_override",
        target_id=override_id,
        at=now,
        after=snapshot(after),
    )
    return after


async def delete_override(
    conn: AsyncConnection, actor: Principal, override_id: int, now: datetime
) -> None:
    before = await get_override(conn, override_id)
    await conn.execute(delete(shift_overrides).where(shift_overrides.c.id == override_id))
    await record_audit(
        conn,
        actor=actor,
        action="shift_override.delete",
        target_type="shift_override",
        target_id=override_id,
        at=now,
        before=snapshot(before),
    )
