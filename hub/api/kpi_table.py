"""The care KPI report as a table: one list of columns for the JSON, the page and the CSV.

The page renders the cells the API sends, and the CSV writes the same cells, so the two
cannot disagree on rounding or on what an empty figure looks like ("—"). Percentages have
one decimal; seconds are rounded to one decimal and lose a trailing ".0".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub.api.csv_export import csv_text
from hub.domain.care_kpi import ANSWER_TARGETS, CareFigures
from hub.domain.escalation import TIER_LABELS, Tier
from hub.domain.notification import SERVICE_CATEGORIES
from hub.services.areas import LEVEL_LABELS, Level
from hub.services.care_kpi import CareReport, ListedCall, Row

EMPTY = "—"


def percent(value: float | None) -> str:
    return EMPTY if value is None else f"{value * 100:.1f}%"


def seconds(value: float | None) -> str:
    if value is None:
        return EMPTY
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def count(value: int | None) -> str:
    return EMPTY if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    zh: str
    en: str
    cell: Callable[[Row], str]
    on_page: bool = True  # False: only in the CSV (the page shows categories as a chart)

    @property
    def header(self) -> str:
        return f"{self.zh} / {self.en}"


def _figure(pick: Callable[[CareFigures], str]) -> Callable[[Row], str]:
    return lambda row: pick(row.figures)


def _share_cell(limit: int) -> Callable[[Row], str]:
    return lambda row: percent(row.figures.share(limit).value)


def _constant(text: str) -> Callable[[Row], str]:
    return lambda _row: text


def _escalation_cell(tier: str) -> Callable[[Row], str]:
    return lambda row: count(row.figures.escalations[tier])


def _category_cell(category: int) -> Callable[[Row], str]:
    return lambda row: str(row.figures.service_requests.get(category, 0))


def _level_name(row: Row) -> str:
    if row.level == "worker":
        return "工作人员 / worker"
    zh, en = LEVEL_LABELS[Level(row.level)]
    return f"{zh} / {en}"


def _share_columns() -> list[Column]:
    columns = []
    for limit, target in ANSWER_TARGETS:
        columns.append(
            Column(
                f"within_{limit}",
                f"{limit}秒内应答率",
                f"answered within {limit} s",
                _share_cell(limit),
            )
        )
        columns.append(Column(f"target_{limit}", "标准", "standard", _constant(percent(target))))
    return columns


def _escalation_columns() -> list[Column]:
    return [
        Column(
            f"to_{tier.value}",
            f"升级至{TIER_LABELS[tier][0]}",
            f"escalated to {TIER_LABELS[tier][1]}",
            _escalation_cell(tier.value),
        )
        for tier in (
            Tier.BACKUP_WORKER,
            Tier.COMMUNITY_STATION,
            Tier.STREET_CENTRE,
            Tier.HOTLINE_DESK,
        )
    ]


COLUMNS: tuple[Column, ...] = (
    Column("level", "层级", "level", _level_name),
    Column("name", "名称", "name", lambda row: row.name),
    Column("help_calls", "求助呼叫", "help calls", _figure(lambda f: count(f.help_calls))),
    Column("answered", "已应答", "answered", _figure(lambda f: count(f.answered))),
    *_share_columns(),
    Column(
        "answer_median_s",
        "应答时间中位数（秒）",
        "median time to answer (s)",
        _figure(lambda f: seconds(f.answer_median_s)),
    ),
    Column(
        "answer_p90_s",
        "应答时间P90（秒）",
        "p90 time to answer (s)",
        _figure(lambda f: seconds(f.answer_p90_s)),
    ),
    Column(
        "on_site_median_s",
        "到场时间中位数（秒）",
        "median time to on site (s)",
        _figure(lambda f: seconds(f.on_site_median_s)),
    ),
    Column(
        "on_site_p90_s",
        "到场时间P90（秒）",
        "p90 time to on site (s)",
        _figure(lambda f: seconds(f.on_site_p90_s)),
    ),
    *_escalation_columns(),
    Column("reassigned", "热线改派", "reassigned", _figure(lambda f: count(f.reassigned_calls))),
    Column("cancelled", "取消", "cancelled", _figure(lambda f: count(f.cancelled))),
    Column("false_calls", "误报", "false calls", _figure(lambda f: count(f.false_calls))),
    Column(
        "service_requests",
        "便民服务",
        "service requests",
        _figure(lambda f: count(f.service_requests_total)),
    ),
    Column(
        "answered_by_worker",
        "本人应答",
        "answered by them",
        _figure(lambda f: count(f.answered_by_worker)),
    ),
    *(
        Column(
            f"service_{category}",
            f"便民服务：{zh}",
            f"service: {en}",
            _category_cell(category),
            on_page=False,
        )
        for category, (zh, en) in SERVICE_CATEGORIES.items()
    ),
)


def _rows(report: CareReport) -> list[tuple[str, Row]]:
    return [
        ("total", report.total),
        *(("child", row) for row in report.children),
        *(("worker", row) for row in report.workers),
    ]


def report_json(report: CareReport) -> dict[str, Any]:
    """The report for the page: columns, rows of cells and raw figures, calls, categories."""
    return {
        "unit": {"level": report.unit.level.value, "id": report.unit.id, "name": report.unit.name},
        "path": [{"level": u.level.value, "id": u.id, "name": u.name} for u in report.path],
        "child_level": report.child_level,
        "period": {
            "start": report.start.isoformat(),
            "end": report.end.isoformat(),
            "starts_at": report.starts_at,
            "ends_at": report.ends_at,
        },
        "now": report.now,
        "targets": [{"limit_s": limit, "share": share} for limit, share in ANSWER_TARGETS],
        "columns": [{"key": c.key, "zh": c.zh, "en": c.en, "on_page": c.on_page} for c in COLUMNS],
        "rows": [
            {
                "row": kind,
                "level": row.level,
                "id": row.id,
                "name": row.name,
                "cells": {c.key: c.cell(row) for c in COLUMNS},
                "shares": {
                    str(share.limit_s): {"met": share.met, "decided": share.decided}
                    for share in row.figures.shares
                },
            }
            for kind, row in _rows(report)
        ],
        "service_requests": [
            {
                "category": c,
                "zh": zh,
                "en": en,
                "count": report.total.figures.service_requests.get(c, 0),
            }
            for c, (zh, en) in SERVICE_CATEGORIES.items()
        ],
        "calls": [_call_json(call) for call in report.calls],
    }


def _call_json(call: ListedCall) -> dict[str, Any]:
    facts = call.facts
    return {
        "case_id": facts.case_id,
        "kind": call.kind,
        "grid_name": call.grid_name,
        "opened_at": facts.opened_at,
        "seconds_to_answer": seconds(facts.seconds_to_answer),
        "seconds_to_on_site": seconds(facts.seconds_to_on_site),
        "answered_by": call.answered_by_name,
        "escalated_to": [t.value for t in Tier if t.value in facts.tiers and t.rank > 0],
        "outcome": facts.outcome,
        "cancelled": facts.cancelled,
    }


def report_csv(report: CareReport) -> str:
    """The report's table as CSV: every page column, then the service categories."""
    return csv_text(
        [c.header for c in COLUMNS], ([c.cell(row) for c in COLUMNS] for _, row in _rows(report))
    )
