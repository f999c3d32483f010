"""Rules for a device's registry entry, and for a CSV file of them, without I/O.

A device is placed either in a household (then it is in that household's grid) or, for
shared equipment such as a compound gate or a bin, directly in a grid; the edge agent
reaches it on a bus (a serial port, a Modbus line) at an address (serial number, unit id,
meter address). The service loads a :class:`RegistryView` of what the rows refer to and
these functions say what is wrong, field by field, in English and Chinese; the same
checks serve the JSON API (one device) and the CSV import (many, all or nothing).

CSV rows are numbered as a spreadsheet shows them: the header is row 1, the first device
row 2. A cell longer than its column allows is a problem of that cell (the csv module's own
128 KiB field limit is raised, so a huge cell is never a 500), and formula text (a cell
starting with = + - @, see :func:`hub.domain.office_sheets.formula_like`) is refused.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hub.domain.office_sheets import formula_like

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
EDGE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # it names MQTT topics: no / + # or space
MAX_ROWS = 10_000
COLUMNS = (
    "device_id",
    "profile",
    "household_id",
    "household_address",
    "place",
    "grid_id",
    "edge_id",
    "bus",
    "address",
)
REQUIRED_COLUMNS = ("device_id", "profile")
_LIMITS = {"place": 100, "bus": 100, "address": 64, "household_address": 200, "profile": 64}
_MAX_CELL = max(_LIMITS.values())  # no column takes more; a longer cell is refused unread
_FIELD_LIMIT = 16 * 1024 * 1024  # above any accepted file: the file limit decides, not csv

csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))


@dataclass(frozen=True, slots=True)
class Placement:
    """A device's registry entry as a person states it."""

    device_id: str
    profile: str
    household_id: int | None = None
    grid_id: int | None = None
    place: str = ""
    edge_id: str | None = None
    bus: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    field: str
    message: str
    row: int | None = None


@dataclass(frozen=True, slots=True)
class RegistryView:
    """What the checks need to know of the database (only the parts the input refers to)."""

    profiles: frozenset[str]
    grids: frozenset[int] = frozenset()
    household_grids: Mapping[int, int] = field(default_factory=dict)  # household → grid
    households_by_address: Mapping[str, tuple[tuple[int, int], ...]] = field(
        default_factory=dict
    )  # address → ((household, grid), …)
    devices: Mapping[str, bool] = field(default_factory=dict)  # registered id → retired?
    slots: Mapping[tuple[str, str, str], str] = field(default_factory=dict)  # → device id


def check_placement(
    entry: Placement, view: RegistryView, *, check_profile: bool = True
) -> tuple[int | None, list[Problem]]:
    """The grid id to store (``None`` when the household decides it) and the problems."""
    problems: list[Problem] = []
    if check_profile and entry.profile not in view.profiles:
        known = ", ".join(sorted(view.profiles)) or "none"
        problems.append(
            Problem(
                "profile",
                f"unknown device profile {entry.profile!r} (known: {known}) / "
                f"未知的设备型号配置 {entry.profile!r}（已有：{known}）",
            )
        )
    stored_grid = entry.grid_id
    if entry.household_id is not None:
        household_grid = view.household_grids.get(entry.household_id)
        if household_grid is None:
            problems.append(
                Problem(
                    "household_id",
                    f"household {entry.household_id} does not exist / "
                    f"住户 {entry.household_id} 不存在",
                )
            )
        elif entry.grid_id is not None and entry.grid_id != household_grid:
            problems.append(
                Problem(
                    "grid_id",
                    f"household {entry.household_id} is in grid {household_grid}, not in grid "
                    f"{entry.grid_id} / 住户 {entry.household_id} 属于网格 {household_grid}，"
                    f"不属于网格 {entry.grid_id}",
                )
            )
        stored_grid = None
    elif entry.grid_id is not None and entry.grid_id not in view.grids:
        problems.append(
            Problem("grid_id", f"grid {entry.grid_id} does not exist / 网格 {entry.grid_id} 不存在")
        )
    problems.extend(_check_slot(entry, view))
    return stored_grid, problems


def _check_slot(entry: Placement, view: RegistryView) -> list[Problem]:
    if entry.bus is not None and entry.edge_id is None:
        return [Problem("edge_id", "a bus needs its edge_id / 填写总线时须填写边缘网关")]
    if entry.address is not None and entry.bus is None:
        return [Problem("bus", "an address needs its bus / 填写设备地址时须填写总线")]
    slot = _slot(entry)
    holder = view.slots.get(slot) if slot is not None else None
    if slot is None or holder is None or holder == entry.device_id:
        return []
    edge, bus, address = slot
    return [
        Problem(
            "address",
            f"address {address} on bus {bus} of edge {edge} is taken by device {holder} / "
            f"边缘网关 {edge} 总线 {bus} 上的地址 {address} 已被设备 {holder} 占用",
        )
    ]


def _slot(entry: Placement) -> tuple[str, str, str] | None:
    if entry.edge_id is None or entry.bus is None or entry.address is None:
        return None
    return entry.edge_id, entry.bus, entry.address


# --- CSV --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CsvRow:
    """One data row: its spreadsheet row number and its cells by column, stripped."""

    row: int
    cells: Mapping[str, str]

    def get(self, column: str) -> str | None:
        value = self.cells.get(column, "")
        return value or None


@dataclass(frozen=True, slots=True)
class References:
    """What a file's rows name, so the service loads only those from the database."""

    device_ids: frozenset[str]
    household_ids: frozenset[int]
    household_addresses: frozenset[str]
    grid_ids: frozenset[int]
    edge_ids: frozenset[str]


def read_csv(text: str) -> tuple[list[CsvRow], list[Problem]]:
    """Split the file into rows; problems of the file as a whole (header, size) only."""
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as err:
        return [], [Problem("file", f"not a CSV file: {err} / 不是有效的 CSV 文件")]
    while records and not any(cell.strip() for cell in records[-1]):
        records.pop()
    if not records:
        return [], [Problem("file", "the file is empty; expected a header line / 文件为空")]
    header = [cell.strip() for cell in records[0]]
    problems = [
        Problem(
            name or f"column {index + 1}",
            f"unknown column {name!r}; expected some of {', '.join(COLUMNS)} / 未知列 {name!r}",
            row=1,
        )
        for index, name in enumerate(header)
        if name not in COLUMNS
    ]
    problems += [
        Problem(name, f"column {name!r} appears twice / 列 {name!r} 重复", row=1)
        for index, name in enumerate(header)
        if name in header[:index] and name in COLUMNS
    ]
    problems += [
        Problem(name, f"required column {name!r} is missing / 缺少必填列 {name!r}", row=1)
        for name in REQUIRED_COLUMNS
        if name not in header
    ]
    if len(records) - 1 > MAX_ROWS:
        problems.append(
            Problem(
                "file",
                f"{len(records) - 1} rows; import at most {MAX_ROWS} at a time / "
                f"共 {len(records) - 1} 行，每次最多导入 {MAX_ROWS} 行",
            )
        )
    if problems:
        return [], problems
    rows: list[CsvRow] = []
    for number, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue  # a blank line, e.g. between blocks a person left in the sheet
        if len(record) > len(header):
            problems.append(
                Problem(
                    "row",
                    f"{len(record)} values but {len(header)} columns / "
                    f"有 {len(record)} 个值，但只有 {len(header)} 列",
                    row=number,
                )
            )
            continue
        cells = dict(zip(header, (c.strip() for c in record), strict=False))
        refused = _refused_cells(cells, number)
        if refused:
            problems += refused
            continue
        rows.append(CsvRow(number, cells))
    return rows, problems


def _refused_cells(cells: Mapping[str, str], row: int) -> list[Problem]:
    """Cells refused before any rule reads them: too long, or formula text."""
    problems = []
    for column, value in cells.items():
        if len(value) > _MAX_CELL:
            problems.append(
                Problem(
                    column,
                    f"{len(value)} characters; at most {_LIMITS.get(column, _MAX_CELL)} / "
                    f"共 {len(value)} 个字符，超出长度限制",
                    row=row,
                )
            )
        elif formula_like(value):
            problems.append(
                Problem(
                    column,
                    f"formula text is refused: {value[:20]!r} (a cell may not start with "
                    "= + - @) / 不接受公式文本",
                    row=row,
                )
            )
    return problems


def references(rows: Iterable[CsvRow]) -> References:
    device_ids, households, addresses, grids, edges = set(), set(), set(), set(), set()
    for row in rows:
        if (device_id := row.get("device_id")) is not None:
            device_ids.add(device_id)
        if (household := _positive_int(row.get("household_id"))) is not None:
            households.add(household)
        if (address := row.get("household_address")) is not None:
            addresses.add(address)
        if (grid := _positive_int(row.get("grid_id"))) is not None:
            grids.add(grid)
        if (edge := row.get("edge_id")) is not None:
            edges.add(edge)
    return References(
        frozenset(device_ids),
        frozenset(households),
        frozenset(addresses),
        frozenset(grids),
        frozenset(edges),
    )


def check_rows(rows: Iterable[CsvRow], view: RegistryView) -> tuple[list[Placement], list[Problem]]:
    """Every row's placement, or every problem of every row (callers import all or none)."""
    placements: list[Placement] = []
    problems: list[Problem] = []
    first_row_of_id: dict[str, int] = {}
    first_row_of_slot: dict[tuple[str, str, str], int] = {}
    for row in rows:
        entry, found = _parse_row(row, view)
        if entry is not None:
            _, placement_problems = check_placement(entry, view)
            found += placement_problems
            found += _check_new_and_unique(entry, row.row, view, first_row_of_id, first_row_of_slot)
        problems += [Problem(p.field, p.message, row=row.row) for p in found]
        if entry is not None and not found:
            placements.append(entry)
    return placements, problems


def _check_new_and_unique(
    entry: Placement,
    row: int,
    view: RegistryView,
    first_row_of_id: dict[str, int],
    first_row_of_slot: dict[tuple[str, str, str], int],
) -> list[Problem]:
    problems: list[Problem] = []
    retired = view.devices.get(entry.device_id)
    if retired is not None:
        state = (
            ("registered and retired", "已登记并已停用") if retired else ("registered", "已登记")
        )
        problems.append(
            Problem(
                "device_id",
                f"device {entry.device_id} is already {state[0]} / "
                f"设备 {entry.device_id} {state[1]}",
            )
        )
    earlier = first_row_of_id.setdefault(entry.device_id, row)
    if earlier != row:
        problems.append(
            Problem(
                "device_id",
                f"device {entry.device_id} is also in row {earlier} / "
                f"设备 {entry.device_id} 与第 {earlier} 行重复",
            )
        )
    slot = _slot(entry)
    if slot is not None:
        earlier = first_row_of_slot.setdefault(slot, row)
        if earlier != row:
            problems.append(
                Problem(
                    "address",
                    f"address {slot[2]} on bus {slot[1]} of edge {slot[0]} is also in row "
                    f"{earlier} / 该地址与第 {earlier} 行重复",
                )
            )
    return problems


def _parse_row(row: CsvRow, view: RegistryView) -> tuple[Placement | None, list[Problem]]:
    """Typed values of one row; ``None`` if a value is malformed (then problems say which)."""
    problems: list[Problem] = []
    device_id = row.get("device_id")
    if device_id is None:
        problems.append(Problem("device_id", "required / 必填"))
    elif not DEVICE_ID.match(device_id):
        problems.append(
            Problem(
                "device_id",
                f"{device_id!r} is not a device id (letters, digits, . _ : -, at most 64) / "
                f"设备编号格式不正确",
            )
        )
    profile = row.get("profile")
    if profile is None:
        problems.append(Problem("profile", "required / 必填"))
    for column, limit in _LIMITS.items():
        value = row.get(column)
        if value is not None and len(value) > limit:
            problems.append(
                Problem(column, f"longer than {limit} characters / 超过 {limit} 个字符")
            )
    edge_id = row.get("edge_id")
    if edge_id is not None and not EDGE_ID.match(edge_id):
        problems.append(
            Problem(
                "edge_id",
                f"{edge_id!r} is not an edge id (letters, digits, . _ -) / 边缘网关编号格式不正确",
            )
        )
    numbers: dict[str, int | None] = {}
    for column in ("household_id", "grid_id"):
        raw = row.get(column)
        numbers[column] = _positive_int(raw)
        if raw is not None and numbers[column] is None:
            problems.append(Problem(column, f"{raw!r} is not a positive whole number / 不是正整数"))
    household_id = numbers["household_id"]
    address = row.get("household_address")
    if address is not None and not problems:
        household_id, found = _household_at(address, household_id, numbers["grid_id"], view)
        problems += found
    if problems or device_id is None or profile is None:
        return None, problems
    return (
        Placement(
            device_id=device_id,
            profile=profile,
            household_id=household_id,
            grid_id=numbers["grid_id"],
            place=row.get("place") or "",
            edge_id=edge_id,
            bus=row.get("bus"),
            address=row.get("address"),
        ),
        [],
    )


def _household_at(
    address: str, household_id: int | None, grid_id: int | None, view: RegistryView
) -> tuple[int | None, list[Problem]]:
    """The household a ``household_address`` names (narrowed by the row's grid)."""
    matches = [
        household
        for household, grid in view.households_by_address.get(address, ())
        if grid_id is None or grid == grid_id
    ]
    if household_id is not None:
        if household_id in matches:
            return household_id, []
        return None, [
            Problem(
                "household_address",
                f"household {household_id} is not at {address!r} / "
                f"住户 {household_id} 的地址不是 {address!r}",
            )
        ]
    if len(matches) == 1:
        return matches[0], []
    if not matches:
        where = f" in grid {grid_id}" if grid_id is not None else ""
        return None, [
            Problem(
                "household_address",
                f"no household at {address!r}{where} / 找不到地址为 {address!r} 的住户",
            )
        ]
    return None, [
        Problem(
            "household_address",
            f"{len(matches)} households at {address!r}; give household_id or grid_id / "
            f"该地址有 {len(matches)} 户，请填写住户编号或网格编号",
        )
    ]


def _positive_int(raw: str | None) -> int | None:
    if raw is None or not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if 0 < value < 2**31 else None
