"""Make Mosquitto re-read its password and ACL files: SIGHUP, or a configured command.

On SIGHUP Mosquitto 2 reloads both files and re-checks every connected client against
them: a retired edge, or one whose password was rotated, is disconnected at once, and a
new edge can connect without a broker restart. Mosquitto handles the signal in its main
loop, so "reloaded" means "asked to reload"; callers that need the new state wait for it.

A pid file can outlive its process and name another one by the time we read it: the pid
is signalled only if ``/proc/<pid>/comm`` says ``mosquitto`` (where there is a /proc), as
SIGHUP's default action would terminate an unrelated process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from hub.config import BrokerReloadSettings

log = logging.getLogger(__name__)

_OUTPUT_TAIL = 500  # characters of a failed reload command's output kept for the operator


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    ok: bool
    detail: str


class BrokerReloader:
    def __init__(self, settings: BrokerReloadSettings) -> None:
        self._settings = settings

    async def reload(self) -> ReloadOutcome:
        """Ask the broker to reload; never raises for an expected failure."""
        if self._settings.pid_file is not None:
            outcome = signal_pid_file(self._settings.pid_file)
        else:
            assert self._settings.command is not None  # the settings validate one of the two
            outcome = await run_command(self._settings.command, self._settings.timeout_s)
        if outcome.ok:
            log.info("broker reload requested: %s", outcome.detail)
        else:
            log.warning(
                "broker reload failed: %s; the change is saved in the password and ACL files: "
                "reload Mosquitto by hand (kill -HUP <its pid>) / 消息代理未能重新加载，"
                "更改已写入文件，请手动重新加载 Mosquitto",
                outcome.detail,
            )
        return outcome


def signal_pid_file(pid_file: Path) -> ReloadOutcome:
    try:
        pid = int(pid_file.read_text().strip())
    except FileNotFoundError:
        return ReloadOutcome(False, f"pid file {pid_file} not found (is the broker running?)")
    except (OSError, ValueError) as err:
        return ReloadOutcome(False, f"pid file {pid_file} unreadable: {err}")
    name: str | None
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        name = None if Path("/proc/self").exists() else "mosquitto"  # no /proc: trust the file
    except OSError as err:
        return ReloadOutcome(False, f"cannot check process {pid}: {err}")
    if name is None:
        return ReloadOutcome(False, f"pid file {pid_file} names process {pid}, which is gone")
    if "mosquitto" not in name:
        return ReloadOutcome(False, f"pid file {pid_file} names {pid} ({name}), not mosquitto")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return ReloadOutcome(False, f"process {pid} from {pid_file} is gone")
    except PermissionError:
        return ReloadOutcome(False, f"not allowed to signal process {pid} (run as its user)")
    return ReloadOutcome(True, f"SIGHUP sent to mosquitto pid {pid}")


async def run_command(argv: list[str], timeout_s: float) -> ReloadOutcome:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as err:
        return ReloadOutcome(False, f"cannot run {argv[0]!r}: {err}")
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        return ReloadOutcome(False, f"{argv[0]!r} did not finish within {timeout_s} s")
    if process.returncode != 0:
        tail = output.decode(errors="replace").strip()[-_OUTPUT_TAIL:]
        return ReloadOutcome(False, f"{argv[0]!r} exited with {process.returncode}: {tail}")
    return ReloadOutcome(True, f"{argv[0]!r} succeeded")
