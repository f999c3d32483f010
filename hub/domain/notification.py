"""What a worker is told: one self-contained notification per worker and tier.

The notifier channels (app push, SMS, the hotline screen) are plain transports; everything
a worker needs to act on a phone's lock screen, in Chinese first, is composed here so every
channel says the same thing. Times are stored in UTC and shown in the community's zone.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal

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
    "door_alert": ("【门禁告警】", "Door alert"),
    "bin_alert": ("【垃圾桶告警】", "Bin alert"),
    "leak_check": ("【疑似漏水】", "Suspected leak"),
    "delivery": ("【包裹送上门】", "Parcel delivery"),
    "outage": ("【疑似停电】", "Suspected power cut"),
    "maintenance": ("【设备维护】", "Device maintenance"),
    "welfare_check": ("【关爱探访】", "Welfare check"),  # the wellbeing watch (issue #15)
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


# --- channel text: one language per channel (issue #4) ---------------------------------

#: The language a notification channel speaks; Simplified Chinese unless configured.
Language = Literal["zh", "en"]

#: Placeholders an SMS-gateway template may use (see :func:`template_fields`).
TEMPLATE_FIELDS = frozenset(
    {
        "phone",
        "message",
        "title",
        "case_id",
        "task_id",
        "worker_id",
        "kind",
        "tier",
        "resident_name",
        "address",
        "grid_name",
        "ack_url",
        "link",
        "language",
    }
)

_ACK_PATH = re.compile(r"^(?P<base>.*)/api/v1/(?P<kind>cases|tasks)/(?P<id>\d+)/acknowledge$")


def page_link(notification: Notification) -> str:
    """The short link that opens the case (``/c/<id>``) or task (``/t/<id>``) on the worker
    page, on the hub's public address (issue #12); the API path if it is no case or task.

    Derived from ``ack_path``, which every producer builds on ``api.public_base_url``: a
    worker taps it in WeCom, DingTalk or an SMS, logs in if needed, and lands on the case
    (see ``hub.web.pages``).
    """
    found = _ACK_PATH.match(notification.ack_path)
    if found is None:
        return notification.ack_path
    letter = "c" if found["kind"] == "cases" else "t"
    return f"{found['base']}/{letter}/{found['id']}"


def message_in(notification: Notification, language: Language) -> str:
    return notification.message_zh if language == "zh" else notification.message_en


def message_with_link(notification: Notification, language: Language) -> str:
    """The message and the page link after it: an SMS's ``{message}``."""
    link = page_link(notification)
    text = message_in(notification, language)
    if not link:
        return text
    return f"{text} 处理：{link}" if language == "zh" else f"{text} Open: {link}"


def title_in(notification: Notification, language: Language) -> str:
    """A short title naming the call and the case (or task): a chat list's preview line."""
    head_zh, head_en = _HEADLINES.get(notification.kind, ("【通知】", notification.kind))
    if notification.task_id is not None:
        ref_zh, ref_en = f"任务 {notification.task_id}", f"task {notification.task_id}"
    else:
        ref_zh, ref_en = f"工单 {notification.case_id}", f"case {notification.case_id}"
    return f"{head_zh}{ref_zh}" if language == "zh" else f"{head_en} · {ref_en}"


def _ack_line(notification: Notification, language: Language, *, markdown: bool) -> str:
    label = "打开工单并接单" if language == "zh" else "Open and acknowledge"
    url = page_link(notification)
    if markdown and url.startswith(("http://", "https://")):
        return f"[{label}]({url})"
    return f"{label}：{url}" if language == "zh" else f"{label}: {url}"


def markdown_in(notification: Notification, language: Language) -> str:
    """The chat-robot body: title, the full message, the acknowledge link."""
    return (
        f"### {title_in(notification, language)}\n"
        f"{message_in(notification, language)}\n\n"
        f"{_ack_line(notification, language, markdown=True)}"
    )


def text_in(notification: Notification, language: Language) -> str:
    """The plain-text body: the message and the acknowledge link on its own line."""
    ack = _ack_line(notification, language, markdown=False)
    return f"{message_in(notification, language)}\n{ack}"


def template_fields(notification: Notification, language: Language, phone: str) -> dict[str, str]:
    """The values of :data:`TEMPLATE_FIELDS` for one notification to one phone number."""
    return {
        "phone": phone,
        "message": message_with_link(notification, language),
        "title": title_in(notification, language),
        "case_id": "" if notification.case_id is None else str(notification.case_id),
        "task_id": "" if notification.task_id is None else str(notification.task_id),
        "worker_id": str(notification.worker_id),
        "kind": notification.kind,
        "tier": notification.tier,
        "resident_name": notification.resident_name,
        "address": notification.address,
        "grid_name": notification.grid_name,
        "ack_url": notification.ack_path,
        "link": page_link(notification),
        "language": language,
    }
