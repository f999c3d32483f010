"""``python -m hub --config hub.yaml``: run the hub (API + MQTT ingest + escalation)."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from hub.app import create_app
from hub.config import ConfigError, load_hub_config


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["create-account"]:  # make an account, e.g. the first admin (issue #4)
        from hub.auth.cli import main as create_account

        return create_account(argv[1:])
    if argv[:1] == ["import"]:  # the office's registers, XLSX or CSV (issue #16)
        from hub.import_cli import main as import_registers

        return import_registers(argv[1:])
    if argv[:1] == ["broker-files"]:  # Mosquitto's files before its first start (issue #16)
        from hub.broker_files_cli import main as broker_files

        return broker_files(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m hub",
        description="Smart-community hub: stores events, routes help calls, serves the API. "
        "Secrets come from the environment: HUB__API__TOKEN, HUB__BROKER__PASSWORD. "
        "Subcommands: 'create-account' (an account, e.g. the first admin; the password from "
        "$HUB_NEW_PASSWORD or standard input, asked twice on a terminal), 'import' (the "
        "office's XLSX/CSV registers), 'broker-files' (Mosquitto's files before its first "
        "start); each has --help. The operator's guide: docs/operations.md.",
    )
    parser.add_argument("--config", "-c", help="YAML configuration file (default: none)")
    parser.add_argument(
        "--seed-demo", action="store_true", help="insert the demo community (idempotent)"
    )
    args = parser.parse_args(argv)
    try:
        config = load_hub_config(args.config)
    except ConfigError as err:
        print(f"hub: configuration error:\n{err}", file=sys.stderr)  # noqa: T201
        return 2
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiosqlite logs every statement with its parameters at DEBUG: password hashes, token
    # digests, residents' medical notes. None of that may reach the hub's log (issue #4).
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.root.level))
    path = config.sqlite_path()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    app = create_app(config, seed_demo=args.seed_demo)
    uvicorn.run(
        app, host=config.api.host, port=config.api.port, log_level="warning", access_log=False
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
