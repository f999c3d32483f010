"""The house's layers, checked from the source: who may import whom.

Why a test: "the hub never imports the edge" held only as long as nobody needed a helper
from the other side; the device profiles lived in ``edge/`` and the hub imported them for
years. The packages shared by both sides (``contract``, ``profiles``) import neither, and
``hub.domain`` (pure rules) imports no database, web or MQTT library.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: package → top-level packages of this repository it must never import
FORBIDDEN = {
    "hub": {"edge", "simulators", "bench", "tests"},
    "edge": {"hub", "simulators", "bench", "tests"},
    "contract": {"hub", "edge", "profiles", "simulators", "bench", "tests"},
    "profiles": {"hub", "edge", "simulators", "bench", "tests"},
}
#: hub.domain does no I/O: none of these (nor the hub's I/O packages) in the pure rules
DOMAIN_FORBIDDEN = {"sqlalchemy", "aiosqlite", "fastapi", "paho", "httpx", "asyncio"}
DOMAIN_FORBIDDEN_HUB = ("hub.db", "hub.api", "hub.services", "hub.handlers", "hub.notify")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names), at any depth of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_no_forbidden_side(package: str) -> None:
    found = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources(package)
        for name in sorted(imported_modules(path))
        if name.split(".")[0] in FORBIDDEN[package]
    ]
    assert not found, "\n".join(found)


def test_hub_domain_does_no_io() -> None:
    found = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources("hub/domain")
        for name in sorted(imported_modules(path))
        if name.split(".")[0] in DOMAIN_FORBIDDEN or name.startswith(DOMAIN_FORBIDDEN_HUB)
    ]
    assert not found, "\n".join(found)


def test_the_checker_sees_imports() -> None:
    """The check would pass vacuously if it read nothing: the hub does import profiles."""
    assert any("profiles.model" in imported_modules(p) for p in sources("hub"))
