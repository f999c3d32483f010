"""The care KPIs on a hand-built history: every figure, worked out by hand below."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.domain.care_kpi import (
    CallFacts,
    HistoryEntry,
    Notified,
    call_facts,
    calls_of_worker,
    care_figures,
    percentile,
)

T = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
NOW = T + timedelta(hours=6)
GRID = 1


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def call(
    case_id: int,
    opened: datetime,
    history: list[tuple[float, str, str]],
    notified: list[tuple[float, int, str]],
    *,
    outcome: str | None = None,
    cancelled: bool = False,
) -> CallFacts:
    """A call opened at ``opened``; history and notifications at seconds after it."""
    return call_facts(
        case_id=case_id,
        grid_id=GRID,
        opened_at=opened,
        outcome=outcome,
        cancel_requested=cancelled,
        # given newest first on purpose: the facts must not depend on the order
        history=[HistoryEntry(opened + s(t), actor, action) for t, actor, action in history][::-1],
        notified=[Notified(worker, tier, opened + s(t)) for t, worker, tier in notified],
    )


# Workers: 1 and 2 grid workers, 3 the backup worker, 4 the community station.
A = call(  # answered in 20 s by worker 1, on site at 300 s
    1,
    T,
    [(0, "system", "dispatch"), (20, "worker:1", "acknowledge"), (300, "worker:1", "arrive")],
    [(0, 1, "grid_worker")],
    outcome="helped_on_site",
)
B = call(  # escalated to the backup at 60 s, who answers at 75 s; a false alarm
    2,
    T + timedelta(hours=1),
    [(60, "system", "escalate"), (75, "worker:3", "acknowledge"), (600, "worker:3", "arrive")],
    [(0, 1, "grid_worker"), (60, 3, "backup_worker")],
    outcome="false_alarm",
)
C = call(  # up to the community station, answered at 200 s; the resident's cancel stood
    3,
    T + timedelta(hours=2),
    [(60, "system", "escalate"), (120, "system", "escalate"), (200, "worker:4", "acknowledge")],
    [(0, 1, "grid_worker"), (60, 3, "backup_worker"), (120, 4, "community_station")],
    cancelled=True,
)
D = call(  # the presence key at 45 s: answered and on site at once, by no worker
    4,
    T + timedelta(hours=3),
    [(45, "device:cb100-1", "arrive")],
    [(0, 1, "grid_worker")],
)
E = call(5, NOW - s(30), [], [(0, 1, "grid_worker")])  # unanswered, 30 s old: undecided
F = call(6, NOW - s(120), [], [(0, 1, "grid_worker")])  # unanswered, 120 s old
G = call(  # answered by 1 in 10 s, then reassigned by the desk to 2, who acknowledges too
    7,
    T + timedelta(hours=4),
    [
        (10, "worker:1", "acknowledge"),
        (100, "hotline:zhou", "reassign"),
        (130, "worker:2", "acknowledge"),
        (400, "worker:2", "arrive"),
    ],
    [(0, 1, "grid_worker"), (100, 2, "reassigned")],
)
CALLS = [A, B, C, D, E, F, G]
SERVICE_CATEGORIES = [1, 1, 3, 11, 99]  # 99 is not a category: counted as 11 (other)


def test_call_facts_are_read_from_the_history() -> None:
    assert (A.seconds_to_answer, A.answered_by, A.seconds_to_on_site) == (20, 1, 300)
    assert (D.seconds_to_answer, D.answered_by, D.seconds_to_on_site) == (45, None, 45)
    # the first acknowledgement answered G; the reassignment does not undo it
    assert (G.seconds_to_answer, G.answered_by, G.seconds_to_on_site) == (10, 1, 400)
    assert E.seconds_to_answer is None and E.seconds_to_on_site is None
    assert C.tiers == {"grid_worker", "backup_worker", "community_station"}
    assert C.notified == {1, 3, 4}


def test_every_figure_of_a_hand_built_history() -> None:
    figures = care_figures(CALLS, SERVICE_CATEGORIES, NOW)
    assert figures.help_calls == 7
    assert figures.answered == 5  # A B C D G
    # answer times 10 20 45 75 200: median = 3rd of 5, p90 = 5th of 5 (nearest rank)
    assert (figures.answer_median_s, figures.answer_p90_s) == (45, 200)
    # on site 45 300 400 600: median = 2nd of 4, p90 = 4th of 4
    assert (figures.on_site_median_s, figures.on_site_p90_s) == (300, 600)
    within_60 = figures.share(60)
    # decided: the 5 answered + F (unanswered, 120 s > 60 s); E (30 s) may still make it
    assert (within_60.met, within_60.decided) == (3, 6)  # A 20, D 45, G 10
    assert within_60.value == 0.5 and within_60.target == 0.975
    assert within_60.meets_target is False
    within_180 = figures.share(180)
    assert (within_180.met, within_180.decided) == (4, 5)  # C took 200 s; F is undecided
    assert within_180.value == 0.8 and within_180.target == 0.99
    assert figures.escalations == {
        "backup_worker": 2,
        "community_station": 1,
        "street_centre": 0,
        "hotline_desk": 0,
    }
    assert figures.escalated_calls == 2
    assert figures.reassigned_calls == 1
    assert figures.cancelled == 1
    assert figures.false_calls == 1
    assert figures.service_requests == {1: 2, 3: 1, 11: 2}
    assert figures.service_requests_total == 5
    assert figures.answered_by_worker is None


def test_per_worker_rows() -> None:
    first = calls_of_worker(CALLS, 1)
    assert [c.case_id for c in first] == [1, 2, 3, 4, 5, 6, 7]
    figures = care_figures(first, [], NOW, worker_id=1)
    assert figures.answered_by_worker == 2  # A and G
    backup = care_figures(calls_of_worker(CALLS, 3), [], NOW, worker_id=3)
    assert backup.help_calls == 2 and backup.answered_by_worker == 1  # B; C was the station's
    assert (backup.answer_median_s, backup.answer_p90_s) == (75, 200)
    assert (backup.share(60).met, backup.share(60).decided) == (0, 2)
    second = care_figures(calls_of_worker(CALLS, 2), [], NOW, worker_id=2)
    # G reached worker 2 by reassignment, after worker 1 had answered it
    assert second.help_calls == 1 and second.answered_by_worker == 0
    assert second.reassigned_calls == 1


def test_no_calls_no_figures() -> None:
    figures = care_figures([], [], NOW)
    assert figures.help_calls == 0
    assert figures.share(60).value is None and figures.share(60).meets_target is None
    assert figures.answer_median_s is None and figures.on_site_p90_s is None
    assert figures.service_requests == {}


def test_the_limit_itself_counts_as_within() -> None:
    on_time = call(10, T, [(60, "worker:1", "acknowledge")], [])
    late = call(11, T, [(60.5, "worker:1", "acknowledge")], [])
    figures = care_figures([on_time, late], [], NOW)
    assert (figures.share(60).met, figures.share(60).decided) == (1, 2)
    assert figures.share(180).value == 1.0 and figures.share(180).meets_target is True


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [([7.0], 50, 7.0), ([1.0, 2.0], 50, 1.0), ([1.0, 2.0, 3.0, 4.0], 90, 4.0), ([], 90, None)],
)
def test_nearest_rank_percentile(values: list[float], p: float, expected: float | None) -> None:
    assert percentile(values, p) == expected
