"""``make bench`` / ``python -m bench``: run every benchmark and print its table."""

from __future__ import annotations

import platform
import sys
from datetime import UTC, datetime

from bench import sos_latency


def main() -> int:
    print(
        f"# Benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()} {platform.processor() or ''}, "
        f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}\n"
    )
    return sos_latency.main()


if __name__ == "__main__":
    sys.exit(main())
