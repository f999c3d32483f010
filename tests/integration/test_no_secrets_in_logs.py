"""Acceptance: no secret appears in any log through a full provisioning and login flow.

Real processes at DEBUG level: the first admin is made with ``python -m hub create-account``
(password from the environment and from stdin), the hub runs with broker authentication,
people log in with right and wrong passwords, an admin makes accounts and sets a password,
an edge is provisioned through ``POST /api/v1/edges`` and connects with the broker password
it was given once, tokens are used and revoked. Then the hub's, the edge's and the broker's
logs and the console output of the CLI are searched for every password and token used, and
for the password hashes the hub stored.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulators.broker import MosquittoProcess
from simulators.stack import REPO_ROOT, ManagedProcess, Stack
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

EDGE = "edge-secrets"


class System:
    """A hub with broker authentication (it writes Mosquitto's files), and that broker."""

    def __init__(self, workdir: Path) -> None:
        self.stack = Stack(workdir)
        self.files = workdir / "mosquitto"
        self.broker_password = secrets.token_urlsafe(24)
        self.console: list[str] = []  # what the CLI printed
        broker_dir = workdir / "broker"
        self.stack.broker = MosquittoProcess(
            broker_dir,
            password_file=self.files / "passwd",
            acl_file=self.files / "acl",
            pid_file=broker_dir / "mosquitto.pid",
            username_as_client_id=True,
        )
        self.config = self.stack.write_hub_config(
            log_level="DEBUG",
            broker={"username": "hub", "reconnect_max_s": 1},
            broker_auth={
                "password_file": str(self.files / "passwd"),
                "acl_file": str(self.files / "acl"),
                "reload": {"pid_file": str(broker_dir / "mosquitto.pid")},
            },
        )

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB__", "EDGE__"))}
        env |= {
            "PYTHONUNBUFFERED": "1",
            "HUB__API__TOKEN": self.stack.api_token,
            "HUB__BROKER__PASSWORD": self.broker_password,
        }
        return env | extra

    def create_account(self, username: str, password: str, *, via_stdin: bool) -> None:
        argv = [sys.executable, "-m", "hub", "create-account", "--config", str(self.config)]
        argv += ["--username", username, "--role", "admin"]
        done = subprocess.run(
            argv,
            input=f"{password}\n" if via_stdin else "",
            env=self.env() if via_stdin else self.env(HUB_NEW_PASSWORD=password),
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=120,
            check=False,
        )
        self.console += [done.stdout, done.stderr]
        assert done.returncode == 0, done.stderr
        assert password not in " ".join(argv)

    def start(self) -> None:
        stack = self.stack
        stack.hub = ManagedProcess(
            "hub",
            [sys.executable, "-m", "hub", "--config", str(self.config), "--seed-demo"],
            self.env(),
            stack.workdir / "hub.log",
        ).start()
        stack.wait_for_hub(60)
        assert stack.broker is not None
        stack.broker.start()

    def logs(self) -> dict[str, str]:
        stack = self.stack
        assert stack.broker is not None
        found = {
            "hub": stack.hub.log_text() if stack.hub else "",
            "broker": stack.broker.log_path.read_text(errors="replace"),
            "cli": "\n".join(self.console),
        }
        found |= {name: edge.log_text() for name, edge in stack.edges.items()}
        return found


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    made = System(tmp_path)
    try:
        yield made
    finally:
        made.stack.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_password_or_token_reaches_any_log(system: System) -> None:
    stack = system.stack
    secrets_used: dict[str, str] = {
        "static API token": stack.api_token,
        "hub broker password": system.broker_password,
    }

    def secret(name: str) -> str:
        value = secrets.token_urlsafe(18)
        secrets_used[name] = value
        return value

    system.create_account("first-admin", secret("first admin password"), via_stdin=False)
    system.create_account("second-admin", secret("second admin password"), via_stdin=True)
    system.start()

    async with httpx.AsyncClient(base_url=stack.hub_url, timeout=60) as http:

        async def login(username: str, password: str) -> httpx.Response:
            return await http.post(
                "/api/v1/auth/token", data={"username": username, "password": password}
            )

        wrong = secret("a wrong password")
        assert (await login("first-admin", wrong)).status_code == 401
        response = await login("first-admin", secrets_used["first admin password"])
        assert response.status_code == 200, response.text
        admin = bearer(secret_value(secrets_used, "admin token", response.json()))

        worker_password = secret("worker password")
        worker_id = (await http.get("/api/v1/workers", headers=admin)).json()[0]["id"]
        for body in (
            {"username": "wang", "role": "worker", "worker_id": worker_id},
            {"username": "oper", "role": "operator"},
        ):
            password = worker_password if body["username"] == "wang" else secret("operator pw")
            made = await http.post(
                "/api/v1/accounts", json=body | {"password": password}, headers=admin
            )
            assert made.status_code == 201, made.text
        too_short = await http.post(
            "/api/v1/accounts",
            json={"username": "shorty", "role": "operator", "password": secret("short")[:6]},
            headers=admin,
        )
        assert too_short.status_code == 422

        response = await login("wang", worker_password)
        worker = bearer(secret_value(secrets_used, "worker token", response.json()))
        assert (await http.get("/api/v1/cases", headers=worker)).status_code == 200
        assert (await http.post("/api/v1/auth/revoke", headers=worker)).status_code == 200
        assert (await http.get("/api/v1/cases", headers=worker)).status_code == 401

        oper_id = next(
            a["id"]
            for a in (await http.get("/api/v1/accounts", headers=admin)).json()
            if a["username"] == "oper"
        )
        changed = await http.put(
            f"/api/v1/accounts/{oper_id}/password",
            json={"password": secret("operator new password")},
            headers=admin,
        )
        assert changed.status_code == 200, changed.text
        response = await login("oper", secrets_used["operator new password"])
        assert response.status_code == 200
        secret_value(secrets_used, "operator token", response.json())

        # Edge provisioning: the broker password is in this one reply, then in the edge's env.
        provisioned = await http.post("/api/v1/edges", json={"edge_id": EDGE}, headers=admin)
        assert provisioned.status_code == 201, provisioned.text
        edge_password = provisioned.json()["password"]
        secrets_used["edge broker password"] = edge_password
        stack.start_edge(
            EDGE,
            [],
            broker={"host": "127.0.0.1", "port": stack.broker_port, "username": EDGE},
            log_level="DEBUG",
            extra_env={"EDGE__BROKER__PASSWORD": edge_password},
        )

        async def edge_online() -> bool:
            rows = (await http.get("/api/v1/edges", headers=admin)).json()
            return any(r["edge_id"] == EDGE and r["online"] for r in rows)

        await wait_until(edge_online, 60, interval=0.2, message="provisioned edge online")
        assert (await http.post("/api/v1/auth/revoke", headers=admin)).status_code == 200

    stack.stop()  # every process flushes and ends its log
    db = sqlite3.connect(stack.workdir / "hub" / "hub.db")
    try:
        dump = "\n".join(db.iterdump())
        stored = [h for (h,) in db.execute("SELECT password_hash FROM accounts")]
        stored += [d for (d,) in db.execute("SELECT token_hash FROM auth_tokens")]
    finally:
        db.close()
    stored += [line.split(":", 1)[1] for line in (system.files / "passwd").read_text().splitlines()]
    assert len(stored) >= 4 + 3 + 2  # accounts, tokens, broker accounts (hub and edge)
    for index, digest in enumerate(stored):  # what the hub keeps instead: not in logs either
        secrets_used[f"stored hash #{index}"] = digest
    logs = system.logs()
    assert "login: user 'first-admin'" in logs["hub"]  # the flow was logged at all
    assert "login failed: user 'first-admin'" in logs["hub"]
    leaks = [
        f"{name} in the {where} log"
        for name, value in secrets_used.items()
        for where, text in logs.items()
        if value in text
    ]
    assert not leaks, leaks
    plain = {k: v for k, v in secrets_used.items() if not k.startswith("stored hash")}
    assert [k for k, v in plain.items() if v in dump] == []  # nor in the database


def secret_value(found: dict[str, str], name: str, body: dict[str, Any]) -> str:
    token = str(body["access_token"])
    found[name] = token
    return token
