"""What a worker is told: one self-contained notification per worker and tier.

The notifier channels (app push, SMS, the hotline screen) are plain transports; everything
a worker needs to act on a phone's lock screen, in Chinese first, is composed here so every
channel says the same thing. Times are stored in UTC and shown in the community's zone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from typing import Any

from contract.envelope import format_time
from hub.domain.escalation import TIER_LABELS, Tier

#: The eleven kinds of 便民服务 a call button can request (data.category 1..11).
SERVICE_CATEGORIES: dict[int, tuple[str, str]] = {
    1: ("助餐送餐", "meal delivery"),
    2: ("家政保洁", "housekeeping"),
    3: ("家电维修", "home repairs"),
    4: ("助浴", "bathing assistance"),
    5: ("陪同就医", "escort to a clinic"),
    6: ("代购代办", "shopping and errands"),
    7: ("上门理发", "home haircut"),
    8: ("精神慰藉", "companionship visit"),
    9: ("法律咨询", "legal advice"),
    10: ("代缴费用", "bill payment"),
    11: ("其他服务", "other service"),
}

_HEADLINES: dict[str, tuple[str, str]] = {
    "sos": ("【一键通求助】", "SOS"),
    "fall": ("【跌倒报警】", "Fall alarm"),
    "phone": ("【热线求助】", "Hotline help call"),
    "service_request": ("【便民服务】", "Service request"),
}


@dataclass(frozen=True, slots=True)
class Notification:
    """Tell one worker about one case (or, for service requests, one task)."""

    case_id: int | None
    worker_id: int
    tier: str  # a Tier value, e.g. "grid_worker"
    kind: str  # "sos", "fall", "phone", "service_request", ...
    resident_name: str
    address: str
    grid_name: str
    household_id: int
    occurred_at: datetime  # UTC
    message_zh: str
    message_en: str
    ack_path: str  # e.g. "/api/v1/cases/12/acknowledge"
    task_id: int | None = None
    lives_alone: bool = False

    def to_json_obj(self) -> dict[str, Any]:
        obj = asdict(self)
        obj["occurred_at"] = format_time(self.occurred_at)
        return obj


def compose(
    *,
    kind: str,
    tier: Tier,
    resident_name: str,
    address: str,
    grid_name: str,
    occurred_at: datetime,
    tz: tzinfo,
    lives_alone: bool = False,
    detail: str = "",
    category: int | None = None,
) -> tuple[str, str]:
    """(message_zh, message_en) for a notification.

    Escalated tiers are told that the case was escalated, so a street-centre officer knows
    the grid worker has not answered.
    """
    head_zh, head_en = _HEADLINES.get(kind, ("【通知】", kind))
    clock = occurred_at.astimezone(tz).strftime("%m-%d %H:%M")
    who_zh = resident_name + ("（独居）" if lives_alone else "")
    who_en = resident_name + (" (lives alone)" if lives_alone else "")
    if kind == "service_request":
        label_zh, label_en = SERVICE_CATEGORIES.get(category or 11, SERVICE_CATEGORIES[11])
        zh = f"{head_zh}{who_zh}，{address}（{grid_name}），{clock} 申请{label_zh}。"
        en = f"{head_en}: {who_en}, {address} ({grid_name}), {clock}: {label_en}."
    else:
        zh = f"{head_zh}{who_zh}，{address}（{grid_name}），{clock} 发起求助，请立即联系并上门。"
        en = f"{head_en}: {who_en}, {address} ({grid_name}), {clock}. Please respond now."
    if detail:
        zh += f"备注：{detail}"
        en += f" Note: {detail}"
    if tier is not Tier.GRID_WORKER and kind != "service_request":
        tier_zh, tier_en = TIER_LABELS[tier]
        zh = f"【已升级至{tier_zh}】" + zh
        en = f"[Escalated to {tier_en}] " + en
    return zh, en
