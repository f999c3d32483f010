"""``python -m hub broker-files``: write Mosquitto's password and ACL files, then exit.

With ``broker_auth`` configured the hub owns the broker's ``password_file`` and
``acl_file``. Mosquitto refuses to start while they are missing, and the hub rewrites
them at every start, so on a fresh install run this once first; the order is then:
``python -m hub broker-files`` → start Mosquitto → start the hub (docs/operations.md).
Needs ``HUB__BROKER__PASSWORD`` (the hub's own broker account goes into the files: one
per replica, ``<broker.username>.<replica_id>``, for every replica in ``cluster.replicas``),
reads the edges from the database (migrated first) and writes both files with mode 0600.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime

from hub.config import ConfigError, HubConfig, load_hub_config
from hub.db.engine import create_engine
from hub.db.migrate import upgrade_to_head
from hub.provisioning import BrokerFilesUnwritable, edge_registry_for


def _say(text: str) -> None:
    print(text, file=sys.stderr)  # noqa: T201 - a console command talks on the console


async def _write(config: HubConfig) -> None:
    engine = create_engine(config.database_url)
    try:
        registry = edge_registry_for(config, engine, lambda: datetime.now(UTC))
        assert registry is not None  # main() checked broker_auth
        await registry.write_files()
    finally:
        await engine.dispose()


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m hub broker-files",
        description="Write Mosquitto's password and ACL files (broker_auth) and exit; run it "
        "before the broker's first start. Needs HUB__BROKER__PASSWORD.",
    )
    parser.add_argument("--config", "-c", help="the hub's YAML configuration file")
    args = parser.parse_args(argv)
    try:
        config = load_hub_config(args.config)
    except ConfigError as err:
        _say(f"hub: configuration error:\n{err}")
        return 2
    auth = config.broker_auth
    if auth is None:
        _say("hub: no broker_auth section in the configuration / 配置中没有 broker_auth")
        return 2
    upgrade_to_head(config.database_url)
    try:
        asyncio.run(_write(config))
    except BrokerFilesUnwritable as err:
        _say(f"hub: {err}")
        return 1
    accounts = ", ".join(config.broker_accounts())
    _say(
        f"wrote {auth.password_file} and {auth.acl_file} (mode 0600; the hub's accounts: "
        f"{accounts}, each with its .alarm twin); start Mosquitto as "
        f"their owner, then the hub / 已写入密码和访问控制文件，请以文件所有者身份启动 Mosquitto，"
        f"再启动中心平台"
    )
    if os.geteuid() == 0:
        _say(
            "running as root: add 'user root' to mosquitto.conf, or Mosquitto drops to the "
            "'mosquitto' user and cannot read these files / 以 root 运行时须在 mosquitto.conf "
            "中加入 'user root'"
        )
    return 0
