"""The care simulation (issue #15) runs, is reproducible per seed, and scores both rules."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from hub.domain.wellbeing import Source, WatchSettings
from simulators import care


def test_a_small_month_prints_both_rules_and_is_reproducible() -> None:
    first = care.run(12, 3, seed=5, check_min=30, s=WatchSettings())
    again = care.run(12, 3, seed=5, check_min=30, s=WatchSettings())
    assert "| learnt rhythm |" in first and "| fixed 12 h |" in first
    strip = [line for line in first.splitlines() if line.startswith("| ")]
    assert strip == [line for line in again.splitlines() if line.startswith("| ")]


def test_a_fall_stops_all_activity_but_an_appliance_left_on() -> None:
    start = datetime(2026, 3, 2, tzinfo=care.TZ)
    for n in range(20):
        rng = random.Random(n)
        res = care.simulate_resident(rng, start, 10)
        care.inject_incident(rng, res, start + timedelta(days=2), start + timedelta(days=8))
        assert res.incident_at is not None
        after = [a for a in res.activities if a.at > res.incident_at]
        assert all(a.source is Source.ELECTRICITY for a in after)
        if after:
            assert max(a.at for a in after) <= res.incident_at + timedelta(hours=4.5)
