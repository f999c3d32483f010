"""Acceptance (issue #3): ``python -m simulators community`` as a real process.

With 12 households (3 buildings, 34 devices) it reaches a state where every device kind
(call button, DL/T 645 meter, water meter, bin sensor, door, parcel locker) has reported
to the hub, checked here through the hub's API and not only through what the process
prints; then its power-cut scenario silences every powered device of one building, the
edge reports them offline, and the hub files exactly ONE ``outage`` task for the building
(no task per device). SIGTERM stops the process and everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


class Running:
    """The simulator process and the lines it printed so far."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    def find(self, pattern: str) -> re.Match[str] | None:
        for line in self.lines:
            found = re.search(pattern, line)
            if found:
                return found
        return None

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    async def until(self, check: Callable[[], Awaitable[T]], timeout: float, message: str) -> T:
        """``wait_until`` that fails at once, with the output, if the process ended."""

        async def alive_and() -> T:
            if self.process.returncode is not None:
                pytest.fail(f"the simulator exited ({self.process.returncode}):\n{self.output()}")
            return await check()

        try:
            return cast(
                T, await wait_until(cast(Callable[[], Any], alive_and), timeout, 0.25, message)
            )
        except AssertionError as err:
            raise AssertionError(f"{err}\n--- simulator output ---\n{self.output()}") from None

    async def line(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first printed line matching ``pattern``, waiting for it."""

        async def found() -> re.Match[str] | None:
            return self.find(pattern)

        match = await self.until(found, timeout, f"a line matching {pattern!r}")
        assert match is not None
        return match


@contextlib.asynccontextmanager
async def community_process(workdir: Path, *args: str) -> AsyncIterator[Running]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators", "community", "--workdir", str(workdir), *args,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group: a last-resort kill reaches all
    )  # fmt: skip
    running = Running(process)
    reader = asyncio.create_task(running.read())
    try:
        yield running
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        await asyncio.wait_for(reader, 10)


async def test_a_community_reports_and_a_power_cut_is_one_outage(tmp_path: Path) -> None:
    workdir = tmp_path / "community"
    async with community_process(
        workdir, "--households", "12", "--scenario", "power-cut"
    ) as running:
        await running.line("every device kind has reported to the hub", 300)
        url = await running.line(r"hub +(http://127\.0\.0\.1:\d+) ", 1)
        token = await running.line(r"API token \(demo only, new each run\): (\S+)", 1)
        layout: dict[str, Any] = json.loads((workdir / "community.json").read_text())
        async with httpx.AsyncClient(
            base_url=url.group(1),
            headers={"Authorization": f"Bearer {token.group(1)}"},
            timeout=10,
        ) as client:

            async def events(**params: Any) -> list[dict[str, Any]]:
                response = await client.get("/api/v1/events", params={"limit": 500, **params})
                assert response.status_code == 200, response.text
                found: list[dict[str, Any]] = response.json()
                return found

            # Every kind has reported, as the hub itself says.
            by_profile: dict[str, list[str]] = {}
            for device in layout["devices"]:
                by_profile.setdefault(device["profile"], []).append(device["id"])
            assert set(by_profile) == {
                "cb-100", "dlt645-meter", "water-meter", "bin-sensor", "fr-door", "parcel-locker",
            }  # fmt: skip
            assert len(layout["devices"]) == 34
            for profile, ids in by_profile.items():
                heard = [i for i in ids if await events(device_id=i, limit=1)]
                assert heard, f"no {profile} device has reported to the hub"

            async def tasks(kind: str) -> list[dict[str, Any]]:
                response = await client.get("/api/v1/tasks", params={"limit": 500})
                assert response.status_code == 200, response.text
                return [t for t in response.json() if t["kind"] == kind]

            # The power cut: the last building's powered devices all go offline, ONE task.
            cut = set(layout["buildings"][-1]["powered_devices"])
            assert len(cut) == 7  # 4 electricity meters, water meter, bin sensor, door

            async def all_offline() -> bool:
                offline = {e["device_id"] for e in await events(kind="device.offline")}
                return cut <= offline

            await running.until(all_offline, 120, f"device.offline of all of {sorted(cut)}")
            [outage] = await running.until(lambda: tasks("outage"), 60, "an outage task")
            await running.line("scenario done: power-cut", 60)
            assert len(await tasks("outage")) == 1
            assert layout["buildings"][-1]["name"] in outage["detail"]
            offline = {e["device_id"] for e in await events(kind="device.offline")}
            assert offline == cut, f"devices outside the building went offline: {offline - cut}"
            maintenance = [t for t in await tasks("maintenance") if t["device_id"] in cut]
            assert maintenance == []
        running.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(running.process.wait(), 60) == 0
    assert running.find("stopped every process"), running.output()
