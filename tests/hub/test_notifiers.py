"""The HTTP notification channels against a real local HTTP server.

The server (``http.server`` in a thread, on 127.0.0.1) records every request and answers
from a script: the first N requests can fail with HTTP 500 or with ``errcode`` ≠ 0, as
WeCom and DingTalk do. Tests wait for deliveries with ``HttpChannel.drain()``, never a
sleep; backoff is set to a few milliseconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contract.config_file import ConfigError, load_config
from hub.config import HubConfig
from hub.db.schema import notification_deliveries
from hub.domain.escalation import Tier
from hub.domain.notification import Notification, compose
from hub.notify.channels import http_channels
from hub.notify.dingtalk import DingTalkRobot
from hub.notify.http import DeliveryOutcome, HttpChannel, RetryPolicy
from hub.notify.sms import SmsGateway
from hub.notify.webhook import JsonWebhook
from hub.notify.wecom import WeComRobot
from hub.services.notify_store import DeliveryLog, list_deliveries

SHANGHAI = ZoneInfo("Asia/Shanghai")
FAST = RetryPolicy(attempts=3, timeout_s=5.0, backoff_s=0.005)
WECOM_KEY = "wecom-key-0123456789-secret"
DING_TOKEN = "ding-token-0123456789-secret"
DING_SECRET = "SECdingtalk-signing-secret-abc"
OK = (200, {"errcode": 0, "errmsg": "ok"})


@dataclass(frozen=True)
class Received:
    path: str
    raw_query: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class RecordingServer:
    """Records POSTs; answers ``script`` entries first, then ``by_path[path]`` or
    ``default``. Also used by the integration tests (a receiver for the real hub)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: list[tuple[int, Any]] = []
        self.default: tuple[int, Any] = OK
        self.by_path: dict[str, tuple[int, Any]] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                parts = urlsplit(self.path)
                with server._lock:
                    server.requests.append(
                        Received(
                            parts.path,
                            parts.query,
                            {k: v[0] for k, v in parse_qs(parts.query).items()},
                            {k.lower(): v for k, v in self.headers.items()},
                            json.loads(raw),
                        )
                    )
                    status, answer = (
                        server.script.pop(0)
                        if server.script
                        else server.by_path.get(parts.path, server.default)
                    )
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def received(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with RecordingServer() as s:
        yield s


class Outcomes:
    def __init__(self) -> None:
        self.recorded: list[DeliveryOutcome] = []

    async def record(self, outcome: DeliveryOutcome) -> None:
        self.recorded.append(outcome)


class Phones:
    def __init__(self, phones: dict[int, str]) -> None:
        self.phones = phones

    async def phone_of(self, worker_id: int) -> str | None:
        return self.phones.get(worker_id)


def notification(
    *, tier: Tier = Tier.GRID_WORKER, case_id: int = 12, worker_id: int = 3
) -> Notification:
    occurred = datetime(2025, 3, 3, 1, 5, tzinfo=UTC)  # 09:05 in Shanghai
    zh, en = compose(
        kind="sos",
        tier=tier,
        resident_name="张桂英",
        address="幸福里小区3号楼2单元301室",
        grid_name="第一网格",
        occurred_at=occurred,
        tz=SHANGHAI,
        lives_alone=True,
    )
    return Notification(
        case_id=case_id,
        worker_id=worker_id,
        tier=tier.value,
        kind="sos",
        resident_name="张桂英",
        address="幸福里小区3号楼2单元301室",
        grid_name="第一网格",
        household_id=1,
        occurred_at=occurred,
        message_zh=zh,
        message_en=en,
        ack_path=f"https://hub.example/api/v1/cases/{case_id}/acknowledge",
        lives_alone=True,
    )


@pytest.fixture
async def channels() -> AsyncIterator[list[HttpChannel]]:
    made: list[HttpChannel] = []
    yield made
    for channel in made:
        await channel.aclose()


def run(channels: list[HttpChannel], channel: HttpChannel) -> HttpChannel:
    channels.append(channel)
    return channel


ZH_MARKDOWN = (
    "### 【一键通求助】工单 12\n"
    "【一键通求助】张桂英（独居），幸福里小区3号楼2单元301室（第一网格），03-03 09:05 "
    "发起求助，请立即联系并上门。\n\n"
    "[打开工单并接单](https://hub.example/c/12)"
)


# -- retries and outcomes (the shared path) ------------------------------------------------


async def test_webhook_retries_500s_then_delivers_the_notification_json(
    server: RecordingServer, channels: list[HttpChannel]
) -> None:
    server.script = [(500, {}), (503, {})]
    outcomes = Outcomes()
    channel = run(channels, HttpChannel(JsonWebhook(server.url("/hook")), FAST, recorder=outcomes))
    note = notification()
    await channel.notify(note)
    await channel.drain()

    assert len(server.requests) == 3
    assert all(r.body == note.to_json_obj() for r in server.requests)
    assert server.requests[0].body["message_zh"] == note.message_zh
    assert (channel.sent, channel.failed, channel.retries) == (1, 0, 2)
    [outcome] = outcomes.recorded
    assert (outcome.channel, outcome.delivered, outcome.attempts, outcome.error) == (
        "webhook",
        True,
        3,
        "",
    )


async def test_wecom_errcode_is_a_failure_and_is_retried(
    server: RecordingServer, channels: list[HttpChannel]
) -> None:
    server.script = [(200, {"errcode": 45009, "errmsg": "api freq out of limit"})]
    outcomes = Outcomes()
    robot = WeComRobot(WECOM_KEY, url=server.url("/cgi-bin/webhook/send"))
    channel = run(channels, HttpChannel(robot, FAST, recorder=outcomes))
    await channel.notify(notification())
    await channel.drain()

    assert len(server.requests) == 2
    first = server.requests[0]
    assert first.path == "/cgi-bin/webhook/send"
    assert first.query == {"key": WECOM_KEY}
    assert first.body == {"msgtype": "markdown", "markdown": {"content": ZH_MARKDOWN}}
    assert first.headers["content-type"] == "application/json"
    assert (channel.sent, channel.failed) == (1, 0)
    assert outcomes.recorded[0].delivered and outcomes.recorded[0].attempts == 2


async def test_wecom_text_in_english(server: RecordingServer, channels: list[HttpChannel]) -> None:
    robot = WeComRobot(WECOM_KEY, url=server.url("/w"), language="en", msgtype="text")
    channel = run(channels, HttpChannel(robot, FAST))
    await channel.notify(notification(tier=Tier.COMMUNITY_STATION))
    await channel.drain()

    [request] = server.requests
    assert request.body == {
        "msgtype": "text",
        "text": {
            "content": "[Escalated to community station] SOS: 张桂英 (lives alone), "
            "幸福里小区3号楼2单元301室 (第一网格), 03-03 09:05. Please respond now.\n"
            "Open and acknowledge: https://hub.example/c/12"
        },
    }


async def test_permanent_failure_is_counted_recorded_and_keeps_the_key_out_of_the_log(
    server: RecordingServer, channels: list[HttpChannel], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.default = (200, {"errcode": 93000, "errmsg": "invalid webhook url"})
    outcomes = Outcomes()
    robot = WeComRobot(WECOM_KEY, url=server.url("/cgi-bin/webhook/send"))
    channel = run(channels, HttpChannel(robot, FAST, recorder=outcomes))
    await channel.notify(notification())
    await channel.drain()

    assert len(server.requests) == FAST.attempts
    assert (channel.sent, channel.failed, channel.retries) == (0, 1, 2)
    [outcome] = outcomes.recorded
    assert not outcome.delivered and outcome.attempts == 3
    assert outcome.error == "errcode 93000: invalid webhook url"
    assert "failed after 3 attempt(s): errcode 93000" in caplog.text
    assert f"HTTP Request: POST {robot.url} " in caplog.text  # httpx's line, redacted
    assert WECOM_KEY not in caplog.text


async def test_unreachable_receiver_fails_with_the_error_class(
    channels: list[HttpChannel],
) -> None:
    with RecordingServer() as gone:
        url = gone.url("/hook")  # closed again below: nothing listens on the port
    outcomes = Outcomes()
    channel = run(channels, HttpChannel(JsonWebhook(url), FAST, recorder=outcomes))
    await channel.notify(notification())
    await channel.drain()
    assert channel.failed == 1
    assert outcomes.recorded[0].error == "ConnectError"


# -- DingTalk ------------------------------------------------------------------------------


def reference_sign(secret: str, timestamp: str) -> str:
    """DingTalk's documented computation, written out independently of hub.notify."""
    string_to_sign = f"{timestamp}\n{secret}"
    code = hmac.new(
        secret.encode("utf-8"), string_to_sign.encode("utf-8"), digestmod=hashlib.sha256
    ).digest()
    return base64.b64encode(code).decode()


async def test_dingtalk_signed_markdown_and_errcode_retry(
    server: RecordingServer, channels: list[HttpChannel]
) -> None:
    server.script = [(200, {"errcode": 310000, "errmsg": "sign not match"})]
    clock = iter([1_700_000_000.0, 1_700_000_001.5])
    robot = DingTalkRobot(
        DING_TOKEN, secret=DING_SECRET, url=server.url("/robot/send"), clock=lambda: next(clock)
    )
    channel = run(channels, HttpChannel(robot, FAST))
    await channel.notify(notification())
    await channel.drain()

    assert len(server.requests) == 2
    first, second = server.requests
    assert first.query["access_token"] == DING_TOKEN
    assert (first.query["timestamp"], second.query["timestamp"]) == (
        "1700000000000",
        "1700000001500",
    )
    for request in (first, second):
        timestamp = request.query["timestamp"]
        assert request.query["sign"] == reference_sign(DING_SECRET, timestamp)
        # On the wire as DingTalk's sample builds it: quote_plus of the base64 text.
        raw_sign = parse_qs(request.raw_query, keep_blank_values=True)  # decoded again …
        assert raw_sign["sign"] == [reference_sign(DING_SECRET, timestamp)]
        assert f"sign={quote_plus(reference_sign(DING_SECRET, timestamp))}" in request.raw_query
    assert first.body == {
        "msgtype": "markdown",
        "markdown": {"title": "【一键通求助】工单 12", "text": ZH_MARKDOWN},
    }
    assert (channel.sent, channel.failed) == (1, 0)


async def test_dingtalk_without_secret_sends_no_signature(
    server: RecordingServer, channels: list[HttpChannel]
) -> None:
    robot = DingTalkRobot(DING_TOKEN, url=server.url("/robot/send"), language="en")
    channel = run(channels, HttpChannel(robot, FAST))
    await channel.notify(notification())
    await channel.drain()
    [request] = server.requests
    assert request.query == {"access_token": DING_TOKEN}
    assert request.body["markdown"]["title"] == "SOS · case 12"
    assert request.body["markdown"]["text"].startswith("### SOS · case 12\nSOS: 张桂英")


# -- SMS gateway ---------------------------------------------------------------------------

TEMPLATE = {
    "to": "{phone}",
    "sign_name": "幸福里社区",
    "params": {"case": "{case_id}", "text": "{message}"},
    "tags": ["help-call", "{kind}"],
    "priority": 1,
}


async def test_sms_fills_the_template_with_the_workers_phone(
    server: RecordingServer, channels: list[HttpChannel]
) -> None:
    server.script = [(502, {})]
    server.default = (200, {"code": "OK"})
    gateway = SmsGateway(
        server.url("/sms/send"),
        TEMPLATE,
        Phones({3: "13800000003"}),
        headers={"Authorization": "Bearer sms-token"},
        ok_field="code",
    )
    channel = run(channels, HttpChannel(gateway, FAST))
    note = notification()
    await channel.notify(note)
    await channel.drain()

    assert len(server.requests) == 2
    request = server.requests[-1]
    assert request.body == {
        "to": "13800000003",
        "sign_name": "幸福里社区",
        "params": {"case": "12", "text": f"{note.message_zh} 处理：https://hub.example/c/12"},
        "tags": ["help-call", "sos"],
        "priority": 1,
    }
    assert request.headers["authorization"] == "Bearer sms-token"
    assert (channel.sent, channel.failed) == (1, 0)


async def test_sms_gateway_refusal_and_worker_without_phone_fail_visibly(
    server: RecordingServer, channels: list[HttpChannel]
) -> None:
    server.default = (200, {"code": "isv.BUSINESS_LIMIT_CONTROL"})
    outcomes = Outcomes()
    gateway = SmsGateway(server.url("/sms"), TEMPLATE, Phones({3: "13800000003"}), ok_field="code")
    channel = run(channels, HttpChannel(gateway, FAST, recorder=outcomes))
    await channel.notify(notification(worker_id=3))
    await channel.notify(notification(worker_id=4))  # no phone number
    await channel.drain()

    assert len(server.requests) == 3  # worker 4 never reached the gateway
    assert channel.failed == 2
    by_worker = {o.notification.worker_id: o for o in outcomes.recorded}
    assert by_worker[3].error == "code='isv.BUSINESS_LIMIT_CONTROL', expected 'OK'"
    assert (by_worker[4].attempts, by_worker[4].error) == (0, "worker 4 has no phone number")


# -- configuration and the delivery record -------------------------------------------------


def test_channels_from_config_with_secrets_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(
        "api: {token: 0123456789abcdef0123}\n"
        "notify:\n"
        "  language: en\n"
        "  dingtalk: {attempts: 5, backoff_s: 0.5}\n"
        "  sms: {url: 'https://sms.example/send', template: {to: '{phone}', text: '{message}'}}\n"
    )
    environ = {
        "HUB__NOTIFY__WECOM__KEY": WECOM_KEY,
        "HUB__NOTIFY__DINGTALK__ACCESS_TOKEN": DING_TOKEN,
        "HUB__NOTIFY__DINGTALK__SECRET": DING_SECRET,
    }
    config = load_config(path, HubConfig, env_prefix="HUB", environ=environ)
    assert WECOM_KEY not in repr(config) and DING_SECRET not in repr(config)
    built = http_channels(config, recorder=None, phones=Phones({}))
    assert [c.channel for c in built] == ["wecom", "dingtalk", "sms"]
    assert [c.label for c in built] == [
        "wecom https://qyapi.weixin.qq.com/cgi-bin/webhook/send",
        "dingtalk https://oapi.dingtalk.com/robot/send",
        "sms https://sms.example/send",
    ]
    assert built[1].policy == RetryPolicy(attempts=5, timeout_s=5.0, backoff_s=0.5)


def test_sms_template_with_an_unknown_placeholder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(
        "api: {token: 0123456789abcdef0123}\n"
        "notify: {sms: {url: 'https://sms.example/send', template: {to: '{mobile}'}}}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, HubConfig, env_prefix="HUB", environ={})
    assert f"{path}: notify.sms.template:" in str(err.value)
    assert "unknown placeholder(s) ['mobile']" in str(err.value)


@pytest.fixture
def seed_time() -> None:
    """An empty, migrated database for the delivery log (tests/hub/conftest.py's ``engine``)."""
    return None


async def test_failed_deliveries_are_recorded_and_listed(
    server: RecordingServer, channels: list[HttpChannel], engine: AsyncEngine
) -> None:
    server.default = (500, {})
    server.script = [OK]
    log = DeliveryLog(engine)
    robot = WeComRobot(WECOM_KEY, url=server.url("/w"))
    channel = run(channels, HttpChannel(robot, FAST, recorder=log))
    await channel.notify(notification(case_id=7))
    await channel.drain()
    await channel.notify(notification(case_id=8))
    await channel.drain()

    async with engine.connect() as conn:
        failed = await list_deliveries(conn, state="failed")
        every = await list_deliveries(conn)
        count = (
            await conn.execute(sa.select(sa.func.count()).select_from(notification_deliveries))
        ).scalar()
    assert count == 2
    assert [(r["case_id"], r["state"]) for r in every] == [(8, "failed"), (7, "sent")]
    [row] = failed
    assert row["channel"] == "wecom" and row["worker_id"] == 3 and row["tier"] == "grid_worker"
    assert row["attempts"] == 3 and row["error"] == "HTTP 500"
    assert row["at"].tzinfo is not None
