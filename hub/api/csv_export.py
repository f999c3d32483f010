"""CSV for spreadsheets: UTF-8 with a byte-order mark, and no formulas smuggled in cells.

Why the BOM: Excel on Chinese Windows opens a CSV without one as GBK and shows the
Chinese headers and names as mojibake. Why the escaping: a resident's or worker's name is
typed by people, and a cell such as ``=HYPERLINK(...)`` would run as a formula in the
spreadsheet of whoever opens the export (OWASP "CSV injection"); such cells get a leading
apostrophe, which spreadsheets show as plain text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

BOM = "\ufeff"
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_text(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """The whole file: BOM, header, rows; every cell escaped; CRLF line ends (RFC 4180)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(c) for c in header])
    for row in rows:
        writer.writerow([safe_cell(c) for c in row])
    return BOM + out.getvalue()
