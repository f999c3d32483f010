"""The HTTP notification channels a hub configuration asks for, ready to run.

Every one is an :class:`~hub.notify.http.HttpChannel` (one retry path) around its
:class:`~hub.notify.http.MessageFormat`: the generic webhooks, then WeCom, DingTalk and SMS
when configured, each speaking ``notify.language`` (Simplified Chinese by default).
"""

from __future__ import annotations

import logging

from hub.config import HttpChannelSettings, HubConfig
from hub.notify.dingtalk import DingTalkRobot
from hub.notify.http import DeliveryRecorder, HttpChannel, MessageFormat, RetryPolicy
from hub.notify.sms import PhoneBook, SmsGateway
from hub.notify.webhook import JsonWebhook
from hub.notify.wecom import WeComRobot

log = logging.getLogger(__name__)


def retry_policy(settings: HttpChannelSettings) -> RetryPolicy:
    return RetryPolicy(
        attempts=settings.attempts, timeout_s=settings.timeout_s, backoff_s=settings.backoff_s
    )


def http_channels(
    config: HubConfig, *, recorder: DeliveryRecorder | None, phones: PhoneBook
) -> list[HttpChannel]:
    notify = config.notify
    language = notify.language
    built: list[tuple[MessageFormat, HttpChannelSettings]] = [
        (JsonWebhook(str(w.url)), w) for w in config.webhooks
    ]
    if notify.wecom is not None:
        w = notify.wecom
        robot = WeComRobot(
            w.key.get_secret_value(), url=str(w.url), language=language, msgtype=w.msgtype
        )
        built.append((robot, w))
    if notify.dingtalk is not None:
        d = notify.dingtalk
        secret = d.secret.get_secret_value() if d.secret is not None else None
        token = d.access_token.get_secret_value()
        built.append((DingTalkRobot(token, secret=secret, url=str(d.url), language=language), d))
    if notify.sms is not None:
        s = notify.sms
        headers = {k: v.get_secret_value() for k, v in s.headers.items()}
        gateway = SmsGateway(
            str(s.url),
            s.template,
            phones,
            language=language,
            headers=headers,
            ok_field=s.ok_field,
            ok_value=s.ok_value,
        )
        built.append((gateway, s))
    channels = [HttpChannel(f, retry_policy(s), recorder=recorder) for f, s in built]
    for channel in channels:
        log.info("notification channel %s (%s)", channel.label, language)
    return channels
