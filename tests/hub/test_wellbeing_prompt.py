"""The "are you OK?" prompt (关爱询问) before a welfare check (issue #15), on hand-built
histories: raised past its lower threshold, answered by a check-in or any activity,
unanswered → the welfare check, and never while away, on a device fault, in the resident's
learnt sleep window or where nobody can be asked."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from hub.domain.wellbeing import (
    Activity,
    AwayPeriod,
    Baseline,
    MeterHealth,
    Mode,
    Source,
    Verdict,
    WatchSettings,
    judge,
    learn_baseline,
    learn_prompt_baseline,
    quiet_history,
)
from tests.hub.test_wellbeing_rules import FIRST, SH, TODAY, local, routine

#: The mechanics under test, independent of the tuned defaults.
S = WatchSettings(
    floor_h=3.0,
    stretch=0.1,
    slack_h=0.5,
    late_min=60,
    tail_prior_h=0.25,
    prompt_floor_h=1.5,
    prompt_wait_min=30,
)
WAIT = timedelta(minutes=S.prompt_wait_min)


def learnt(activities: list[Activity]) -> tuple[Baseline, Baseline]:
    history = quiet_history(activities, local(FIRST, 0), local(TODAY, 0), SH)
    return learn_baseline(history, S, until=TODAY), learn_prompt_baseline(history, S, until=TODAY)


HISTORY = routine(FIRST, 28)  # up 07:00-22:00, something every 30 min
BASELINE, PROMPT = learnt(HISTORY)
FELL = [*HISTORY, *(a for a in routine(TODAY, 1) if a.at <= local(TODAY, 10))]  # at 10:00


def verdict(
    now: datetime,
    activities: list[Activity],
    *,
    prompted_at: datetime | None = None,
    **kw: object,
) -> Verdict:
    last: dict[Source, datetime] = {}
    for a in activities:
        if a.at <= now:
            last[a.source] = max(a.at, last.get(a.source, a.at))
    return judge(
        now,
        last,
        BASELINE,
        SH,
        S,
        watch_started_at=local(FIRST, 0),
        prompt_baseline=PROMPT,
        prompted_at=prompted_at,
        **kw,  # type: ignore[arg-type]
    ).verdict


def prompt_h(hour: float) -> float:
    return PROMPT.threshold_h(local(TODAY, hour), SH, Mode.HOME, S.prompt_rules())


def test_the_prompt_comes_first_then_unanswered_the_welfare_check() -> None:
    welfare_h = BASELINE.threshold_h(local(TODAY, 13), SH, Mode.HOME, S)
    assert S.prompt_floor_h <= prompt_h(13) < welfare_h  # a lower threshold, learnt
    asked = local(TODAY, 10 + prompt_h(11.5) + 0.1)
    assert verdict(local(TODAY, 10 + S.prompt_floor_h - 0.1), FELL) is Verdict.OK
    assert verdict(asked, FELL) is Verdict.PROMPT
    assert verdict(asked + WAIT / 2, FELL, prompted_at=asked) is Verdict.PROMPTED
    # unanswered for the wait: the welfare check, well before the welfare threshold
    assert verdict(asked + WAIT, FELL, prompted_at=asked) is Verdict.ALERT
    assert (asked + WAIT - local(TODAY, 10)).total_seconds() / 3600 < welfare_h
    # without the prompt step the same silence is still "usual" then
    last = {Source.WATER: local(TODAY, 9.5), Source.ELECTRICITY: local(TODAY, 10)}
    plain = judge(asked + WAIT, last, BASELINE, SH, S, watch_started_at=local(FIRST, 0))
    assert plain.verdict is Verdict.OK


@pytest.mark.parametrize("answer", [Source.ANSWER, Source.CHECK_IN, Source.WATER])
def test_an_answer_or_any_activity_ends_the_silence_and_the_prompt(answer: Source) -> None:
    asked = local(TODAY, 10 + prompt_h(11.5) + 0.1)
    answered = [*FELL, Activity(asked + WAIT / 3, answer)]
    assert verdict(asked + WAIT, answered, prompted_at=asked) is Verdict.OK
    # the silence starts again from the answer: prompted again only past the threshold
    again = asked + WAIT / 3 + timedelta(hours=prompt_h(13) + 0.1)
    assert verdict(again, answered, prompted_at=asked) is Verdict.PROMPT


def test_no_prompt_in_the_learnt_sleep_window() -> None:
    assert math.isinf(
        judge(
            local(TODAY, 3),
            {Source.WATER: local(TODAY - timedelta(days=1), 21.5)},
            BASELINE,
            SH,
            S,
            watch_started_at=local(FIRST, 0),
            prompt_baseline=PROMPT,
        ).prompt_threshold_h
    )
    asleep = [a for a in HISTORY if a.at <= local(TODAY - timedelta(days=1), 21.5)]
    for hour in (23.5, 1, 3, 5):  # at night only the welfare threshold (the usual night)
        now = local(TODAY - timedelta(days=1), hour)
        assert verdict(now, asleep) is Verdict.OK
    # at the usual waking hour the night's silence is usual, a morning much later is not
    assert verdict(local(TODAY, 7.5), asleep) is Verdict.OK
    assert verdict(local(TODAY, 9.5), asleep) in {Verdict.PROMPT, Verdict.ALERT}


def test_no_prompt_while_away_or_when_a_meter_is_dead() -> None:
    asked = local(TODAY, 10 + prompt_h(11.5) + 0.1)
    away = [AwayPeriod(local(TODAY, 10.2), local(TODAY, 20), "family_visit")]
    assert verdict(asked, FELL, away=away) is Verdict.AWAY
    dead = [MeterHealth(Source.WATER, "wm-1", local(TODAY, 9))]
    assert verdict(asked, FELL, meters=dead) is Verdict.DEVICE_FAULT
    assert verdict(asked + WAIT, FELL, prompted_at=asked, meters=dead) is Verdict.DEVICE_FAULT


def test_no_prompt_where_nobody_can_be_asked() -> None:
    asked = local(TODAY, 10 + prompt_h(11.5) + 0.1)
    assert verdict(asked, FELL, prompt_home=False) is Verdict.OK  # no button, no phone
    # a silence that began at the door: only a phone could ask (a button beeps to no one)
    out = [*FELL, Activity(local(TODAY, 10.1), Source.DOOR)]
    later = local(TODAY, 10.1 + S.prompt_out_h + 0.1)
    assert verdict(later, out) is Verdict.OK
    assert verdict(later, out, prompt_out=True) is Verdict.PROMPT


def test_no_prompt_before_the_rhythm_is_learnt() -> None:
    few = routine(TODAY - timedelta(days=5), 5)
    history = quiet_history(few, local(FIRST, 0), local(TODAY, 0), SH)
    untrained = learn_prompt_baseline(history, S, until=TODAY)
    assert not untrained.trained
    last = {Source.WATER: local(TODAY, 10)}
    j = judge(
        local(TODAY, 13),
        last,
        learn_baseline(history, S, until=TODAY),
        SH,
        S,
        watch_started_at=local(FIRST, 0),
        prompt_baseline=untrained,
    )
    assert j.verdict is Verdict.OK and math.isinf(j.prompt_threshold_h)


def test_answers_are_not_learnt_from() -> None:
    """A spell cut short by a prompt must not teach shorter spells (ever more prompts)."""
    answers = [Activity(local(FIRST + timedelta(days=d), 15.2), Source.ANSWER) for d in range(28)]
    with_answers = quiet_history(
        sorted([*HISTORY, *answers], key=lambda a: a.at), local(FIRST, 0), local(TODAY, 0), SH
    )
    without = quiet_history(HISTORY, local(FIRST, 0), local(TODAY, 0), SH)
    assert with_answers.home == without.home


def test_settings_refuse_a_prompt_above_the_welfare_floor_or_rarer_than_it() -> None:
    with pytest.raises(ValueError, match="prompt_floor_h"):
        WatchSettings(floor_h=2.0, prompt_floor_h=3.0)
    with pytest.raises(ValueError, match="prompt_daily_risk"):
        WatchSettings(daily_risk=0.01, prompt_daily_risk=0.001)
    with pytest.raises(ValueError, match="prompt_wait_min"):
        WatchSettings(prompt_wait_min=0)


def test_an_unanswered_prompt_waits_out_the_outings_no_door_saw_leave() -> None:
    """A resident whose exits no door sees: the silence of an outing ends with her walking
    back in through the face door. The button at home cannot reach her out there, so an
    unanswered prompt is news only past the outings she usually has."""
    history: list[Activity] = []
    for d in range(28):
        day = FIRST + timedelta(days=d)
        out = [a for a in routine(day, 1) if not 14 <= (a.at - local(day, 0)).seconds / 3600 < 17]
        history += [*out, Activity(local(day, 16.9), Source.DOOR)]  # back in before 17:00
    history.sort(key=lambda a: a.at)
    welfare, prompt = learnt(history)
    assert prompt.unanswered_h(local(TODAY, 15), SH) >= 3.0  # her three-hour outings
    assert BASELINE.unanswered_h(local(TODAY, 15), SH) == 0.0  # stored baselines: at once
    assert PROMPT.unanswered_h(local(TODAY, 15), SH) == 0.0  # nobody out unseen: at once
    # the prompt itself is learnt from the spells that ended at home: as quick as before
    rules = S.prompt_rules()
    assert prompt.threshold_h(local(TODAY, 12), SH, Mode.HOME, rules) == prompt_h(12)
    fell = [a for a in [*history, *routine(TODAY, 1)] if a.at <= local(TODAY, 10)]
    asked = local(TODAY, 10 + prompt_h(11.5) + 0.1)
    last = {Source.WATER: local(TODAY, 9.5), Source.ELECTRICITY: local(TODAY, 10)}
    assert fell[-1].at == local(TODAY, 10)

    def at(now: datetime) -> Verdict:
        return judge(
            now,
            last,
            welfare,
            SH,
            S,
            watch_started_at=local(FIRST, 0),
            prompt_baseline=prompt,
            prompted_at=asked,
        ).verdict

    assert at(asked + WAIT) is Verdict.PROMPTED  # unanswered, but she may be out
    assert at(local(TODAY, 12.9)) is Verdict.PROMPTED  # up to the welfare threshold (3 h)
    # past them (or the welfare threshold, whichever first): the welfare check
    hold = prompt.unanswered_h(asked, SH)
    assert at(local(TODAY, 10 + hold + 0.05)) is Verdict.ALERT
