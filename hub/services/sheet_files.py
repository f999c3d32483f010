"""An office's file as sheets of text cells: XLSX workbooks (openpyxl) and CSV files.

XLSX is read with openpyxl (a well-kept, pure-Python reader and writer of the format;
writing our own zip-and-XML parser would be a liability), in read-only mode, with formulas
as their text (``data_only=False``) so a formula is seen, and refused, rather than its
cached value silently imported. Numbers a spreadsheet made of phone numbers
(``13800000001.0``) and times of day (``datetime.time``) become the text a person typed.

CSV: UTF-8 (with or without the BOM spreadsheets add) or GB18030 (what Excel on a Chinese
Windows saves as "CSV"), one sheet per file, named by the caller (the file name). The
csv module's own limit of 128 KiB per field is raised to the file limit, so an over-long
cell is reported by the sheet rules with its row and column instead of failing the read.
"""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import datetime, time
from typing import Any

from hub.domain.office_sheets import RawSheet, SheetProblem

MAX_BYTES = 5 * 1024 * 1024
_XLSX_MAGIC = b"PK\x03\x04"

csv.field_size_limit(MAX_BYTES + 1)  # process-wide; bounded by the file limit anyway


class UnreadableFile(Exception):
    """The file as a whole cannot be read; ``problem`` says why, for the person."""

    def __init__(self, problem: SheetProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def is_xlsx(data: bytes) -> bool:
    return data.startswith(_XLSX_MAGIC)


def read_file(data: bytes, name: str) -> list[RawSheet]:
    """The sheets of an XLSX workbook, or the one sheet of a CSV file named ``name``."""
    if len(data) > MAX_BYTES:
        raise UnreadableFile(
            SheetProblem(
                name,
                None,
                None,
                f"the file has {len(data)} bytes; at most {MAX_BYTES} / "
                f"文件过大（最多 {MAX_BYTES} 字节）",
            )
        )
    if is_xlsx(data):
        return read_xlsx(data, name)
    return [read_csv(data, name)]


def read_csv(data: bytes, name: str) -> RawSheet:
    text = None
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if text is None:
        raise UnreadableFile(
            SheetProblem(
                name, None, None, "neither UTF-8 nor GB18030 text / 文件编码应为 UTF-8 或 GB18030"
            )
        )
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise UnreadableFile(
            SheetProblem(name, None, None, f"not a CSV file: {err} / 不是有效的 CSV 文件")
        ) from err
    return _sheet(name, records)


def read_xlsx(data: bytes, name: str) -> list[RawSheet]:
    import openpyxl  # the hub extra; imported here so the edge-only install never needs it

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as err:
        raise UnreadableFile(
            SheetProblem(
                name, None, None, f"not a readable XLSX workbook ({err}) / 无法读取该工作簿"
            )
        ) from err
    try:
        sheets = []
        for sheet in book.worksheets:
            records = [
                [_cell_text(value) for value in row] for row in sheet.iter_rows(values_only=True)
            ]
            sheets.append(_sheet(sheet.title, records))
        return sheets
    finally:
        book.close()


def _sheet(name: str, records: list[list[str]]) -> RawSheet:
    while records and not any(cell.strip() for cell in records[-1]):
        records.pop()
    if not records:
        return RawSheet(name, [], [])
    header = list(records[0])
    while header and not header[-1].strip():
        header.pop()
    return RawSheet(name, header, [(number, row) for number, row in enumerate(records[1:], 2)])


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        if value.time() == time(0) and value.year > 1900:
            return value.date().isoformat()
        return value.strftime("%H:%M")
    if isinstance(value, time):
        return value.strftime("%H:%M:%S" if value.second else "%H:%M")
    return str(value)
