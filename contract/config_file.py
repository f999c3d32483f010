"""Load a YAML configuration file into a pydantic model, with environment overrides.

Edge, hub and simulators all configure themselves this way, so errors look the same
everywhere: ``ConfigError("edge.yaml: uplink.port: Input should be a valid integer")``.

Environment overrides use the prefix and double underscores for nesting:
``EDGE__UPLINK__PASSWORD=...`` sets ``uplink.password``. Secrets belong there, not in files
committed to a repository. Values are parsed as YAML scalars, so ``EDGE__UPLINK__PORT=1884``
is an integer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigError(Exception):
    """A configuration file is missing, unreadable or invalid. The text names file and field."""


def _apply_env(data: dict[str, Any], prefix: str, environ: Mapping[str, str]) -> None:
    head = prefix.upper() + "__"
    for key, raw in environ.items():
        if not key.startswith(head):
            continue
        path = [p.lower() for p in key[len(head) :].split("__") if p]
        if not path:
            continue
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        try:
            node[path[-1]] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            node[path[-1]] = raw


def format_validation_error(source: str, err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"{source}: {where}: {item['msg']}")
    return "\n".join(lines)


def load_config(
    path: str | Path | None,
    model: type[ModelT],
    *,
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
) -> ModelT:
    """Read ``path`` (may be None: defaults + environment only) and validate it as ``model``."""
    data: dict[str, Any] = {}
    source = str(path) if path is not None else f"({env_prefix} defaults)"
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{p}: configuration file not found") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{p}: cannot read configuration file: {err}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            raise ConfigError(f"{p}: {where}not valid YAML: {err}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: (top level): expected a mapping of settings")
        data = loaded
    _apply_env(data, env_prefix, os.environ if environ is None else environ)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(source, err)) from None
