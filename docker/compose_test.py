"""``make compose-test``: the compose stack of ``docker/compose.yml`` played end to end.

Starts the stack from the images of ``make images``, provisions the edge, presses SOS on a
simulated CB-100 button inside the edge container and waits until the hub's case API shows
the case and the button shows "received"; then kills one hub container (``docker kill``,
SIGKILL) and presses SOS on another button, which must get through as well. Everything is
torn down at the end, also on failure (then the services' last log lines are printed).

Two configurations (``COMPOSE_TEST_DB``):

- ``postgres``: PostgreSQL and two hub replicas. The second SOS gets through the surviving
  replica while the killed one stays dead.
- ``sqlite``: one hub on SQLite. With one hub nothing can answer while it is dead: the
  second SOS waits in the edge's outbox until the killed hub is started again.

Why a script and not a pytest test: it needs built images and takes minutes, so it is kept
out of ``make test`` (its static part, the compose file parsing, is in
``tests/deploy/test_deploy_files.py``). Waits are conditions with deadlines, never sleeps.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import httpx

from hub.domain.ownership import owner_of

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker" / "compose.yml"
HUB_PORTS = {"hub-a": 18001, "hub-b": 18002}
EDGE = "edge-demo"
FIRST, SECOND = 77626, 77627  # two buttons of different households of the demo community
RECEIVED = "求助已被中心收到 / received by the centre"  # simulators.button.LED_TEXT
T = TypeVar("T")


class StepFailed(Exception):
    """A step of the play did not reach its condition; the text says which."""


class ServiceDown(StepFailed):
    """A container exited or restarts: waiting longer cannot help."""


def say(text: str) -> None:
    sys.stdout.write(f"{time.strftime('%H:%M:%S')}  {text}\n")
    sys.stdout.flush()


class ComposeStack:
    """The docker-compose project of one run, with the environment it needs."""

    def __init__(self, project: str, db: str, docker: str) -> None:
        self.project = project
        self.db = db
        self.docker = docker
        self.hubs = ["hub-a", "hub-b"] if db == "postgres" else ["hub-a"]
        self.api_token = secrets.token_urlsafe(24)
        self.env = {
            **os.environ,
            "HUB_API_TOKEN": self.api_token,
            "HUB_BROKER_PASSWORD": secrets.token_urlsafe(24),
            "EDGE_BROKER_PASSWORD": "",
            "COMPOSE_PROFILES": "postgres,replicas" if db == "postgres" else "",
        }
        if db == "postgres":
            password = secrets.token_urlsafe(24)
            self.env["POSTGRES_PASSWORD"] = password
            self.env["HUB_DATABASE_URL"] = (
                f"postgresql+asyncpg://hub:{password}@127.0.0.1:15433/hub"
            )

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["docker-compose", "-f", str(COMPOSE_FILE), "-p", self.project, *args]
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise StepFailed(f"docker-compose {' '.join(args)}:\n{done.stderr[-3000:]}")
        return done

    def container(self, service: str) -> str:
        found = self.compose("ps", "-q", service).stdout.split()
        if not found:
            raise StepFailed(f"no container for {service}")
        return found[0]

    def health(self, service: str) -> str:
        done = subprocess.run(
            [
                self.docker,
                "inspect",
                "-f",
                "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                self.container(service),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip()

    def edge_exec(self, shell: str) -> str:
        done = subprocess.run(
            [self.docker, "exec", self.container("edge"), "sh", "-c", shell],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise StepFailed(f"in the edge container: {shell}: {done.stderr.strip()}")
        return done.stdout

    def logs(self, lines: int = 30) -> str:
        return self.compose("logs", "--no-color", f"--tail={lines}", check=False).stdout


def wait_until(what: str, check: Callable[[], T | None], timeout_s: float) -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        try:
            result = check()
        except ServiceDown:
            raise
        except (httpx.HTTPError, StepFailed) as err:
            result, last_error = None, f" (last error: {err})"
        if result:
            return result
        time.sleep(0.2)  # polling a condition with a deadline, not synchronisation by sleep
    raise StepFailed(f"{what}: not within {timeout_s:.0f} s{last_error}")


class Play:
    """The steps, each printed as it passes."""

    def __init__(self, stack: ComposeStack, timeout_s: float) -> None:
        self.stack = stack
        self.timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {stack.api_token}"}
        self.api = {
            hub: httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=5)
            for hub, port in HUB_PORTS.items()
        }

    def healthy(self, service: str) -> bool:
        state = self.stack.health(service)
        if state.startswith(("exited", "restarting", "dead")):
            raise ServiceDown(f"{service}: {state}")
        return state == "running/healthy"

    def start(self) -> None:
        stack = self.stack
        if stack.db == "postgres":
            stack.compose("up", "-d", "postgres")
            wait_until("postgres healthy", lambda: self.healthy("postgres"), self.timeout_s)
            say("ok   postgres healthy (127.0.0.1:15433)")
        stack.compose("up", "-d", *stack.hubs)  # hub-init, then mosquitto, then the hubs
        say("ok   hub-init wrote the broker's password and ACL files; mosquitto healthy")
        for hub in stack.hubs:
            wait_until(f"{hub} healthy", partial(self.healthy, hub), self.timeout_s)
            say(f"ok   {hub} healthy (/readyz: database and broker reachable)")

    def provision_edge(self) -> None:
        response = self.api["hub-a"].post("/api/v1/edges", json={"edge_id": EDGE})
        if response.status_code != 201:
            raise StepFailed(f"POST /api/v1/edges: {response.status_code} {response.text}")
        self.stack.env["EDGE_BROKER_PASSWORD"] = response.json()["password"]
        self.stack.compose("up", "-d", "--no-deps", "edge")
        say(f"ok   {EDGE} provisioned on hub-a (broker account, broker reloaded)")

        def online() -> bool:
            edges = self.api[self.stack.hubs[-1]].get("/api/v1/edges").json()
            return any(e["edge_id"] == EDGE and e["online"] for e in edges)

        wait_until(f"{EDGE} online", online, self.timeout_s)
        wait_until("edge healthy", lambda: self.healthy("edge"), self.timeout_s)
        say(f"ok   {EDGE} online and healthy, 3 simulated CB-100 buttons on its pty")

    def household_of(self, serial: int, hub: str) -> int:
        device = self.api[hub].get(f"/api/v1/devices/cb100-{serial}")
        device.raise_for_status()
        return int(device.json()["household_id"])

    def sos(self, serial: int, ask: str) -> float:
        """Press SOS; wait for the case on hub ``ask`` and "received" on the button."""
        household = self.household_of(serial, ask) if ask in self.alive() else None
        started = time.monotonic()
        self.stack.edge_exec(f"echo sos {serial} > /tmp/sim/control")
        say(f"--   button {serial}: SOS pressed")

        def received() -> bool:
            log = self.stack.edge_exec("cat /tmp/sim/buttons.log")
            return f"[{serial}] {RECEIVED}" in log

        wait_until(f"button {serial} hears 'received'", received, self.timeout_s)
        latency = time.monotonic() - started
        if household is None:
            household = self.household_of(serial, ask)
        cases = wait_until(
            f"a case for button {serial} on {ask}",
            lambda: self.api[ask].get("/api/v1/cases", params={"household_id": household}).json(),
            self.timeout_s,
        )
        say(f"ok   button {serial}: '{RECEIVED}' {latency:.2f} s after the press")
        say(f"ok   {ask} case API: case #{cases[0]['id']} state {cases[0]['state']}")
        return latency

    def alive(self) -> list[str]:
        return [h for h in self.stack.hubs if self.stack.health(h).startswith("running")]

    def kill(self, hub: str) -> None:
        subprocess.run(
            [self.stack.docker, "kill", self.stack.container(hub)],
            capture_output=True,
            check=True,
        )
        wait_until(f"{hub} dead", lambda: self.stack.health(hub).startswith("exited"), 30)
        say(f"ok   {hub} killed (docker kill: SIGKILL)")

    def broker_log(self) -> str:
        """The broker's whole log, once the play is over. Mosquitto's stdout is a pipe and
        block-buffered: a quiet broker's lines (each connection, a takeover or two) reach
        the log only when it exits, so it is stopped first."""
        broker = self.stack.container("mosquitto")
        subprocess.run(
            [self.stack.docker, "stop", "--time", "10", broker], capture_output=True, check=True
        )
        done = subprocess.run(
            [self.stack.docker, "logs", broker], capture_output=True, text=True, check=False
        )
        return done.stdout + done.stderr

    def run(self) -> None:
        self.start()
        self.provision_edge()
        self.play_calls()
        log = self.broker_log()
        # Connections the broker threw out for a newer one with the same client id: hub
        # replicas sharing one account (``use_username_as_clientid``) did that in a loop
        # before each had its own (``docs/scaling.md``, "Broker accounts").
        takeovers = log.count("already connected, closing old connection")
        if takeovers:
            raise StepFailed(f"the broker threw out {takeovers} connections for a newer one")
        say("--   mosquitto stopped (its log is complete once it exits)")
        accounts = [f"hub.{hub}" for hub in self.stack.hubs]
        missing = [a for a in accounts if f" as {a} " not in log or f" as {a}.alarm " not in log]
        if missing:
            raise StepFailed(f"no connection of {', '.join(missing)} (and its .alarm) in the log")
        say(
            f"ok   broker: the hubs on accounts of their own ({', '.join(accounts)}, each with "
            "its .alarm); no connection thrown out for another"
        )

    def play_calls(self) -> None:
        if self.stack.db == "postgres":
            # Kill the replica that ingests the edge (rendezvous hashing, as the hubs
            # compute it), so the second call has to move to the other one.
            victim = owner_of(EDGE, self.stack.hubs) or "hub-a"
            survivor = next(h for h in self.stack.hubs if h != victim)
            say(f"--   {EDGE} is ingested by {victim} (hub.domain.ownership)")
            self.sos(FIRST, victim)
            self.kill(victim)
            self.sos(SECOND, survivor)
            return
        self.sos(FIRST, "hub-a")
        self.kill("hub-a")
        # One hub: the press waits in the edge's outbox until the hub is back.
        self.stack.edge_exec(f"echo sos {SECOND} > /tmp/sim/control")
        say(f"--   button {SECOND}: SOS pressed while no hub runs (kept in the edge's outbox)")
        started = time.monotonic()
        self.stack.compose("start", "hub-a")
        say("--   hub-a started again")

        def received() -> bool:
            return f"[{SECOND}] {RECEIVED}" in self.stack.edge_exec("cat /tmp/sim/buttons.log")

        wait_until(f"button {SECOND} hears 'received'", received, self.timeout_s)
        say(
            f"ok   button {SECOND}: '{RECEIVED}' {time.monotonic() - started:.2f} s after "
            "the restart"
        )
        household = self.household_of(SECOND, "hub-a")
        cases = self.api["hub-a"].get("/api/v1/cases", params={"household_id": household}).json()
        if not cases:
            raise StepFailed(f"no case for button {SECOND} on hub-a")
        say(f"ok   hub-a case API: case #{cases[0]['id']} state {cases[0]['state']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--db",
        choices=["postgres", "sqlite"],
        default=os.environ.get("COMPOSE_TEST_DB", "postgres"),
        help="postgres: PostgreSQL and two hub replicas; sqlite: one hub (default from "
        "COMPOSE_TEST_DB)",
    )
    parser.add_argument("--project", default="community-compose-test")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="deadline of each step")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args(argv)
    docker = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
    stack = ComposeStack(args.project, args.db, docker)
    replicas = "PostgreSQL, hub-a + hub-b" if args.db == "postgres" else "SQLite, hub-a only"
    say(f"compose-test: {COMPOSE_FILE.relative_to(ROOT)} ({replicas}), project {args.project}")
    started = time.monotonic()
    verdict = "FAIL"
    try:
        stack.compose("down", "-v", "--remove-orphans")  # what an earlier run left
        Play(stack, args.timeout_s).run()
        verdict = "PASS"
    except (StepFailed, httpx.HTTPError, subprocess.CalledProcessError) as err:
        say(f"FAIL {err}")
        say("---- last log lines of the stack ----")
        sys.stdout.write(stack.logs())
    except KeyboardInterrupt:
        say("interrupted")
    finally:
        if not args.keep:
            stack.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)
            say("--   stack torn down (containers, volumes)")
    say(f"compose-test {verdict} ({replicas}) in {time.monotonic() - started:.0f} s")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
