"""The one table ``make bench`` prints, the machine it ran on, and docs/benchmarks.md.

Columns: metric | measured | machine limit (same run) | goal | ratio | ÷ limit | how (a
numbered note below the table). "ratio" is measured ÷ goal: a "≥" goal is met at 1 or
more, a "≤" goal at 1 or less. "÷ limit" is measured ÷ the machine limit beside it, where
the two are in the same unit.
"""

from __future__ import annotations

import os
import platform
import re
import sqlite3
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.measure import machine_load
from simulators.broker import find_mosquitto

BEGIN = "<!-- bench:begin (written by python -m bench --write-docs) -->"
END = "<!-- bench:end -->"


@dataclass
class Row:
    metric: str
    measured: str
    limit: str = "—"
    goal: str = "—"
    ratio: str = "—"
    of_limit: str = "—"
    how: str = ""
    goal_key: str = ""  # which of Report.goals this row decides, if any


def at_least(value: float, goal: float) -> str:
    return f"{value / goal:.2f} {'met' if value >= goal else 'missed'}"


def at_most(value: float, goal: float) -> str:
    return f"{value / goal:.2f} {'met' if value <= goal else 'missed'}"


def share(value: float, limit: float) -> str:
    return f"{value / limit:.1%}" if limit > 0 else "—"


def num(value: float) -> str:
    return f"{value:,.0f}"


@dataclass
class Report:
    mode: str
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    load_before: str = field(default_factory=machine_load)
    load_after: str = ""
    rows: list[Row] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: (key, goal) of an issue's goal list: listed under the table with the verdict of the
    #: row that has the key, or "not measured in this run", so no goal goes unmentioned.
    goals: list[tuple[str, str]] = field(default_factory=list)
    goals_title: str = "Goals"

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.metric}: {row.measured}", flush=True)  # progress on the console

    def markdown(self) -> str:
        lines = [
            f"Run of {self.started:%Y-%m-%d %H:%M} UTC ({self.mode}, {self.seconds / 60:.1f} min), "
            f"{machine()}.",
            f"Load average before / after: {self.load_before} / {self.load_after}.",
            "",
            "| metric | measured | machine limit (same run) | goal | ratio | ÷ limit | how |",
            "|---|---|---|---|---|---|---|",
        ]
        notes = []
        for row in self.rows:
            ref = ""
            if row.how:
                notes.append(row.how)
                ref = f"[{len(notes)}]"
            lines.append(
                f"| {row.metric} | {row.measured} | {row.limit} | {row.goal} | {row.ratio} | "
                f"{row.of_limit} | {ref} |"
            )
        lines.append("")
        lines.append(
            "ratio = measured ÷ goal (a ≥ goal is met at ≥ 1, a ≤ goal at ≤ 1); "
            "÷ limit = measured ÷ the machine limit in the same unit."
        )
        lines.append("")
        lines.extend(f"{i}. {text}" for i, text in enumerate(notes, 1))
        if self.goals:
            lines.append("")
            lines.append(f"{self.goals_title}:")
            lines.append("")
            decided = {row.goal_key: row for row in self.rows if row.goal_key}
            for key, goal in self.goals:
                found = decided.get(key)
                verdict = (
                    f"{found.ratio} — {found.measured} (limit: {found.limit})"
                    if found is not None
                    else "not measured in this run"
                )
                lines.append(f"- {goal}: {verdict}")
        if self.remarks:
            lines.append("")
            lines.extend(f"- {text}" for text in self.remarks)
        return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return "? GiB"


def _mosquitto_version() -> str:
    try:
        out = subprocess.run(
            [find_mosquitto(), "-h"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, RuntimeError, subprocess.TimeoutExpired):
        return "?"
    found = re.search(r"version (\S+)", out)
    return found.group(1) if found else "?"


def machine() -> str:
    return (
        f"{_cpu_model()}, {os.cpu_count()} cores, {_memory()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, Mosquitto {_mosquitto_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
    )


def write_docs(path: Path, report: Report) -> None:
    """Replace the generated section of ``path``; the hand-written text around it stays."""
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{report.markdown()}\n{END}{tail}")
