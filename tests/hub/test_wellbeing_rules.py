"""The wellbeing watch's rhythm and silence rules (issue #15) on hand-built histories."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

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
    electricity_active,
    evidence,
    judge,
    learn_baseline,
    missed_check_in,
    quiet_history,
)

SH = ZoneInfo("Asia/Shanghai")
#: The rule mechanics under test, independent of the tuned defaults.
S = WatchSettings(floor_h=2.5, stretch=0.1, slack_h=0.5, late_min=60, tail_prior_h=0.25)


def local(day: date, hour: float, tz: ZoneInfo = SH) -> datetime:
    midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
    return (midnight + timedelta(hours=hour)).astimezone(UTC)


def routine(first: date, days: int, tz: ZoneInfo = SH, wake: float = 7.0) -> list[Activity]:
    """Up at ``wake``, water or power every 30 min until 22:00, asleep until next wake."""
    out: list[Activity] = []
    for d in range(days):
        day = first + timedelta(days=d)
        hour = wake
        while hour < 22.0:
            source = Source.WATER if int(hour * 2) % 2 else Source.ELECTRICITY
            out.append(Activity(local(day, hour, tz), source))
            hour += 0.5
    return out


FIRST = date(2026, 3, 2)  # a Monday
TODAY = FIRST + timedelta(days=28)


def learnt(activities: list[Activity], tz: ZoneInfo = SH) -> Baseline:
    history = quiet_history(activities, local(FIRST, 0, tz), local(TODAY, 0, tz), tz)
    return learn_baseline(history, S, until=TODAY)


def judge_at(
    now: datetime, activities: list[Activity], baseline: Baseline, **kw: object
) -> Verdict:
    last: dict[Source, datetime] = {}
    for a in activities:
        if a.at <= now:
            last[a.source] = max(a.at, last.get(a.source, a.at))
    return judge(now, last, baseline, SH, S, watch_started_at=local(FIRST, 0), **kw).verdict  # type: ignore[arg-type]


def test_the_usual_night_is_quiet_but_a_silent_morning_is_news() -> None:
    history = routine(FIRST, 28)
    baseline = learnt(history)
    # the night's 9 h of sleep is the usual longest spell in the early morning
    assert 9.0 <= baseline.threshold_h(local(TODAY, 6.5), SH, Mode.HOME, S) <= S.ceiling_h
    # in the afternoon the usual longest is 30 min: the floor applies
    assert baseline.threshold_h(local(TODAY, 15), SH, Mode.HOME, S) == S.floor_h
    today = [*history, *routine(TODAY, 1)]
    assert judge_at(local(TODAY, 6.9), today, baseline) is Verdict.OK  # asleep as usual
    fell = [a for a in today if a.at <= local(TODAY, 10)]  # a fall at 10:00
    assert judge_at(local(TODAY, 12), fell, baseline) is Verdict.OK  # 2 h: under the floor
    assert judge_at(local(TODAY, 12.6), fell, baseline) is Verdict.ALERT
    # a fall at 21:00, an hour before the usual last activity, is found in the night, not
    # the next morning: at midnight the resident has never been quiet for 3.5 h (usually
    # 2.5 h, since 21:30)
    evening = [a for a in history if a.at < local(TODAY - timedelta(days=1), 21)]
    assert judge_at(local(TODAY, -1), evening, baseline) is Verdict.OK
    assert judge_at(local(TODAY, 0), evening, baseline) is Verdict.ALERT


def test_a_morning_may_start_somewhat_later_than_any_before() -> None:
    """The night's silence, seen up to ``late_min`` earlier, still covers a late morning."""
    history = routine(FIRST, 28)
    baseline = learnt(history)
    slept_in = [a for a in history if a.at < local(TODAY, 0)]  # last activity 21:30
    assert judge_at(local(TODAY, 7.9), slept_in, baseline) is Verdict.OK  # 55 min late
    assert judge_at(local(TODAY, 9.5), slept_in, baseline) is Verdict.ALERT  # 2.5 h late


def test_quiet_spells_while_up_widen_the_threshold_by_their_tail() -> None:
    """Naps and outings come at any hour: a resident who is often quiet for 3 h gets a
    while-up threshold beyond 3 h at every hour of the day, not only at their usual time."""
    busy = learnt(routine(FIRST, 28))
    napper = [
        a
        for a in routine(FIRST, 28)
        if not (
            10 + (a.at.day % 5) <= a.at.astimezone(SH).hour + a.at.minute / 60 < 13 + (a.at.day % 5)
        )
    ]
    dozy = learnt(napper)
    at_nine = local(TODAY, 9)  # before any nap of the history began
    assert busy.threshold_h(at_nine, SH, Mode.HOME, S) == S.floor_h
    assert dozy.threshold_h(at_nine, SH, Mode.HOME, S) > 3.5
    # the tail rule is what widens it: a lower accepted risk widens it further
    careful = replace(S, daily_risk=S.daily_risk / 10)
    history = quiet_history(napper, local(FIRST, 0), local(TODAY, 0), SH)
    wider = learn_baseline(history, careful, until=TODAY)
    assert wider.threshold_h(at_nine, SH, Mode.HOME, careful) > dozy.threshold_h(
        at_nine, SH, Mode.HOME, S
    )


def test_an_early_riser_and_a_night_owl_get_their_own_mornings() -> None:
    owl = learnt(routine(FIRST, 28, wake=10.0))
    lark = learnt(routine(FIRST, 28, wake=5.0))
    at_eight = local(TODAY, 8)
    owl_at_eight = owl.threshold_h(at_eight, SH, Mode.HOME, S)
    assert owl_at_eight > lark.threshold_h(at_eight, SH, Mode.HOME, S)
    lark_day = [a for a in routine(FIRST, 28, wake=5.0)]
    assert judge_at(local(TODAY, 9.5), lark_day, lark) is Verdict.ALERT  # 11.5 h, no water
    owl_day = [a for a in routine(FIRST, 28, wake=10.0)]
    assert judge_at(local(TODAY, 9.5), owl_day, owl) is Verdict.OK


def test_too_little_history_falls_back_to_the_fixed_rule() -> None:
    history = routine(FIRST, 5)
    base = learn_baseline(
        quiet_history(history, local(FIRST, 0), local(FIRST + timedelta(days=5), 0), SH),
        S,
        until=FIRST + timedelta(days=5),
    )
    assert not base.trained
    assert base.threshold_h(local(FIRST, 15), SH, Mode.HOME, S) == S.fallback_h


def test_never_while_marked_away_and_the_silence_restarts_at_the_end_date() -> None:
    history = routine(FIRST, 28)
    baseline = learnt(history)
    gone = [a for a in history if a.at < local(TODAY, 0) - timedelta(days=3)]
    away = AwayPeriod(local(TODAY, 0) - timedelta(days=3), local(TODAY, 12), "hospital")
    assert judge_at(local(TODAY, 11), gone, baseline, away=[away]) is Verdict.AWAY
    # back at noon by the end date: the silence counts from then, not from three days ago
    assert judge_at(local(TODAY, 13), gone, baseline, away=[away]) is Verdict.OK
    assert judge_at(local(TODAY, 15.5), gone, baseline, away=[away]) is Verdict.ALERT


def test_a_meter_that_stops_reporting_is_a_device_fault_not_silence() -> None:
    history = routine(FIRST, 28)
    baseline = learnt(history)
    quiet = [a for a in history if a.at <= local(TODAY, 10)] + routine(TODAY, 1)[:7]
    now = local(TODAY, 14)
    dead = MeterHealth(Source.WATER, "wm-3", last_report_at=local(TODAY, 10.2))
    alive = MeterHealth(Source.WATER, "wm-3", last_report_at=now - timedelta(minutes=1))
    offline = MeterHealth(Source.WATER, "wm-3", last_report_at=now, faulty=True)
    assert judge_at(now, quiet, baseline, meters=[dead]) is Verdict.DEVICE_FAULT
    assert judge_at(now, quiet, baseline, meters=[offline]) is Verdict.DEVICE_FAULT
    assert judge_at(now, quiet, baseline, meters=[alive]) is Verdict.ALERT


def test_a_silence_that_began_at_the_door_is_probably_an_outing() -> None:
    history = routine(FIRST, 28)
    baseline = learnt(history)
    went_out = [a for a in history if a.at <= local(TODAY - timedelta(days=1), 21.5)]
    went_out.append(Activity(local(TODAY, 9), Source.WATER))
    went_out.append(Activity(local(TODAY, 9.2), Source.DOOR))
    assert judge_at(local(TODAY, 15), went_out, baseline) is Verdict.OK  # out for 6 h
    assert judge_at(local(TODAY, 21.5), went_out, baseline) is Verdict.ALERT  # 12.3 h


def test_clock_changes_move_the_slot_not_the_length_of_a_spell() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # summer time began on 2026-03-29 at 02:00
    history = routine(FIRST, 28, tz=berlin)
    baseline = learnt(history, tz=berlin)
    quiet = quiet_history(history, local(FIRST, 0, berlin), local(TODAY, 0, berlin), berlin)
    night = quiet.home[date(2026, 3, 29)]
    # the short night lost an hour of wall time: at 06:45 the silence since 21:30 is
    # 8.25 h of real time (9.25 h on the wall clock); the lost hour's slots stay unknown
    assert max(night) == pytest.approx(8.25)
    assert night[2 * 4] < 0 and night[2 * 4 + 3] < 0  # 02:00-02:59 did not exist
    # the local 15:00 slot is still the quiet-afternoon slot after the change
    assert baseline.threshold_h(local(TODAY, 15, berlin), berlin, Mode.HOME, S) == S.floor_h


def test_a_device_clock_running_fast_counts_as_now_not_as_the_future() -> None:
    history = routine(FIRST, 28)
    baseline = learnt(history)
    now = local(TODAY, 15)
    fast = {Source.WATER: now + timedelta(hours=5)}
    judged = judge(now, fast, baseline, SH, S, watch_started_at=local(FIRST, 0))
    assert judged.verdict is Verdict.OK
    assert judged.silent_since == now
    later = judge(now + timedelta(hours=3), fast, baseline, SH, S, watch_started_at=now)
    assert later.silent_since == now + timedelta(hours=3)  # clamped to the judging time


def test_evidence_names_each_source_bilingually() -> None:
    history = routine(FIRST, 28)
    baseline = learnt(history)
    now = local(TODAY, 13)
    last = {Source.WATER: local(TODAY, 7.1), Source.DOOR: now - timedelta(days=2, hours=1)}
    judged = judge(now, last, baseline, SH, S, watch_started_at=local(FIRST, 0))
    assert judged.verdict is Verdict.ALERT
    zh, en = evidence(judged, SH, [Source.WATER, Source.DOOR])
    assert "no water since 07:06" in en and "自 07:06 起无用水" in zh
    assert "no door pass for 2 days" in en and "2 天无门禁通行" in zh
    assert "usually by" in en


def test_no_activity_at_all_since_the_watch_began_is_no_data() -> None:
    base = Baseline(False, ((0.0,) * 24,) * 2, ((0.0,) * 24,) * 2, 0)
    start = local(TODAY, 0)
    judged = judge(start + timedelta(hours=13), {}, base, SH, S, watch_started_at=start)
    assert judged.verdict is Verdict.NO_DATA


def test_electricity_above_standby_is_activity() -> None:
    t0 = local(TODAY, 10)
    t1 = t0 + timedelta(minutes=15)
    assert electricity_active(100.0, t0, 100.1, t1, standby_w=150) is True  # 400 W
    assert electricity_active(100.0, t0, 100.02, t1, standby_w=150) is False  # 80 W: fridge
    assert electricity_active(100.0, t0, 99.0, t1, standby_w=150) is None  # counter reset
    assert electricity_active(100.0, t0, 100.1, t0, standby_w=150) is None


def test_a_daily_check_in_is_missed_after_the_chosen_hour() -> None:
    started = local(FIRST, 0)
    assert missed_check_in(local(TODAY, 8.5), 9, None, SH, started) is None  # not yet due
    assert missed_check_in(local(TODAY, 9.5), 9, None, SH, started) == TODAY
    assert missed_check_in(local(TODAY, 9.5), 9, local(TODAY, 7), SH, started) is None
    yesterday = local(TODAY, 7) - timedelta(days=1)
    assert missed_check_in(local(TODAY, 9.5), 9, yesterday, SH, started) == TODAY
    assert missed_check_in(local(TODAY, 9.5), 9, None, SH, local(TODAY, 9.2)) is None


def test_settings_refuse_a_floor_above_the_ceiling() -> None:
    with pytest.raises(ValueError, match="floor_h"):
        WatchSettings(floor_h=13.0, ceiling_h=12.0)
