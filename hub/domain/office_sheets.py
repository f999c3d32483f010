"""The street office's spreadsheets: which sheets and columns, and what each cell may hold.

Pure rules, no I/O: :mod:`hub.services.sheet_files` turns an XLSX or CSV file into
:class:`RawSheet` tables of text, :func:`parse_sheet` checks every cell of one and gives
typed rows, and :mod:`hub.services.office_import` resolves them against the registry.

Offices write their registers with Chinese column headers (``姓名``, ``电话``, ``独居``…),
so those are the canonical names; the English names are accepted too (``name``,
``phone``, ``lives_alone``…). Rows are numbered as the spreadsheet shows them: the header
is row 1. Every problem names its sheet, row and column, so a person can find the cell.

Formula text (a cell that starts with ``=``, ``@``, a tab or a carriage return, or with
``+``/``-`` followed by anything but a number) is **refused**, not neutralised: such text
is an injection when a register is exported and opened in a spreadsheet again, and a
resident's name or an address never starts that way, so refusing loses nothing and keeps
what is stored equal to what the office wrote. An over-long cell is refused with its
length (the CSV reader itself accepts cells up to the file limit, so no cell makes a 500).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from typing import Any, Literal

from hub.domain.duty import LAST_MINUTE, leaves_last_minute

MAX_ROWS = 10_000  # per sheet
MAX_CELL = 2_000  # characters; the longest column (notes) allows this much

ColumnType = Literal[
    "text", "phone", "bool", "weekday", "clock", "year", "worker_role", "shift_role", "names"
]


@dataclass(frozen=True, slots=True)
class Column:
    key: str  # the English header, also the key of a parsed row
    zh: str  # the header offices write
    kind: ColumnType = "text"
    required: bool = False
    max_length: int = 100
    aliases: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.zh} ({self.key})"


@dataclass(frozen=True, slots=True)
class SheetKind:
    key: str  # the English sheet name
    zh: str
    columns: tuple[Column, ...]
    aliases: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        return (self.key, self.zh, *self.aliases)

    def column(self, header: str) -> Column | None:
        wanted = _normal(header)
        for column in self.columns:
            if wanted in {_normal(n) for n in (column.key, column.zh, *column.aliases)}:
                return column
        return None


def _normal(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("（", "(").replace("）", ")")


_COMMUNITY = Column("community", "社区", required=True)
_GRID = Column("grid", "网格", required=True)

LEVELS = SheetKind(
    "levels",
    "组织架构",
    (
        Column("district", "区", required=True, aliases=("区县",)),
        Column("street", "街道"),
        Column("community", "社区"),
    ),
    aliases=("区街道社区",),
)
GRIDS = SheetKind(
    "grids",
    "网格",
    (
        _COMMUNITY,
        Column("grid", "网格", required=True, aliases=("网格名称",)),
        Column("backup_worker_phone", "备班网格员电话", "phone", aliases=("备班电话",)),
    ),
)
WORKERS = SheetKind(
    "workers",
    "工作人员",
    (
        Column("name", "姓名", required=True),
        Column("phone", "电话", "phone", required=True, aliases=("手机", "手机号")),
        Column("role", "角色", "worker_role", required=True, aliases=("岗位",)),
        Column("community", "社区"),
        Column("street", "街道"),
        Column("grids", "网格", "names", max_length=500),
    ),
    aliases=("网格员",),
)
SHIFTS = SheetKind(
    "shifts",
    "班次",
    (
        Column("worker_phone", "工作人员电话", "phone", required=True, aliases=("电话",)),
        Column("community", "社区"),
        Column("grid", "网格"),
        Column("weekday", "星期", "weekday", required=True),
        Column("start", "开始", "clock", required=True, aliases=("开始时间",)),
        Column("end", "结束", "clock", required=True, aliases=("结束时间",)),
        Column("role", "班别", "shift_role", aliases=("shift_role",)),
    ),
    aliases=("值班表",),
)
HOUSEHOLDS = SheetKind(
    "households",
    "住户",
    (
        _COMMUNITY,
        _GRID,
        Column("address", "地址", required=True, max_length=200, aliases=("住址",)),
        Column("lives_alone", "独居", "bool", aliases=("是否独居",)),
        Column("medical_notes", "健康备注", max_length=2000, aliases=("健康状况",)),
        Column("notes", "备注", max_length=2000),
    ),
)
RESIDENTS = SheetKind(
    "residents",
    "居民",
    (
        _COMMUNITY,
        Column("household_address", "住户地址", required=True, max_length=200),
        Column("name", "姓名", required=True),
        Column("phone", "电话", "phone", aliases=("手机",)),
        Column("birth_year", "出生年份", "year"),
    ),
)
DEVICES = SheetKind(
    "devices",
    "设备",
    (
        Column("device_id", "设备编号", required=True, max_length=64),
        Column("profile", "型号", required=True, max_length=64, aliases=("设备型号",)),
        Column("edge_id", "边缘网关", required=True, max_length=64, aliases=("网关",)),
        Column("community", "社区"),
        Column("household_address", "住户地址", max_length=200),
        Column("grid", "网格"),
        Column("place", "位置", aliases=("安装位置",)),
        Column("bus", "总线"),
        Column("bus_address", "总线地址", max_length=64, aliases=("address",)),
    ),
)

#: In the order they are imported: what a sheet refers to is imported before it.
KINDS: tuple[SheetKind, ...] = (LEVELS, GRIDS, WORKERS, SHIFTS, HOUSEHOLDS, RESIDENTS, DEVICES)

WORKER_ROLES = {
    "网格员": "grid_worker",
    "社区服务站": "community_station",
    "社区": "community_station",
    "街道中心": "street_centre",
    "街道市民服务中心": "street_centre",
    "街道": "street_centre",
    "96890": "hotline_desk",
    "热线": "hotline_desk",
    "96890热线": "hotline_desk",
    "热线坐席": "hotline_desk",
}
SHIFT_ROLES = {"主班": "primary", "备班": "backup"}
WEEKDAYS = {
    **{name: i for i, name in enumerate("一二三四五六日")},
    "天": 6,
    **{f"星期{c}": i for i, c in enumerate("一二三四五六日")},
    **{f"周{c}": i for i, c in enumerate("一二三四五六日")},
    "星期天": 6,
    "周天": 6,
    **{name.lower(): i for i, name in enumerate(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))},
    **{
        name: i
        for i, name in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
    **{str(i): i for i in range(7)},  # 0 = Monday, as the API
}
_TRUE = {"是", "y", "yes", "true", "1", "独居", "√"}
_FALSE = {"否", "n", "no", "false", "0", ""}
_PHONE = re.compile(r"^\+?[0-9][0-9 -]{4,30}$")
_CLOCK = re.compile(r"^([01]?[0-9]|2[0-3])[:：]([0-5][0-9])(?:[:：]([0-5][0-9]))?$")
_NUMBER = re.compile(r"^[0-9][0-9 .-]*$")
_LIST_SPLIT = re.compile(r"[、,，;；/]")


@dataclass(frozen=True, slots=True)
class SheetProblem:
    """One thing wrong, where a person finds it: sheet, row (1 = header), column."""

    sheet: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = [self.sheet]
        if self.row is not None:
            where.append(f"row {self.row} / 第{self.row}行")
        if self.column is not None:
            where.append(self.column)
        return f"{', '.join(where)}: {self.message}"


@dataclass(frozen=True, slots=True)
class RawSheet:
    """A sheet as text cells: its name, the header row, the data rows with their numbers."""

    name: str
    header: Sequence[str]
    rows: Sequence[tuple[int, Sequence[str]]]


@dataclass(frozen=True, slots=True)
class Row:
    """One data row, typed; ``bad`` names the columns whose cells were refused."""

    sheet: str
    number: int
    values: Mapping[str, Any]
    bad: frozenset[str] = field(default_factory=frozenset)

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def text(self, key: str) -> str:
        value = self.values.get(key)
        return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class ParsedSheet:
    kind: SheetKind
    name: str
    rows: list[Row]
    columns: frozenset[str]  # keys of the columns the sheet has


def kind_of(sheet_name: str) -> SheetKind | None:
    wanted = _normal(sheet_name)
    for kind in KINDS:
        if wanted in {_normal(n) for n in kind.names()}:
            return kind
    return None


def parse_sheet(kind: SheetKind, sheet: RawSheet) -> tuple[ParsedSheet | None, list[SheetProblem]]:
    """Typed rows of ``sheet``, and a problem for every bad header or cell.

    A header problem (unknown, repeated or missing column) stops the sheet: its rows could
    not be read right. Cell problems leave the row in, with the column in ``bad``, so the
    import can still check the rest of the row and report everything at once.
    """
    problems: list[SheetProblem] = []
    columns: list[Column | None] = []
    seen: dict[str, int] = {}
    for index, header in enumerate(sheet.header, start=1):
        name = header.strip()
        if not name:
            columns.append(None)
            continue
        column = kind.column(name)
        if column is None:
            known = "、".join(c.zh for c in kind.columns)
            problems.append(
                SheetProblem(
                    sheet.name,
                    1,
                    name,
                    f"unknown column {name!r} / 未知列 {name!r}（可用：{known}）",
                )
            )
        elif column.key in seen:
            problems.append(
                SheetProblem(
                    sheet.name,
                    1,
                    name,
                    f"column appears twice (also column {seen[column.key]}) "
                    f"/ 列重复（第 {seen[column.key]} 列）",
                )
            )
            column = None
        else:
            seen[column.key] = index
        columns.append(column)
    present = frozenset(seen)
    problems += [
        SheetProblem(
            sheet.name,
            1,
            column.label,
            f"required column {column.zh} ({column.key}) is missing / 缺少必填列 {column.zh}",
        )
        for column in kind.columns
        if column.required and column.key not in present
    ]
    if len(sheet.rows) > MAX_ROWS:
        problems.append(
            SheetProblem(
                sheet.name,
                None,
                None,
                f"{len(sheet.rows)} rows; at most {MAX_ROWS} a sheet / "
                f"共 {len(sheet.rows)} 行，每个工作表最多 {MAX_ROWS} 行",
            )
        )
    if problems:
        return None, problems
    rows: list[Row] = []
    for number, cells in sheet.rows:
        if not any(c.strip() for c in cells):
            continue  # a blank line between blocks
        if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns) :]):
            problems.append(
                SheetProblem(
                    sheet.name,
                    number,
                    None,
                    f"{len(cells)} values but {len(columns)} columns / "
                    f"有 {len(cells)} 个值，但只有 {len(columns)} 列",
                )
            )
            continue
        values: dict[str, Any] = {}
        bad: set[str] = set()
        for column, cell in zip(columns, cells, strict=False):
            if column is None:
                continue
            value, message = parse_cell(column, cell)
            if message is not None:
                problems.append(SheetProblem(sheet.name, number, column.label, message))
                bad.add(column.key)
            else:
                values[column.key] = value
        for column in kind.columns:
            if column.required and column.key not in bad and values.get(column.key) in (None, ""):
                problems.append(SheetProblem(sheet.name, number, column.label, "required / 必填"))
                bad.add(column.key)
        rows.append(Row(sheet.name, number, values, frozenset(bad)))
    return ParsedSheet(kind, sheet.name, rows, present), problems


def parse_cell(column: Column, raw: str) -> tuple[Any, str | None]:
    """The typed value of one cell, or the reason it is refused (bilingual)."""
    text = raw.strip()
    if len(text) > column.max_length:
        return None, (
            f"{len(text)} characters; at most {column.max_length} / "
            f"共 {len(text)} 个字符，最多 {column.max_length} 个"
        )
    if formula_like(text):
        return None, (
            f"formula text is refused: {text[:20]!r} (a cell may not start with = + - @) / "
            "不接受公式文本（单元格不能以 = + - @ 开头）"
        )
    if column.kind == "text":
        return text, None
    if column.kind == "phone":
        if not text:
            return None, None
        compact = text.replace("\u00a0", "")
        if not _PHONE.match(compact):
            return None, (
                f"{text!r} is not a phone number (digits, spaces, dashes) / 电话号码格式不正确"
            )
        return compact, None
    if column.kind == "bool":
        lowered = text.lower()
        if lowered in _TRUE:
            return True, None
        if lowered in _FALSE:
            return False, None
        return None, f"{text!r}: write 是 or 否 / 请填写“是”或“否”"
    if column.kind == "weekday":
        found = WEEKDAYS.get(text.lower())
        if found is None:
            return None, f"{text!r} is not a weekday (一…日, Mon…Sun, 0…6) / 星期格式不正确"
        return found, None
    if column.kind == "clock":
        return _clock(text, is_end=column.key == "end")
    if column.kind == "year":
        if not text:
            return None, None
        if not text.isdigit() or not 1880 <= int(text) <= 2100:
            return None, f"{text!r} is not a year between 1880 and 2100 / 出生年份不正确"
        return int(text), None
    if column.kind == "worker_role":
        role = WORKER_ROLES.get(text) or (text if text in WORKER_ROLES.values() else None)
        if role is None:
            return None, (
                f"{text!r} is not a role: 网格员, 社区服务站, 街道中心, 96890热线 "
                f"(grid_worker, community_station, street_centre, hotline_desk) / 角色不正确"
            )
        return role, None
    if column.kind == "shift_role":
        if not text:
            return "primary", None
        role = SHIFT_ROLES.get(text) or (text if text in SHIFT_ROLES.values() else None)
        if role is None:
            return None, f"{text!r}: write 主班 or 备班 (primary, backup) / 班别应为主班或备班"
        return role, None
    names = [part.strip() for part in _LIST_SPLIT.split(text) if part.strip()]
    return names, None


def _clock(text: str, *, is_end: bool) -> tuple[time | None, str | None]:
    match = _CLOCK.match(text)
    if match is None:
        return None, f"{text!r} is not a time of day such as 08:00 / 时间格式不正确（如 08:00）"
    hour, minute, second = (int(g) if g else 0 for g in match.groups())
    value = time(hour, minute, second)
    if is_end and leaves_last_minute(value):
        return None, LAST_MINUTE
    return value, None


def formula_like(text: str) -> bool:
    """Text a spreadsheet would run as a formula (or DDE) when the register is opened again."""
    if not text:
        return False
    if text[0] in "=@\t\r":
        return True
    if text[0] in "+-":
        return not _NUMBER.match(text[1:])
    return False
