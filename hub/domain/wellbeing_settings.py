"""Configuration of the wellbeing watch (``HubConfig.wellbeing``, issue #15).

Validated at load like every other section, so a floor above the ceiling or raw activity
kept for less time than the baseline reads stops the hub with the field's name. The rule
knobs become a :class:`hub.domain.wellbeing.WatchSettings`; the rest says how activity is
read from device events, how long it is kept, and the welfare check's own, slower
escalation timetable (a quiet flat is worrying, a pressed SOS key is urgent).
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field, model_validator

from hub.domain.wellbeing import WatchSettings


class WellbeingSettings(BaseModel):
    model_config = {"extra": "forbid"}

    enabled: bool = True
    #: How often the watch judges every consenting household (the device tick runs it).
    check_every_s: float = Field(default=300.0, gt=0, le=3600)
    # the rhythm rules (see hub.domain.wellbeing.WatchSettings)
    history_days: int = Field(default=28, ge=7, le=60)
    min_history_days: int = Field(default=14, ge=0, le=60)
    floor_h: float = Field(default=2.0, gt=0, le=48)
    ceiling_h: float = Field(default=16.0, gt=0, le=96)
    fallback_h: float = Field(default=12.0, gt=0, le=96)
    out_h: float = Field(default=12.0, gt=0, le=96)
    stretch: float = Field(default=0.25, ge=0, le=10)
    slack_h: float = Field(default=1.0, ge=0, le=24)
    late_min: int = Field(default=150, ge=0, le=360)
    daily_risk: float = Field(default=0.0005, gt=0, lt=1)
    tail_from_h: float = Field(default=1.0, gt=0, le=24)
    tail_prior_h: float = Field(default=1.0, gt=0, le=24)
    meter_silent_after_h: float = Field(default=2.0, gt=0, le=72)
    # the "are you OK?" prompt (关爱询问) before a welfare check: a lower threshold, learnt
    # the same way; the resident answers on the CB-100's green key (or by any activity);
    # unanswered after prompt_wait_min, the welfare check. Never in the learnt sleep window.
    #: Off by default: on the simulated month it shortens the delay a little but raises
    #: more false welfare checks (docs/care.md); a pilot's answer rates should decide.
    prompt_enabled: bool = False
    prompt_daily_risk: float = Field(default=0.02, gt=0, lt=1)
    prompt_floor_h: float = Field(default=1.5, gt=0, le=48)
    prompt_stretch: float = Field(default=0.1, ge=0, le=10)
    prompt_slack_h: float = Field(default=0.5, ge=0, le=24)
    prompt_out_h: float = Field(default=8.0, gt=0, le=96)
    prompt_wait_min: float = Field(default=30.0, gt=0, le=240)
    #: An unanswered prompt waits, too, until the silence is longer than the resident's
    #: outings whose exit no door saw (learnt); false: the welfare check after the wait.
    prompt_hold_for_outings: bool = True
    # reading activity from device events
    #: Average electricity draw above this (W) between two readings is activity.
    standby_w: float = Field(default=150.0, ge=0, le=100_000)
    #: Water flow above this (m³/h) is activity.
    water_flow_m3h: float = Field(default=0.0, ge=0, le=10)
    #: At most one stored activity row per source and household in this many seconds.
    coalesce_s: float = Field(default=60.0, ge=0, le=3600)
    #: Raw activity rows are deleted after this many days (privacy).
    activity_kept_days: int = Field(default=35, ge=1, le=365)
    # the welfare check's escalation: grid worker → backup worker → community station
    backup_after_s: float = Field(default=1800.0, gt=0)
    station_after_s: float = Field(default=3600.0, gt=0)
    # daily check-in (报平安): the desk's call comes first, a welfare check after this long
    check_in_welfare_after_s: float = Field(default=7200.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        self.rules()  # floor ≤ ceiling, min_history ≤ history, prompt floor ≤ floor …
        if self.activity_kept_days < self.history_days:
            raise ValueError(
                "activity_kept_days must be >= history_days (the baseline reads that far back)"
            )
        return self

    def rules(self) -> WatchSettings:
        return WatchSettings(
            history_days=self.history_days,
            min_history_days=self.min_history_days,
            floor_h=self.floor_h,
            ceiling_h=self.ceiling_h,
            fallback_h=self.fallback_h,
            out_h=self.out_h,
            stretch=self.stretch,
            slack_h=self.slack_h,
            late_min=self.late_min,
            daily_risk=self.daily_risk,
            tail_from_h=self.tail_from_h,
            tail_prior_h=self.tail_prior_h,
            meter_silent_after_h=self.meter_silent_after_h,
            prompt_daily_risk=self.prompt_daily_risk,
            prompt_floor_h=self.prompt_floor_h,
            prompt_stretch=self.prompt_stretch,
            prompt_slack_h=self.prompt_slack_h,
            prompt_out_h=self.prompt_out_h,
            prompt_wait_min=self.prompt_wait_min,
            prompt_hold_for_outings=self.prompt_hold_for_outings,
        )
