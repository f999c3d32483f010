"""Configuration files with every field wrong in turn.

For a complete, valid configuration of the edge and of the hub, each setting is replaced
in turn by a value of the wrong type or out of range; loading must fail with a
:class:`ConfigError` that names the file and the setting's dotted path — the message an
operator reads when the process exits with status 2. New settings are covered as soon as
they appear in the example below or get a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from contract.config_file import ConfigError, load_config
from edge.config import EdgeConfig
from hub.config import HubConfig

WRONG_VALUES: list[Any] = [{"wrong": [1, 2]}, [["nested"]], "no-such-value-☃", -(10**30)]

EDGE_EXAMPLE: dict[str, Any] = {
    "edge_id": "edge-building-7",
    "serial_buses": [{"port": "/dev/ttyUSB0", "profile": "cb-100"}],
}
HUB_EXAMPLE: dict[str, Any] = {
    "api": {"token": "t" * 32},
    "webhooks": [{"url": "http://127.0.0.1:9/hook"}],
}


def _complete(model: type[BaseModel], example: dict[str, Any]) -> dict[str, Any]:
    """The example with every default filled in, as plain YAML-able data."""
    dumped: dict[str, Any] = model.model_validate(example).model_dump(mode="json")
    revealed: dict[str, Any] = _reveal(dumped, example)
    return revealed


def _reveal(dumped: Any, example: Any) -> Any:
    # model_dump masks secrets as "**********"; put the example's real values back.
    if isinstance(dumped, dict):
        return {
            k: _reveal(v, example.get(k) if isinstance(example, dict) else None)
            for k, v in dumped.items()
        }
    if isinstance(dumped, list):
        return [
            _reveal(v, example[i] if isinstance(example, list) and i < len(example) else None)
            for i, v in enumerate(dumped)
        ]
    return example if dumped == "**********" else dumped


def _leaves(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(obj, dict) and obj:
        return [p for k, v in obj.items() for p in _leaves(v, (*prefix, k))]
    if isinstance(obj, list) and obj:
        return [p for i, v in enumerate(obj) for p in _leaves(v, (*prefix, i))]
    return [prefix]


def _cases(model: type[BaseModel], example: dict[str, Any]) -> list[Any]:
    complete = _complete(model, example)
    return [
        pytest.param(model, complete, path, id=".".join(map(str, path)))
        for path in _leaves(complete)
    ]


@pytest.mark.parametrize(
    ("model", "complete", "path"),
    _cases(EdgeConfig, EDGE_EXAMPLE) + _cases(HubConfig, HUB_EXAMPLE),
)
def test_every_field_wrong_in_turn(
    model: type[BaseModel], complete: dict[str, Any], path: tuple[Any, ...], tmp_path: Path
) -> None:
    load_config(_write(tmp_path, complete), model, env_prefix="X", environ={})  # valid as is
    dotted = ".".join(map(str, path))
    refused = 0
    for wrong in WRONG_VALUES:
        config = _with(complete, path, wrong)
        file = _write(tmp_path, config)
        try:
            load_config(file, model, env_prefix="X", environ={})
        except ConfigError as err:
            message = str(err)
            assert message.startswith(str(file)), message
            assert dotted in message, f"{dotted!r} not named in: {message}"
            refused += 1
    # Free-form settings (e.g. a description) may take a string; none may take them all.
    assert refused >= len(WRONG_VALUES) - 1, f"{dotted} accepted wrong values"


def test_unknown_settings_are_named(tmp_path: Path) -> None:
    for model, example in ((EdgeConfig, EDGE_EXAMPLE), (HubConfig, HUB_EXAMPLE)):
        file = _write(tmp_path, {**_complete(model, example), "uplnik": {"batch": 5}})
        with pytest.raises(ConfigError, match=r"uplnik: Extra inputs are not permitted"):
            load_config(file, model, env_prefix="X", environ={})


def _with(complete: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    copy: Any = yaml.safe_load(yaml.safe_dump(complete))
    node = copy
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return copy  # type: ignore[no-any-return]


def _write(tmp_path: Path, config: dict[str, Any]) -> Path:
    file = tmp_path / "config.yaml"
    file.write_text(yaml.safe_dump(config, allow_unicode=True))
    return file
