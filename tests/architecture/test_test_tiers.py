"""Every test folder runs in `make test`: each is in exactly one of the Makefile's tier lists
(a folder in neither would never run in CI; in both, it would run twice)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tier(makefile: str, name: str) -> list[str]:
    match = re.search(rf"^{name}\s*:=\s*((?:.*\\\n)*.*)$", makefile, re.M)
    assert match, f"{name} is not set in the Makefile"
    return match.group(1).replace("\\\n", " ").split()


def test_every_test_folder_is_in_exactly_one_tier() -> None:
    makefile = (ROOT / "Makefile").read_text()
    listed = _tier(makefile, "UNIT_TIERS") + _tier(makefile, "PROCESS_TIERS")
    folders = sorted(
        f"tests/{p.name}"
        for p in (ROOT / "tests").iterdir()
        if p.is_dir() and any(p.rglob("test_*.py"))
    )
    assert not list((ROOT / "tests").glob("test_*.py")), "a test file outside every tier"
    assert sorted(listed) == folders
