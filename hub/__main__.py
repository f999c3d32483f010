"""``python -m hub --config hub.yaml``: run the hub (API + MQTT ingest + escalation)."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from hub.app import create_app
from hub.config import ConfigError, load_hub_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hub",
        description="Smart-community hub: stores events, routes help calls, serves the API. "
        "Secrets come from the environment: HUB__API__TOKEN, HUB__BROKER__PASSWORD.",
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
