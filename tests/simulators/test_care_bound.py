"""The bound on any silence rule (issue #15, ``simulators/care_bound.py``): its parts on
hand-built inputs whose answer is known, and a small run end to end."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from hub.domain.wellbeing import Activity, AwayPeriod, Source
from simulators import care_bound
from simulators.care import TZ, Resident
from simulators.care_bound import LATEST_H, Item, best_delay, lower_bound

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=TZ)  # a Monday, 08:00


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_spans_merge_and_answer_covers_and_overlaps() -> None:
    spans = care_bound._Spans([(at(5), at(6)), (at(0), at(2)), (at(1), at(3))])
    assert [spans.covers(at(h)) for h in (0, 2.5, 3, 4, 5.5, 6)] == [
        True,
        True,
        False,
        False,
        True,
        False,
    ]
    assert spans.overlaps(at(3), at(5.01)) and not spans.overlaps(at(3), at(5))
    assert spans.overlaps(at(-1), at(0.5)) and not spans.overlaps(at(6), at(9))


def test_silences_restart_after_an_absence_and_skip_meter_faults() -> None:
    res = Resident(
        activities=[
            Activity(at(0), Source.WATER),
            Activity(at(3), Source.DOOR),  # out: the next silence began at the door
            Activity(at(9), Source.WATER),
            Activity(at(40), Source.WATER),  # across a marked absence ending at 30 h
            Activity(at(45), Source.WATER),  # across a meter fault: the hub is blind then
            Activity(at(46), Source.WATER),
        ],
        marked_away=[AwayPeriod(at(10), at(30))],
        meter_faults=[(at(41), at(42))],
    )
    found = care_bound.silences(res, at_least_h=0.5)
    assert [(s.start, s.hours, s.context[2]) for s in found] == [
        (at(0), 3.0, False),
        (at(3), 6.0, True),
        (at(30), 10.0, False),  # counted from the end of the absence, as the hub does
        (at(45), 1.0, False),
    ]
    assert found[0].context == (0, 32, False)  # weekday, 08:00 local (quarter hour 32), at home


def items(*rows: tuple[float, float, float, float]) -> list[Item]:
    """(share of falls, cost at 4 h, at 8 h, at 48 h)."""
    return [Item(f, {4.0: c4, 8.0: c8, LATEST_H: c48}) for f, c4, c8, c48 in rows]


def test_one_goal_the_bound_is_the_linear_programme_optimum() -> None:
    two = items((0.5, 0.0, 0.0, 0.0), (0.5, 10.0, 10.0, 0.0))
    assert lower_bound(two, (0.5, 4.0)) == pytest.approx(0.0, abs=1e-9)
    # three quarters within 4 h: all of the free half and half of the other (cost 10 × ½)
    assert lower_bound(two, (0.75, 4.0)) == pytest.approx(5.0, rel=1e-6)
    assert lower_bound(two, (1.0, 4.0)) == pytest.approx(10.0, rel=1e-6)


def test_two_goals_at_once() -> None:
    three = items((1 / 3, 0.0, 0.0, 0.0), (1 / 3, 6.0, 1.0, 0.0), (1 / 3, 9.0, 3.0, 0.0))
    # half within 4 h: the free third and half of the second (3); 90 % within 8 h: the
    # rest of the second at 8 h (0.5) and 70 % of the third at 8 h (2.1)
    assert lower_bound(three, (0.5, 4.0), (0.9, 8.0)) == pytest.approx(5.6, rel=1e-3)


def test_best_delay_is_the_shortest_level_within_the_budget() -> None:
    # one circumstance holding every fall: half of them found costs half its price
    costly = [Item(1.0, {2.0: 9.0, 4.0: 3.0, 6.0: 0.5, LATEST_H: 0.0})]
    levels = (2.0, 4.0, 6.0)
    assert best_delay(costly, 0.5, budget=5.0, levels=levels) == 2.0  # 4.5
    assert best_delay(costly, 0.5, budget=2.0, levels=levels) == 4.0  # 1.5
    assert best_delay(costly, 0.5, budget=1.0, levels=levels) == 6.0  # 0.25
    assert math.isinf(best_delay(costly, 0.5, budget=0.1, levels=levels))


def test_a_small_run_is_reproducible_and_prompts_never_cost_more() -> None:
    first = care_bound.run(6, 56, seed=3)
    again = care_bound.run(6, 56, seed=3, jobs=2)
    assert first == again
    rows = [line for line in first.splitlines() if line.startswith("| ") and "rule |" not in line]
    assert [r.split(" | ")[0] for r in rows] == [f"| {v.name}" for v in care_bound.VARIANTS]
    least = [float(r.split(" | ")[1]) for r in rows]
    assert least[0] >= least[1] >= 0 and least[0] >= least[2] >= 0
