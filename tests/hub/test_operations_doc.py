"""docs/operations.md cannot drift from the code (issue #16).

Its roles table is the route table's declared roles, its import reference lists the
sheets and columns the importer reads, and the committed template workbook is what
``scripts/make_registry_template.py`` builds. On a difference the failure prints the
text to paste.
"""

from __future__ import annotations

import importlib.util
import re

import openpyxl

from hub.domain.access import Role
from hub.domain.office_sheets import KINDS
from simulators.stack import REPO_ROOT
from tests.hub.test_route_roles import PUBLIC, app_endpoints, declared_roles

GUIDE = REPO_ROOT / "docs" / "operations.md"
PEOPLE = (Role.ADMIN, Role.OPERATOR, Role.HOTLINE, Role.WORKER)


def section(name: str) -> str:
    text = GUIDE.read_text(encoding="utf-8")
    found = re.search(rf"<!-- {name}:begin -->\n(.*?)<!-- {name}:end -->", text, re.S)
    assert found, f"docs/operations.md lacks the {name} markers"
    return found.group(1)


def roles_table() -> str:
    lines = ["| route | admin | operator | hotline | worker |", "|---|---|---|---|---|"]
    rows = []
    for endpoint in app_endpoints():
        if endpoint.path in PUBLIC or not endpoint.path.startswith("/api/"):
            continue
        declared = declared_roles(endpoint.dependant)
        allowed = frozenset.intersection(*declared) if declared else frozenset()
        for method in sorted(endpoint.methods - {"HEAD"}):
            marks = " | ".join("✓" if role in allowed else "" for role in PEOPLE)
            rows.append(f"| `{method} {endpoint.path}` | {marks} |")
    return "\n".join(lines + sorted(rows)) + "\n"


def sheets_table() -> str:
    lines = ["| sheet | columns |", "|---|---|"]
    for kind in KINDS:
        columns = ", ".join(
            f"{c.zh} ({c.key}){chr(92) + '*' if c.required else ''}" for c in kind.columns
        )
        lines.append(f"| {kind.zh} ({kind.key}) | {columns} |")
    return "\n".join(lines) + "\n"


def test_the_roles_table_is_the_route_tables_roles() -> None:
    expected = roles_table()
    assert section("roles") == expected, "paste into docs/operations.md:\n" + expected


def test_the_import_reference_lists_the_sheets_and_columns_read() -> None:
    expected = sheets_table()
    assert section("sheets") == expected, "paste into docs/operations.md:\n" + expected


def test_the_committed_template_is_what_the_script_builds() -> None:
    spec = importlib.util.spec_from_file_location(
        "make_registry_template", REPO_ROOT / "scripts" / "make_registry_template.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    built = script.build()
    committed = openpyxl.load_workbook(REPO_ROOT / "docs" / "registry-template.xlsx")
    assert committed.sheetnames == built.sheetnames == [k.zh for k in KINDS]
    for name in built.sheetnames:
        rows = [list(r) for r in committed[name].iter_rows(values_only=True)]
        assert rows == [list(r) for r in built[name].iter_rows(values_only=True)], name
