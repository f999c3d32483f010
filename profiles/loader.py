"""Read device profile YAML files and validate them before anything connects.

Why its own loader rather than ``contract.config_file``: profiles are not overridable by
environment variables, duplicate YAML keys must be errors (PyYAML silently keeps the last
one, which would hide a mistyped ``lane:`` twice), and every message must point at file
and field in the way a profile author reads them: ``cb-100.yaml: events[1].lane: …``.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from yaml.constructor import ConstructorError
from yaml.error import Mark
from yaml.nodes import MappingNode

from profiles.errors import ProfileError
from profiles.model import RULE_ERROR, UNION_TAGS, DeviceProfile

PROFILE_SUFFIXES = (".yaml", ".yml")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        self.flatten_mapping(node)
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            if isinstance(key, Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _without_tags(loc: tuple[int | str, ...]) -> list[int | str]:
    """``loc`` without the union tags pydantic inserts (``points[0].modbus.table``)."""
    kept: list[int | str] = []
    for part in loc:
        after_choice = bool(kept) and (isinstance(kept[-1], int) or kept[-1] == "transport")
        if isinstance(part, str) and part in UNION_TAGS and after_choice:
            continue
        kept.append(part)
    return kept


def _location(loc: tuple[int | str, ...], extra: str = "") -> str:
    where = ""
    for part in _without_tags(loc):
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    if extra:
        where += extra if extra.startswith("[") or not where else f".{extra}"
    return where or "(top level)"


def _describe(source: str, item: ErrorDetails) -> str:
    if item["type"] == RULE_ERROR:
        ctx = item.get("ctx", {})
        return f"{source}: {_location(item['loc'], str(ctx.get('path', '')))}: {ctx['problem']}"
    return f"{source}: {_location(item['loc'])}: {item['msg']}"


def parse_profile(text: str, source: str) -> DeviceProfile:
    """Validate profile YAML ``text``; ``source`` names it in error messages."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        mark: Mark | None = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ProfileError(f"{source}: {where}not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: (top level): expected a mapping with identity, events, …")
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as err:
        raise ProfileError("\n".join(_describe(source, e) for e in err.errors())) from None


def load_profile(path: str | Path) -> DeviceProfile:
    """Read and validate one profile file. Raises ProfileError naming file and field."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{source}: device profile not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ProfileError(f"{source}: cannot read device profile: {err}") from None
    return parse_profile(text, source)


def load_profiles(directory: str | Path) -> dict[str, DeviceProfile]:
    """Every ``*.yaml``/``*.yml`` profile in ``directory``, keyed by ``identity.name``."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ProfileError(f"{folder}: device profile directory not found")
    profiles: dict[str, DeviceProfile] = {}
    origin: dict[str, Path] = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix in PROFILE_SUFFIXES):
        profile = load_profile(path)
        name = profile.identity.name
        if name in profiles:
            raise ProfileError(
                f"{path}: identity.name: duplicate profile name {name!r} (also {origin[name]})"
            )
        profiles[name] = profile
        origin[name] = path
    return profiles
