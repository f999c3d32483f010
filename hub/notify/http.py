"""The one delivery path of every HTTP notification channel: retry, count, record.

A channel (generic webhook, WeCom group robot, DingTalk group robot, SMS gateway) is only a
:class:`MessageFormat`: how one notification becomes one HTTP request, and how the
receiver's answer says "delivered". :class:`HttpChannel` runs any of them and owns what
they share, so there is one retry loop, not four:

* delivery in background tasks (at most ``MAX_CONCURRENT`` at once): a slow receiver never
  delays ingest or escalation;
* a timeout on every request, retries with jittered exponential backoff
  (:class:`RetryPolicy`); a :class:`DeliveryFailed` from the format (e.g. the worker has no
  phone number) is final and not retried;
* the ``sent`` / ``failed`` counters the hub exports as metrics, and one
  :class:`DeliveryOutcome` per notification handed to a :class:`DeliveryRecorder` (the hub
  writes it to ``notification_deliveries``, so failures are visible in the API).

URLs are logged without user info, query string or fragment (:func:`redact_url`): WeCom
and DingTalk carry their key in the query. httpx logs each request with its full URL at
INFO, so its log records are redacted the same way.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from hub.domain.notification import Notification

log = logging.getLogger(__name__)

MAX_CONCURRENT = 16
#: Characters of a receiver's error message kept in the delivery record.
MAX_ERROR_CHARS = 300


def redact_url(url: str | httpx.URL) -> str:
    """``scheme://host[:port]/path``: what may be logged of a URL that can carry a key."""
    parts = urlsplit(str(url))
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


class _RedactHttpxUrls(logging.Filter):
    """httpx logs ``HTTP Request: POST <full URL> ...`` at INFO; keep keys out of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(a) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_RedactHttpxUrls())


class DeliveryFailed(Exception):
    """This notification cannot be sent on this channel at all; retrying would not help."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One POST: ``body`` is sent as JSON, ``params`` are added to the URL's query."""

    url: str
    body: Any
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


class MessageFormat(Protocol):
    """What makes a channel: its name, its request, and how its receiver says "done"."""

    @property
    def channel(self) -> str:
        """Short channel name for metrics and records: "webhook", "wecom", ..."""
        ...

    @property
    def url(self) -> str:
        """The receiver's URL as configured (logged only through :func:`redact_url`)."""
        ...

    async def request(self, notification: Notification) -> HttpRequest:
        """Built for every attempt (a signature may depend on the time). May raise
        :class:`DeliveryFailed`."""
        ...

    def failure(self, response: httpx.Response) -> str | None:
        """Why ``response`` is not a delivery, or None when it is."""
        ...


def http_failure(response: httpx.Response) -> str | None:
    """A 2xx status is a delivery; anything else (redirects are not followed) is not."""
    return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"


def robot_failure(response: httpx.Response) -> str | None:
    """WeCom and DingTalk robots answer HTTP 200 with ``{"errcode": 0, ...}`` on success and
    a non-zero ``errcode`` (bad key, bad signature, rate limit) on failure."""
    failed = http_failure(response)
    if failed is not None:
        return failed
    try:
        answer = response.json()
    except ValueError:
        return "answer is not JSON"
    if not isinstance(answer, dict):
        return "answer is not a JSON object"
    code = answer.get("errcode")
    if code == 0:
        return None
    message = str(answer.get("errmsg", ""))[:MAX_ERROR_CHARS]
    return f"errcode {code}: {message}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    timeout_s: float = 5.0
    #: Wait before the second attempt; doubled for each further one, up to ``max_backoff_s``.
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (1-based) failed; jittered so
        many deliveries failing together do not retry together."""
        base = min(self.max_backoff_s, self.backoff_s * 2.0 ** (failed_attempt - 1))
        return base * random.uniform(0.5, 1.0)  # jitter, not cryptography


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    channel: str
    notification: Notification
    delivered: bool
    attempts: int  # HTTP attempts made; 0 when the format refused before sending
    error: str  # "" when delivered
    at: datetime


class DeliveryRecorder(Protocol):
    async def record(self, outcome: DeliveryOutcome) -> None: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


class HttpChannel:
    """A :class:`~hub.notify.base.Notifier` that POSTs each notification in ``format``."""

    def __init__(
        self,
        message_format: MessageFormat,
        policy: RetryPolicy,
        *,
        recorder: DeliveryRecorder | None = None,
        clock: Callable[[], datetime] = utc_now,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.format = message_format
        self.channel = message_format.channel
        self.policy = policy
        self._recorder = recorder
        self._clock = clock
        self._client = httpx.AsyncClient(
            timeout=policy.timeout_s, transport=transport, follow_redirects=False
        )
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0
        self.retries = 0

    @property
    def label(self) -> str:
        return f"{self.channel} {redact_url(self.format.url)}"

    async def notify(self, notification: Notification) -> None:
        task = asyncio.create_task(self._deliver(notification), name=f"{self.channel}-delivery")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for every delivery under way (tests; an orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel deliveries under way (they are lost: notifications are not persisted)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    async def _deliver(self, notification: Notification) -> None:
        async with self._slots:
            try:
                attempts, error = await self._attempts(notification)
            except Exception:  # a notifier never raises; this is a bug, logged with its trace
                log.exception("%s: delivery for case %s crashed", self.label, notification.case_id)
                attempts, error = 0, "internal error"
        if error:
            self.failed += 1
            log.warning(
                "%s: notification for case %s task %s worker %s failed after %d attempt(s): %s",
                self.label,
                notification.case_id,
                notification.task_id,
                notification.worker_id,
                attempts,
                error,
            )
        else:
            self.sent += 1
        await self._record(notification, attempts, error)

    async def _attempts(self, notification: Notification) -> tuple[int, str]:
        """(attempts made, "" or why the last one failed)."""
        error = ""
        for attempt in range(1, self.policy.attempts + 1):
            try:
                request = await self.format.request(notification)
            except DeliveryFailed as err:
                return attempt - 1, str(err)
            try:
                response = await self._client.post(
                    request.url,
                    json=request.body,
                    params=dict(request.params),
                    headers=dict(request.headers),
                )
                failed = self.format.failure(response)
            except httpx.HTTPError as err:
                failed = type(err).__name__
            if failed is None:
                return attempt, ""
            error = failed
            if attempt < self.policy.attempts:
                self.retries += 1
                await asyncio.sleep(self.policy.delay(attempt))
        return self.policy.attempts, error

    async def _record(self, notification: Notification, attempts: int, error: str) -> None:
        if self._recorder is None:
            return
        outcome = DeliveryOutcome(
            self.channel, notification, not error, attempts, error, self._clock()
        )
        try:
            await self._recorder.record(outcome)
        except Exception:  # the delivery itself is done; losing its record is only logged
            log.exception("%s: could not record a delivery outcome", self.label)
