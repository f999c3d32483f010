"""``python -m hub create-account``: make an account from the shell (the first admin).

The password is read from ``HUB_NEW_PASSWORD`` or standard input (one line; asked twice
without echo when standard input is a terminal), never from the command line, where
``ps`` and shell history would show it. The database comes from the same configuration
file and ``HUB__...`` environment as the hub; migrations are applied first, so this also
works on a fresh install before the hub has ever started.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from datetime import UTC, datetime

from pydantic import BaseModel

from contract.config_file import ConfigError, load_config
from hub.auth import accounts
from hub.auth.accounts import InvalidAccount, UsernameTaken
from hub.auth.passwords import Passwords
from hub.db.engine import create_engine
from hub.db.migrate import upgrade_to_head
from hub.domain.access import Principal, Role
from hub.services.audit import record_audit

PASSWORD_ENV = "HUB_NEW_PASSWORD"


class _DatabaseOnly(BaseModel):
    """The one field this command needs; the rest of the hub's file is not checked here."""

    model_config = {"extra": "ignore"}
    database_url: str = "sqlite+aiosqlite:///var/hub/hub.db"


def _say(text: str) -> None:
    print(text, file=sys.stderr)  # noqa: T201 - a console command talks on the console


def read_password() -> str:
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env is not None:
        return from_env
    if sys.stdin.isatty():
        first = getpass.getpass("password / 密码: ")
        if getpass.getpass("again / 再次输入: ") != first:
            raise InvalidAccount("the two passwords differ / 两次输入的密码不一致")
        return first
    return sys.stdin.readline().rstrip("\r\n")


async def _create(
    database_url: str, username: str, role: Role, worker_id: int | None, password_hash: str
) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            now = datetime.now(UTC)
            created = await accounts.create_account(
                conn,
                username=username,
                role=role,
                worker_id=worker_id,
                password_hash=password_hash,
                now=now,
            )
            account_id = int(created["id"])
            await record_audit(
                conn,
                actor=Principal(kind="cli", name=getpass.getuser(), role=Role.ADMIN),
                action="account.create",
                target_type="account",
                target_id=account_id,
                after={"username": username, "role": role.value, "worker_id": worker_id},
                at=now,
            )
            return account_id
    finally:
        await engine.dispose()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hub create-account",
        description="Create a hub account. The password comes from $HUB_NEW_PASSWORD or "
        "standard input, never from the command line.",
    )
    parser.add_argument("--config", "-c", help="the hub's YAML configuration file")
    parser.add_argument("--username", required=True)
    parser.add_argument("--role", required=True, choices=[r.value for r in accounts.HUMAN_ROLES])
    parser.add_argument("--worker-id", type=int, help="the workers row a worker account acts as")
    args = parser.parse_args(argv)
    try:
        database_url = load_config(args.config, _DatabaseOnly, env_prefix="HUB").database_url
        password = read_password()
        role = accounts.check_new_account(args.username, args.role, args.worker_id, password)
        upgrade_to_head(database_url)
        password_hash = Passwords().hash(password)
        account_id = asyncio.run(
            _create(database_url, args.username, role, args.worker_id, password_hash)
        )
    except ConfigError as err:
        _say(f"hub: configuration error:\n{err}")
        return 2
    except (InvalidAccount, UsernameTaken) as err:
        _say(f"hub: {err}")
        return 2
    _say(
        f"account {args.username!r} created (id {account_id}, role {role.value}) / "
        f"账号 {args.username!r} 已创建"
    )
    return 0
