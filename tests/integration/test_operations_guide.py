"""Acceptance (issue #16): docs/operations.md, followed literally, gets a help call through.

The test reads the guide and runs its blocks in order, as an operator would paste them
into one shell: every ```` ```sh ops-test ```` block with bash (``set -euo pipefail``; the
exported variables of one block are there for the next), every ``ops-test background``
block as a long-running process (the broker, the hub, the edge, the worker's stream), and
every ``ops-file=NAME`` block is written to ``NAME``. On a fresh directory and database,
with a real Mosquitto that has broker auth, real ``python -m hub`` / ``python -m edge``
processes and a CB-100 button on a pty.

What the test changes, and only through what the guide itself offers: the variables of
section 1 (``REPO``, ``PY``, ``HUB_URL``, ``ADMIN_PASSWORD``) and ``HUB__``/``EDGE__``
environment overrides for ports and the button's serial port (free ports instead of
1883/8000, the pty instead of /dev/ttyUSB0); the broker's ``listener`` port in
mosquitto.conf (it has no environment); and, when the test runs as root, the guide's
commented ``# user root`` line is uncommented, as section 3 says to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from simulators.broker import find_mosquitto, free_port
from simulators.button import SimulatedButtonBus
from simulators.stack import REPO_ROOT
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

GUIDE = REPO_ROOT / "docs" / "operations.md"
BUTTON = 77626  # the template's call button, in 幸福里小区3号楼2单元301室
LONE_ADDRESS = "幸福里小区3号楼2单元301室"
BLOCK_S = 180.0  # one pasted block at most (the import migrates a fresh database first)
_FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.S | re.M)


@dataclass(frozen=True)
class Block:
    language: str
    tags: frozenset[str]
    text: str

    @property
    def file(self) -> str | None:
        for tag in self.tags:
            if tag.startswith("ops-file="):
                return tag.removeprefix("ops-file=")
        return None


def guide_blocks() -> list[Block]:
    blocks = []
    for language, info, text in _FENCE.findall(GUIDE.read_text(encoding="utf-8")):
        tags = frozenset(info.split())
        if "ops-test" in tags or any(t.startswith("ops-file=") for t in tags):
            blocks.append(Block(language, tags, text))
    return blocks


def test_the_guide_has_the_steps_this_test_relies_on() -> None:
    blocks = guide_blocks()
    files = [b.file for b in blocks if b.file]
    assert files == ["hub.yaml", "mosquitto.conf", "edge.yaml"]
    background = [b.text.split()[0:3] for b in blocks if "background" in b.tags]
    assert background == [
        ["mosquitto", "-c", "mosquitto.conf"],
        ["$PY", "-m", "hub"],
        ["$PY", "-m", "edge"],
        ["curl", "-sSN", "-H"],
    ]
    text = "\n".join(b.text for b in blocks)
    for step in ("broker-files", "create-account", "hub import", "/api/v1/edges", "/stream"):
        assert step in text, step


class Shell:
    """One operator's shell: blocks run in ``workdir`` and share exported variables."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.background: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.transcript: list[str] = []

    def _script(self, text: str) -> str:
        return f"set -euo pipefail\n[ -f .ops-state ] && . ./.ops-state\n{text}\n"

    async def run(self, text: str) -> str:
        script = self._script(text) + "export -p > .ops-state\n"
        done = await asyncio.to_thread(
            subprocess.run,
            ["bash", "-c", script],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            timeout=BLOCK_S,
            check=False,
        )
        output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        self.transcript.append(f"$ {text}\n{output}")
        assert done.returncode == 0, f"guide block failed ({done.returncode}):\n{text}\n{output}"
        return output

    def start(self, text: str) -> Path:
        log = self.workdir / f"background-{len(self.background)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", self._script(f"exec {text}")],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.background.append((process, log))
        return log

    def stop(self) -> None:
        for process, _ in reversed(self.background):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)

    def state(self, name: str) -> str:
        text = (self.workdir / ".ops-state").read_text()
        found = re.search(rf'^declare -x {name}="(.*)"$', text, re.M)
        assert found, f"{name} was not exported by the guide"
        return found.group(1)

    def logs(self) -> Iterator[str]:
        for _, log in self.background:
            yield f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}"


def notifications(log: Path) -> list[dict[str, Any]]:
    """``event: notification`` data of an SSE transcript."""
    found, event = [], ""
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "notification":
            found.append(json.loads(line[6:]))
    return found


async def test_the_operations_guide_followed_literally_gets_a_help_call_through(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "srv"
    workdir.mkdir()
    broker_port, hub_port = free_port(), free_port()
    link = tmp_path / "ttyUSB0"
    mosquitto_dir = str(Path(find_mosquitto()).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB__", "EDGE__"))}
    env |= {
        "PATH": f"{Path(sys.executable).parent}:{mosquitto_dir}:{env.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "REPO": str(REPO_ROOT),
        "PY": sys.executable,
        "HUB_URL": f"http://127.0.0.1:{hub_port}",
        "ADMIN_PASSWORD": "a-long-admin-password",
        "HUB__API__PORT": str(hub_port),
        "HUB__API__PUBLIC_BASE_URL": f"http://127.0.0.1:{hub_port}",
        "HUB__BROKER__PORT": str(broker_port),
        "HUB__BROKER_AUTH__EDGE_BROKER__PORT": str(broker_port),
        "EDGE__BROKER__PORT": str(broker_port),
        "EDGE__SERIAL_BUSES": json.dumps([{"port": str(link), "profile": "cb-100"}]),
    }
    for tool in ("curl", "jq", "openssl"):
        assert shutil.which(tool, path=env["PATH"]), f"the guide needs {tool}"
    shell = Shell(workdir, env)
    stream_log: Path | None = None
    try:
        async with SimulatedButtonBus([BUTTON], link_path=link, retransmit_s=1.0) as bus:
            for block in guide_blocks():
                if block.file is not None:
                    text = block.text
                    if block.file == "mosquitto.conf":
                        text = text.replace("listener 1883 ", f"listener {broker_port} ")
                        if os.geteuid() == 0:
                            text = text.replace("# user root", "user root")
                    (workdir / block.file).write_text(text, encoding="utf-8")
                elif "background" in block.tags:
                    log = shell.start(block.text)
                    if "/stream" in block.text:
                        stream_log = log
                else:
                    await shell.run(block.text)

            assert stream_log is not None
            await wait_until(
                lambda: "event: ready" in stream_log.read_text(errors="replace"),
                60,
                message="the worker's stream to open",
            )
            worker_id = int(shell.state("WORKER_ID"))
            # Edge online: the hub has its status, so the button's SOS has a way in.
            await wait_until(
                lambda: asyncio.to_thread(_edge_online, shell),
                90,
                interval=0.5,
                message="edge-1 online",
            )
            bus.button(BUTTON).press_sos()
            [note, *_] = await wait_until(
                lambda: notifications(stream_log), 90, message="the SOS on the worker's stream"
            )
        assert note["worker_id"] == worker_id and note["tier"] == "grid_worker"
        assert note["kind"] == "sos" and note["address"] == LONE_ADDRESS
        assert note["lives_alone"] is True and note["resident_name"] == "张桂英"
        provisioned = next(t for t in shell.transcript if t.startswith("$ CREDS="))
        assert '"username":"edge-1"' in provisioned and '"tls_ca_file":null' in provisioned
        assert '"broker_reloaded":true' in provisioned  # no restart: the edge got in after it
        imported = "\n".join(t for t in shell.transcript if "hub import" in t)
        assert "dry run: no problems" in imported and "imported:" in imported
    except BaseException:
        print("\n".join([*shell.transcript, *shell.logs()]))
        raise
    finally:
        shell.stop()


def _edge_online(shell: Shell) -> bool:
    with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
        output = subprocess.run(
            [
                "bash",
                "-c",
                '. ./.ops-state; curl -fsS -H "$AUTH" "$HUB_URL/api/v1/edges"',
            ],
            cwd=shell.workdir,
            env=shell.env,
            capture_output=True,
            timeout=10,
            check=False,
        ).stdout
        rows = json.loads(output or b"[]")
        return any(r["edge_id"] == "edge-1" and r["online"] for r in rows)
    return False
