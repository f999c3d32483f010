"""``python -m simulators <subcommand>``: device simulators for tests, demos and debugging.

Each subcommand lives in its own module with ``add_arguments(parser)`` and
``main(args) -> int``; this file only dispatches. To add one, import its module and add a
line to ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from simulators import (
    button_cli,
    care,
    care_bound,
    community,
    demo,
    dlt645_meter,
    door,
    locker,
    modbus_devices,
)

# name → (help, add_arguments, main).
SUBCOMMANDS: dict[
    str,
    tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]],
] = {
    "button": (
        "CB-100 call buttons on a pty, driven from stdin",
        button_cli.add_arguments,
        button_cli.main,
    ),
    "dlt645-meter": (
        "DL/T 645-2007 electricity meters on a pty",
        dlt645_meter.add_arguments,
        dlt645_meter.main,
    ),
    "modbus": (
        "Modbus water meters (RTU on a pty) and bin sensors (TCP)",
        modbus_devices.add_arguments,
        modbus_devices.main,
    ),
    "door": ("a face-recognition door controller over MQTT", door.add_arguments, door.main),
    "locker": ("a smart parcel locker over MQTT", locker.add_arguments, locker.main),
    "community": (
        "a community of doors, lockers, meters, bins and buttons behind one edge, "
        "with scenarios (power cut, stuck water meter, full bin, forced door)",
        community.add_arguments,
        community.main,
    ),
    "care": (
        "a simulated month of the wellbeing watch: detection delay and false welfare checks, "
        "learnt rhythm against the fixed 12-hour rule",
        care.add_arguments,
        care.main,
    ),
    "care-bound": (
        "the least false welfare checks any silence rule could raise for a delay goal, "
        "on the same simulated residents (a lower bound: is the rule weak, or the problem hard?)",
        care_bound.add_arguments,
        care_bound.main,
    ),
    "demo": (
        "the whole system (broker, hub, edge, buttons) with a help call played through",
        demo.add_arguments,
        demo.main,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulators", description="Device simulators for tests, demos and debugging."
    )
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    for name, (help_text, add_arguments, run) in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
