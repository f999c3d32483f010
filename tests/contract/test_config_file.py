from pathlib import Path

import pytest
from pydantic import BaseModel

from contract.config_file import ConfigError, load_config


class Inner(BaseModel):
    model_config = {"extra": "forbid"}
    port: int = 1


class Model(BaseModel):
    model_config = {"extra": "forbid"}
    name: str
    inner: Inner = Inner()


def test_loads_file_with_env_override(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("name: a\ninner: {port: 2}\n")
    cfg = load_config(p, Model, env_prefix="X", environ={"X__INNER__PORT": "3"})
    assert cfg.name == "a" and cfg.inner.port == 3


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: configuration file not found"):
        load_config(tmp_path / "nope.yaml", Model, env_prefix="X", environ={})


def test_bad_field_names_file_and_field(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("name: a\ninner: {port: many}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: inner\.port: "):
        load_config(p, Model, env_prefix="X", environ={})


def test_corrupt_yaml_names_line(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("name: [a\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: line \d+"):
        load_config(p, Model, env_prefix="X", environ={})


def test_unknown_key_and_non_mapping(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("name: a\nnmae: b\n")
    with pytest.raises(ConfigError, match="nmae: Extra inputs"):
        load_config(p, Model, env_prefix="X", environ={})
    p.write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(p, Model, env_prefix="X", environ={})
