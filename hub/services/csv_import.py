"""Register many devices from one CSV file: every row valid, or nothing imported.

An installer's spreadsheet is checked as a whole first, so a file with three typos gets
one answer listing all three (row, column, message) instead of a half-registered
building and a guessing game about which rows made it. Only a file with no problem at all
is inserted, in the caller's transaction, with one audit row naming every device.

The file: UTF-8 (with or without the BOM spreadsheets add) or GB18030 (what Excel on a
Chinese Windows saves as "CSV"); a header line with ``device_id`` and ``profile`` and any
of ``household_id``, ``household_address``, ``place``, ``grid_id``, ``edge_id``, ``bus``,
``address`` (the device's address on its bus). Rules: :mod:`hub.domain.device_rows`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import devices
from hub.domain.access import Principal
from hub.domain.device_rows import Problem, check_rows, read_csv, references
from hub.services.audit import record_audit
from hub.services.errors import FieldProblem, InvalidInput
from hub.services.registry import load_view, placement_row

MAX_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ImportReport:
    imported: int
    device_ids: list[str]
    file_sha256: str


def decode_csv(data: bytes) -> str:
    """The file's text; UTF-8 first (BOM dropped), then GB18030."""
    if len(data) > MAX_BYTES:
        raise _refused(
            [
                Problem(
                    "file",
                    f"the file has {len(data)} bytes; at most {MAX_BYTES} / "
                    f"文件过大（最多 {MAX_BYTES} 字节）",
                )
            ]
        )
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise _refused(
        [
            Problem(
                "file", "the file is neither UTF-8 nor GB18030 text / 文件编码应为 UTF-8 或 GB18030"
            )
        ]
    )


async def import_devices(
    conn: AsyncConnection,
    actor: Principal,
    data: bytes,
    profiles: frozenset[str],
    now: datetime,
) -> ImportReport:
    """Check every row; raise :class:`InvalidInput` listing all problems, or insert all."""
    rows, problems = read_csv(decode_csv(data))
    if problems:
        raise _refused(problems)
    refs = references(rows)
    view = await load_view(
        conn,
        profiles,
        device_ids=refs.device_ids,
        household_ids=refs.household_ids,
        grid_ids=refs.grid_ids,
        edge_ids=refs.edge_ids,
        household_addresses=refs.household_addresses,
    )
    placements, problems = check_rows(rows, view)
    if problems:
        raise _refused(problems)
    if not placements:
        raise _refused([Problem("file", "no device rows in the file / 文件中没有设备行")])
    values = []
    for entry in placements:
        stored_grid = entry.grid_id if entry.household_id is None else None
        values.append({**placement_row(entry, stored_grid), "updated_at": now})
    await conn.execute(insert(devices), values)
    digest = hashlib.sha256(data).hexdigest()
    ids = [entry.device_id for entry in placements]
    await record_audit(
        conn,
        actor=actor,
        action="device.import",
        target_type="device_import",
        target_id=f"csv:{digest[:16]}",
        at=now,
        after={"file_sha256": digest, "count": len(ids), "device_ids": ids},
    )
    return ImportReport(len(ids), ids, digest)


def _refused(problems: list[Problem]) -> InvalidInput:
    return InvalidInput([FieldProblem(p.field, p.message, row=p.row) for p in problems])
