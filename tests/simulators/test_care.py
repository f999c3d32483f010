"""The care simulation (issue #15) runs, is reproducible per seed, and scores both rules."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from hub.domain.wellbeing import Source, WatchSettings
from simulators import care


def test_a_small_month_prints_both_rules_and_is_reproducible() -> None:
    first = care.run(12, 3, seed=5, check_min=30, s=WatchSettings())
    # in two worker processes: the same figures (each resident has generators of its own)
    again = care.run(12, 3, seed=5, check_min=30, s=WatchSettings(), jobs=2)
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


def test_the_prompt_rule_is_scored_beside_the_others_and_reproducible() -> None:
    answers = care.ANSWER_MODELS["default"]
    first = care.run(12, 3, seed=5, check_min=30, s=WatchSettings(), answers=answers)
    again = care.run(12, 3, seed=5, check_min=30, s=WatchSettings(), answers=answers)
    rows = [line for line in first.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == [
        "| learnt rhythm + prompt",
        "| learnt rhythm",
        "| fixed 12 h",
    ]
    assert rows == [line for line in again.splitlines() if line.startswith("| ")]
    # the month lived is the same with and without prompts: the rules without score alike
    plain = care.run(12, 3, seed=5, check_min=30, s=WatchSettings())
    assert rows[2:] == [line for line in plain.splitlines() if line.startswith("| ")][1:]


def test_who_answers_a_prompt() -> None:
    start = datetime(2026, 3, 2, tzinfo=care.TZ)
    res = care.simulate_resident(random.Random(3), start, 5)
    res.incident_at = start + timedelta(days=4, hours=10)
    rng = random.Random(1)
    sure = care.AnswerModel(awake=1.0, napping=1.0, asleep=1.0, mobile_share=1, mobile_heard=1)
    assert not sure.answers(res, res.incident_at + timedelta(minutes=1), rng)  # fallen: never
    out_at = res.outside[0][0] + (res.outside[0][1] - res.outside[0][0]) / 2
    assert res.doing(out_at) == "out"
    res.has_mobile = False
    assert not sure.answers(res, out_at, rng)  # out without a mobile: the button is at home
    res.has_mobile = True
    assert sure.answers(res, out_at, rng)
    assert res.doing(start + timedelta(hours=2)) == "asleep"
