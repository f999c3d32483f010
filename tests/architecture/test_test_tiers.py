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
    tiers = ("UNIT_TIERS", "PARALLEL_TIERS", "SERIAL_TIERS")
    listed = [folder for name in tiers for folder in _tier(makefile, name)]
    folders = sorted(
        f"tests/{p.name}"
        for p in (ROOT / "tests").iterdir()
        if p.is_dir() and any(p.rglob("test_*.py"))
    )
    assert not list((ROOT / "tests").glob("test_*.py")), "a test file outside every tier"
    assert sorted(listed) == folders


def test_timed_tests_exist_in_a_parallel_tier() -> None:
    """TIMED_TESTS are left out of the parallel run and run alone: a name that matches no
    file would run nowhere."""
    makefile = (ROOT / "Makefile").read_text()
    parallel = _tier(makefile, "PARALLEL_TIERS")
    for path in _tier(makefile, "TIMED_TESTS"):
        assert (ROOT / path).is_file(), path
        assert any(path.startswith(folder + "/") for folder in parallel), path
