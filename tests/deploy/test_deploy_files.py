"""Static checks of the deployment files (issue #14): cheap enough for ``make test``.

The compose stack itself runs in ``make compose-test`` (minutes, needs built images); here:
the compose file parses with docker-compose and keeps its rules (host network, no published
ports, secrets only from the environment), its broker, hub and edge configuration files
agree on the ports and validate against the hub's and the edge's own models, and the
edge's systemd unit passes ``systemd-analyze verify`` without a warning.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract.config_file import load_config
from edge.config import EdgeConfig
from hub.config import HubConfig

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
UNIT = ROOT / "deploy" / "edge" / "community-edge.service"
SECRETS = {
    "HUB_API_TOKEN": "t" * 24,
    "HUB_BROKER_PASSWORD": "p" * 24,
    "POSTGRES_PASSWORD": "q" * 24,
    "EDGE_BROKER_PASSWORD": "e" * 24,
}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yml").read_text())
    return loaded


def mosquitto_options(path: Path = DOCKER / "compose" / "mosquitto.conf") -> dict[str, str]:
    options: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            options.setdefault(key, value.strip())
    return options


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_the_compose_file_parses_with_docker_compose() -> None:
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", **SECRETS}
    done = subprocess.run(
        ["docker-compose", "-f", str(DOCKER / "compose.yml"), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_every_container_uses_the_host_network_and_publishes_nothing() -> None:
    services = compose()["services"]
    assert {"postgres", "hub-init", "mosquitto", "hub-a", "hub-b", "edge"} <= set(services)
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        assert "ports" not in service, name
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name


def test_secrets_come_only_from_the_environment() -> None:
    text = (DOCKER / "compose.yml").read_text()
    for variable in ("HUB__API__TOKEN", "HUB__BROKER__PASSWORD", "EDGE__BROKER__PASSWORD"):
        assert re.search(rf"{variable}: \$\{{\w+(:[?-][^}}]*)?\}}", text), variable
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD" in text


def test_the_broker_is_persistent_authenticated_and_has_an_acl() -> None:
    options = mosquitto_options()
    assert options["allow_anonymous"] == "false"
    assert options["persistence"] == "true"
    assert options["password_file"] == "/srv/broker/auth/passwd"
    assert options["acl_file"] == "/srv/broker/auth/acl"
    # As in production: a session is named by its account, and each hub replica has one.
    assert options["use_username_as_clientid"] == "true"
    assert options == {**options, **_production_broker_options()}


def _production_broker_options() -> dict[str, str]:
    """The options of docker/mosquitto.conf that the compose broker must share with it."""
    keys = ("allow_anonymous", "use_username_as_clientid", "persistence", "max_packet_size")
    production = mosquitto_options(DOCKER / "mosquitto.conf")
    return {key: production[key] for key in keys}


def test_hub_and_edge_configurations_validate_and_agree_on_the_ports() -> None:
    services = compose()["services"]
    mqtt_port = int(mosquitto_options()["listener"].split()[0])
    assert services["mosquitto"]["environment"]["MQTT_PORT"] == str(mqtt_port)
    hub_env = {"HUB__API__TOKEN": "t" * 24, "HUB__BROKER__PASSWORD": "p" * 24}
    for name in ("hub-a", "hub-b"):
        env = {k: v for k, v in services[name]["environment"].items() if k.startswith("HUB__")}
        env.update(hub_env)
        config = load_config(
            DOCKER / "compose" / "hub.yaml",
            HubConfig,
            env_prefix="HUB",
            environ={k: str(v) for k, v in env.items()},
        )
        assert config.cluster is not None and config.cluster.replica_id == name
        # Each replica has a broker account of its own, and all of them are in the files
        # that hub-init (with hub.yaml as it stands) and each replica write.
        assert config.process_broker().username == f"hub.{name}"
        assert set(config.cluster.replicas) == {"hub-a", "hub-b"}
        assert config.hub_id == "hub"  # replicas of one hub
        assert config.broker.port == mqtt_port
        assert config.broker_auth is not None and config.broker_auth.edge_broker is not None
        assert config.broker_auth.edge_broker.port == mqtt_port
        health = services[name]["environment"]["HEALTHCHECK_URL"]
        assert health == f"http://127.0.0.1:{config.api.port}/readyz"
        assert services[name]["pid"] == "service:mosquitto"  # SIGHUP reaches the broker
    edge = EdgeConfig.model_validate(yaml.safe_load((DOCKER / "compose" / "edge.yaml").read_text()))
    assert edge.broker.port == mqtt_port
    assert services["edge"]["environment"]["HEALTHCHECK_URL"] == (
        f"http://127.0.0.1:{edge.metrics_port}/metrics"
    )
    assert str(edge.data_dir) in " ".join(services["edge"]["volumes"])  # outbox on a volume


@pytest.mark.parametrize("script", sorted(DOCKER.glob("*.sh")), ids=lambda p: p.name)
def test_the_shell_scripts_parse(script: Path) -> None:
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_the_edge_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    """``--root``: verify checks that ExecStart exists; in a root of its own it does, as it
    will after the install steps of docs/install-edge.md, with systemd's own units."""
    units = Path("/usr/lib/systemd/system")
    if not units.is_dir():
        pytest.skip("no systemd unit directory")
    shutil.copytree(units, tmp_path / "usr/lib/systemd/system", symlinks=True)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, tmp_path / "etc/systemd/system" / UNIT.name)
    exec_start = re.search(r"^ExecStart=(\S+)", UNIT.read_text(), re.MULTILINE)
    assert exec_start is not None
    program = tmp_path / exec_start.group(1).lstrip("/")
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    done = subprocess.run(
        ["systemd-analyze", "verify", f"--root={tmp_path}", "--man=no", UNIT.name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_edge_unit_keeps_its_promises() -> None:
    """What docs/install-edge.md promises: own user, dialout, persistent outbox, restarts."""
    text = UNIT.read_text()
    for line in (
        "User=community-edge",
        "SupplementaryGroups=dialout",
        "StateDirectory=community-edge",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.MULTILINE), line
