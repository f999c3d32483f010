"""Write ``docs/registry-template.xlsx``: the office's import workbook with example rows.

Run ``.venv/bin/python scripts/make_registry_template.py`` after changing the sheets
(:mod:`hub.domain.office_sheets`) or the examples below, and commit the file. The
examples are the community docs/operations.md sets up (and its test imports): one
street, one community, two grids, a worker per grid, a backup for both, the community
station, the street centre and the 96890 desk, two households, a call button behind
edge ``edge-1``. Headers are the Chinese ones offices write; English ones work too.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font

from hub.domain.office_sheets import KINDS

OUT = Path(__file__).resolve().parents[1] / "docs" / "registry-template.xlsx"

WEEK = ("一", "二", "三", "四", "五", "六", "日")

EXAMPLES: dict[str, list[list[Any]]] = {
    "levels": [["示范区", "和平街道", "幸福里社区"]],
    "grids": [
        ["幸福里社区", "第一网格", "13800000003"],
        ["幸福里社区", "第二网格", "13800000003"],
    ],
    "workers": [
        ["王丽", "13800000001", "网格员", "幸福里社区", "", "第一网格"],
        ["赵敏", "13800000002", "网格员", "幸福里社区", "", "第二网格"],
        ["孙强", "13800000003", "网格员", "幸福里社区", "", "第一网格、第二网格"],
        ["周洁", "13800000004", "社区服务站", "幸福里社区", "", ""],
        ["吴刚", "13800000005", "街道中心", "", "和平街道", ""],
        ["郑芳", "13800000006", "96890热线", "", "和平街道", ""],
    ],
    "shifts": [
        # 第一网格: 王丽 all day, every day (start == end: 24 hours)
        *[["13800000001", "幸福里社区", "第一网格", day, "00:00", "00:00", "主班"] for day in WEEK],
        # 第二网格: 赵敏 by day, 孙强 overnight (end <= start: crosses midnight)
        *[["13800000002", "幸福里社区", "第二网格", day, "08:00", "20:00", "主班"] for day in WEEK],
        *[["13800000003", "幸福里社区", "第二网格", day, "20:00", "08:00", "主班"] for day in WEEK],
        # the community station's desk, office hours on weekdays (no grid: a desk shift)
        *[["13800000004", "", "", day, "08:30", "17:30", "主班"] for day in WEEK[:5]],
    ],
    "households": [
        ["幸福里社区", "第一网格", "幸福里小区3号楼2单元301室", "是", "高血压，长期服药", ""],
        ["幸福里社区", "第二网格", "幸福里小区8号楼1单元102室", "否", "", "子女同住"],
    ],
    "residents": [
        ["幸福里社区", "幸福里小区3号楼2单元301室", "张桂英", "13900000201", "1942"],
        ["幸福里社区", "幸福里小区8号楼1单元102室", "李德福", "", "1938"],
        ["幸福里社区", "幸福里小区8号楼1单元102室", "王秀兰", "13900000203", "1940"],
    ],
    "devices": [
        [
            "cb100-77626",
            "cb-100",
            "edge-1",
            "幸福里社区",
            "幸福里小区3号楼2单元301室",
            "",
            "卧室床头",
            "/dev/ttyUSB0",
            "77626",
        ],
    ],
}


def build() -> Workbook:
    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for kind in KINDS:
        sheet = book.create_sheet(kind.zh)
        sheet.append([column.zh for column in kind.columns])
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in EXAMPLES[kind.key]:
            sheet.append([value if value != "" else None for value in row])
            for cell in sheet[sheet.max_row]:
                cell.number_format = "@"  # text: phone numbers and 00:00 stay as written
        for index, column in enumerate(kind.columns):
            width = max(10, column.max_length // 4 if column.max_length < 200 else 30)
            sheet.column_dimensions[chr(ord("A") + index)].width = min(width, 32)
    return book


def main() -> int:
    build().save(OUT)
    print(f"wrote {OUT}", file=sys.stderr)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
