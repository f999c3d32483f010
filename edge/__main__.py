"""``python -m edge --config edge.yaml``: run one edge agent."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from edge.agent import EdgeAgent
from edge.config import ConfigError, load_edge_config
from edge.errors import OutboxError, ProfileError


async def _run(agent: EdgeAgent) -> None:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        if task is not None:
            loop.add_signal_handler(sig, task.cancel)
    try:
        await agent.run()
    except asyncio.CancelledError:
        logging.getLogger("edge").info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge",
        description="Smart-community edge agent: reads devices, keeps every event in a "
        "durable outbox and forwards it to the hub. The broker password comes from "
        "EDGE__BROKER__PASSWORD.",
    )
    parser.add_argument("--config", "-c", required=True, help="YAML configuration file")
    args = parser.parse_args(argv)
    try:
        config = load_edge_config(args.config)
        logging.basicConfig(
            level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        agent = EdgeAgent(config, source=args.config)
    except (ConfigError, ProfileError) as err:
        print(f"edge: configuration error:\n{err}", file=sys.stderr)  # noqa: T201
        return 2
    try:
        asyncio.run(_run(agent))
    except OutboxError as err:
        print(f"edge: {err}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
