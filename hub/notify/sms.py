"""SMS through an HTTP gateway: one JSON POST per worker, built from a configured template.

Every SMS provider has its own API, so the body is a template from the configuration: any
JSON value whose strings may hold ``{placeholder}`` names from
:data:`hub.domain.notification.TEMPLATE_FIELDS`, e.g.::

    sms:
      url: https://sms.example/api/send
      template: {to: "{phone}", sign_name: 社区服务, content: "{message}"}
      headers: {authorization: ...}     # from HUB__NOTIFY__SMS__HEADERS__AUTHORIZATION
      ok_field: code                    # optional: the answer must have code == "OK"
      ok_value: OK

Only strings are filled in (keys and numbers are left alone); unknown placeholders are
refused when the configuration is loaded. The phone number is the worker's, read when the
message is sent; a worker without one is a failed delivery that is not retried.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from hub.domain.notification import Language, Notification, template_fields
from hub.notify.http import DeliveryFailed, HttpRequest, http_failure

PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")


class PhoneBook(Protocol):
    async def phone_of(self, worker_id: int) -> str | None: ...


def placeholders(template: Any) -> set[str]:
    """Every placeholder name used in the strings of ``template``."""
    if isinstance(template, str):
        return set(PLACEHOLDER.findall(template))
    if isinstance(template, Mapping):
        return set().union(*(placeholders(v) for v in template.values()))
    if isinstance(template, list | tuple):
        return set().union(*(placeholders(v) for v in template))
    return set()


def fill(template: Any, fields: Mapping[str, str]) -> Any:
    """``template`` with every ``{name}`` in its strings replaced by ``fields[name]``."""
    if isinstance(template, str):
        return PLACEHOLDER.sub(lambda m: fields.get(m.group(1), m.group(0)), template)
    if isinstance(template, Mapping):
        return {k: fill(v, fields) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return [fill(v, fields) for v in template]
    return template


class SmsGateway:
    channel = "sms"

    def __init__(
        self,
        url: str,
        template: Any,
        phones: PhoneBook,
        *,
        language: Language = "zh",
        headers: Mapping[str, str] | None = None,
        ok_field: str | None = None,
        ok_value: str = "OK",
    ) -> None:
        self.url = url
        self._template = template
        self._phones = phones
        self._language: Language = language
        self._headers = dict(headers or {})
        self._ok_field = ok_field
        self._ok_value = ok_value

    async def request(self, notification: Notification) -> HttpRequest:
        phone = (await self._phones.phone_of(notification.worker_id) or "").strip()
        if not phone:
            raise DeliveryFailed(f"worker {notification.worker_id} has no phone number")
        fields = template_fields(notification, self._language, phone)
        return HttpRequest(self.url, fill(self._template, fields), headers=self._headers)

    def failure(self, response: httpx.Response) -> str | None:
        failed = http_failure(response)
        if failed is not None or self._ok_field is None:
            return failed
        try:
            answer = response.json()
        except ValueError:
            return "answer is not JSON"
        value = answer.get(self._ok_field) if isinstance(answer, dict) else None
        if str(value) == self._ok_value:
            return None
        return f"{self._ok_field}={str(value)[:100]!r}, expected {self._ok_value!r}"
