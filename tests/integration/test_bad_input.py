"""Acceptance: bad input is quarantined or refused with a readable reason, never dropped
silently and never a crash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from edge.codecs.cb100 import FrameType
from simulators.button import SimulatedButtonBus
from simulators.stack import REPO_ROOT, Stack
from tests.conftest import wait_until
from tests.integration.conftest import api

pytestmark = pytest.mark.integration


async def test_unknown_device_is_quarantined_with_reason(stack: Stack, tmp_path: Path) -> None:
    stack.start_hub()
    link = tmp_path / "bus0"
    async with SimulatedButtonBus([99999], link_path=link, retransmit_s=1.0) as bus:
        stack.start_edge("edge-demo", [str(link)])
        sos = bus.button(99999).press_sos()
        await wait_until(
            lambda: (
                (FrameType.LINK_ACK, sos.seq)
                in [(f.type, f.seq) for f in bus.button(99999).received]
            ),
            15,
            message="link ack",
        )
        async with api(stack) as client:

            async def quarantined() -> list[dict]:
                rows = (await client.get("/api/v1/quarantine")).json()
                return [r for r in rows if "cb100-99999" in r["reason"]]

            [row] = await wait_until(quarantined, 15, message="quarantine entry")
            assert "sos" in row["reason"]
            assert (await client.get("/api/v1/cases")).json() == []


async def test_malformed_mqtt_payload_is_quarantined(stack: Stack) -> None:
    stack.start_hub()
    topic = "community/v1/edge/edge-x/events/telemetry"
    subprocess.run(
        ["mosquitto_pub", "-p", str(stack.broker_port), "-q", "1", "-t", topic, "-m", "{not json"],
        check=True,
    )
    async with api(stack) as client:

        async def quarantined() -> list[dict]:
            return [
                r for r in (await client.get("/api/v1/quarantine")).json() if r["topic"] == topic
            ]

        [row] = await wait_until(quarantined, 15, message="quarantine entry")
        assert "not valid UTF-8 JSON" in row["reason"]
        assert row["payload"] == "{not json"
        # and the hub still works
        assert (await client.get("/api/v1/cases")).status_code == 200


async def test_api_refuses_bad_requests_readably(stack: Stack) -> None:
    stack.start_hub()
    async with httpx.AsyncClient(base_url=stack.hub_url) as anonymous:
        response = await anonymous.get("/api/v1/cases")
        assert response.status_code == 401
        bad_token = await anonymous.get(
            "/api/v1/cases", headers={"Authorization": "Bearer wrong-token-0123456789"}
        )
        assert bad_token.status_code == 401
    async with api(stack) as client:
        response = await client.post("/api/v1/cases", json={"household_id": "abc", "note": 1})
        assert response.status_code == 422
        assert "household_id" in response.json()["detail"]
        assert "note" in response.json()["detail"]  # every bad field named
        response = await client.post("/api/v1/cases/999/acknowledge", json={"worker_id": 1})
        assert response.status_code == 404
        response = await client.post(
            "/api/v1/cases/1/resolve", json={"worker_id": 1, "outcome": "fixed-it"}
        )
        assert response.status_code == 422 and "outcome" in response.json()["detail"]


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize("module", ["hub", "edge"])
def test_missing_config_file_names_the_file(module: str, tmp_path: Path) -> None:
    result = run_cli("-m", module, "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert f"{tmp_path / 'nope.yaml'}: configuration file not found" in result.stderr


def test_corrupt_hub_config_names_file_and_field(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text("api:\n  token: 0123456789abcdef0123\n  port: many\n")
    result = run_cli("-m", "hub", "--config", str(config))
    assert result.returncode == 2
    assert f"{config}: api.port:" in result.stderr
    config.write_text("api: {token: 0123456789abcdef0123\n")  # broken YAML
    result = run_cli("-m", "hub", "--config", str(config))
    assert result.returncode == 2 and f"{config}: line" in result.stderr


def test_edge_config_with_unknown_profile_and_broken_profile(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        f"edge_id: e1\nprofiles_dir: {REPO_ROOT / 'device_profiles'}\n"
        "serial_buses: [{port: /dev/null, profile: no-such-model}]\n"
    )
    result = run_cli("-m", "edge", "--config", str(config))
    assert result.returncode == 2
    assert f"{config}: serial_buses[0].profile: unknown profile 'no-such-model'" in result.stderr

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    good = (REPO_ROOT / "device_profiles" / "cb-100.yaml").read_text()
    (profiles / "cb-100.yaml").write_text(good.replace("lane: alarm", "lane: urgent", 1))
    config.write_text(f"edge_id: e1\nprofiles_dir: {profiles}\n")
    result = run_cli("-m", "edge", "--config", str(config))
    assert result.returncode == 2
    assert "cb-100.yaml: events[" in result.stderr and "lane" in result.stderr
