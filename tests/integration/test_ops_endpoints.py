"""Acceptance: the operational endpoints of a real hub and edge (issue #4).

Real Mosquitto, ``python -m hub`` and ``python -m edge`` processes, a real pty with a
simulated button, and a real local HTTP receiver standing in for the WeCom and DingTalk
robots (DingTalk answers every message with ``errcode`` 310000, so its failures show).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulators.broker import free_port
from simulators.button import SimulatedButtonBus
from simulators.stack import Stack
from tests.conftest import wait_until
from tests.hub.test_notifiers import RecordingServer
from tests.integration.conftest import api

pytestmark = pytest.mark.integration

EDGE = "edge-demo"  # the seeded devices belong to it
BUTTON = 77626
WECOM_KEY = "integration-wecom-key-0123456789"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def log_tails(stack: Stack) -> str:
    """The end of every process log, for a failure message (the processes log no secrets)."""
    procs = [("hub", stack.hub), *stack.edges.items()]
    return "\n".join(f"--- {n} log ---\n{p.log_text()[-3000:]}" for n, p in procs if p)


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        server.by_path["/dingtalk"] = (200, {"errcode": 310000, "errmsg": "sign not match"})
        yield server


async def test_probes_metrics_and_edge_metrics(
    stack: Stack, tmp_path: Path, receiver: RecordingServer
) -> None:
    stack.start_hub(
        notify={
            "wecom": {"url": receiver.url("/wecom"), "key": WECOM_KEY, "backoff_s": 0.05},
            "dingtalk": {
                "url": receiver.url("/dingtalk"),
                "access_token": "integration-ding-token",
                "secret": "integration-ding-secret",
                "attempts": 2,
                "backoff_s": 0.05,
            },
        }
    )
    edge_metrics_port = free_port()
    link = tmp_path / "bus0"
    async with (
        SimulatedButtonBus([BUTTON], link_path=link, retransmit_s=1.0) as bus,
        httpx.AsyncClient(base_url=stack.hub_url, timeout=10) as anonymous,
        api(stack) as client,
    ):
        stack.start_edge(EDGE, [str(link)], status_interval_s=0.5, metrics_port=edge_metrics_port)
        # -- probes: no token needed -------------------------------------------------------
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}

        async def ready() -> bool:
            return (await anonymous.get("/readyz")).status_code == 200

        await wait_until(ready, 20, message="/readyz 200")
        assert (await anonymous.get("/readyz")).json() == {
            "status": "ready",
            "database": "ok",
            "broker": "ok",
        }
        assert (await anonymous.get("/metrics")).status_code == 401

        # -- an SOS goes through -----------------------------------------------------------
        bus.button(BUTTON).press_sos()
        try:
            await wait_until(lambda: receiver.received("/wecom"), 30, message="WeCom message")
        except AssertionError as err:
            raise AssertionError(f"{err}\n{log_tails(stack)}") from err
        [wecom] = receiver.received("/wecom")
        assert wecom.query == {"key": WECOM_KEY}
        assert wecom.body["msgtype"] == "markdown"
        assert "【一键通求助】" in wecom.body["markdown"]["content"]

        async def hub_metrics() -> Samples:
            response = await client.get("/metrics")
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("text/plain")
            return samples(response.text)

        async def settled() -> Samples | None:
            found = await hub_metrics()
            sent = value(found, "hub_notifications_sent_total", channel="wecom")
            failed = value(found, "hub_notifications_failed_total", channel="dingtalk")
            edge_seen = value(found, "hub_edge_outbox_depth", edge=EDGE, lane="alarm")
            return found if (sent, failed) == (1.0, 1.0) and edge_seen is not None else None

        found = await wait_until(settled, 30, message="dingtalk failure and edge status")
        assert (value(found, "hub_ingest_events_total", lane="alarm") or 0) >= 1
        assert value(found, "hub_cases_open", state="dispatched") == 1.0
        assert value(found, "hub_cases_open", state="acknowledged") == 0.0
        assert value(found, "hub_escalations_total") == 0.0
        assert value(found, "hub_notifications_sent_total", channel="wecom") == 1.0
        assert value(found, "hub_notifications_sent_total", channel="dingtalk") == 0.0
        assert value(found, "hub_notification_retries_total", channel="dingtalk") == 1.0
        assert value(found, "hub_edge_online", edge=EDGE) == 1.0
        assert value(found, "hub_edge_outbox_oldest_unsent_age_seconds", edge=EDGE) is not None
        assert value(found, "hub_mqtt_connected") == 1.0
        assert value(found, "hub_ingest_backlog_messages") is not None
        assert len(receiver.received("/dingtalk")) == 2

        # -- the failure is visible in the API (recorded just after it is counted) --------
        async def failed_deliveries() -> list[dict[str, Any]]:
            response = await client.get(
                "/api/v1/notifications/deliveries", params={"state": "failed"}
            )
            assert response.status_code == 200, response.text
            rows: list[dict[str, Any]] = response.json()
            return rows

        [failed] = await wait_until(failed_deliveries, 20, message="failed delivery recorded")
        assert failed["channel"] == "dingtalk" and failed["attempts"] == 2
        assert failed["error"] == "errcode 310000: sign not match"

        async def both_recorded() -> bool:
            every = (await client.get("/api/v1/notifications/deliveries")).json()
            return {(d["channel"], d["state"]) for d in every} == {
                ("wecom", "sent"),
                ("dingtalk", "failed"),
            }

        await wait_until(both_recorded, 20, message="both deliveries recorded")
        assert stack.hub is not None and WECOM_KEY not in stack.hub.log_text()

        # -- the edge's own endpoint: bad frames ------------------------------------------
        edge_url = f"http://127.0.0.1:{edge_metrics_port}/metrics"
        bus.inject_garbage(50, seed=7)
        bus.inject_crc_error(BUTTON)

        async def edge_metrics() -> Samples:
            response = await anonymous.get(edge_url)
            assert response.status_code == 200, response.text
            return samples(response.text)

        async def bad_frames_counted() -> Samples | None:
            found = await edge_metrics()
            crc = value(found, "edge_bad_frames_total", bus=str(link), reason="crc")
            return found if crc == 1.0 else None

        found = await wait_until(bad_frames_counted, 20, message="bad frames on the edge")
        assert (value(found, "edge_garbage_bytes_total", bus=str(link)) or 0) >= 50
        assert value(found, "edge_devices_known", bus=str(link)) == 1.0
        assert value(found, "edge_devices_online", bus=str(link)) == 1.0
        assert value(found, "edge_outbox_depth", lane="alarm") == 0.0
        assert value(found, "edge_mqtt_connected") == 1.0
        assert (await anonymous.get(edge_url.replace("/metrics", "/other"))).status_code == 404

        # -- the broker dies: not ready, and the edge's outbox fills -----------------------
        assert stack.broker is not None
        stack.broker.kill()

        async def not_ready() -> dict[str, str] | None:
            response = await anonymous.get("/readyz")
            return response.json() if response.status_code == 503 else None

        body = await wait_until(not_ready, 20, message="/readyz 503")
        assert (body["database"], body["broker"]) == ("ok", "disconnected")
        assert "MQTT" in body["detail"]

        bus.button(BUTTON).press_sos()

        async def buffered() -> Samples | None:
            found = await edge_metrics()
            return found if value(found, "edge_outbox_depth", lane="alarm") == 1.0 else None

        found = await wait_until(buffered, 20, message="SOS buffered in the edge outbox")
        assert value(found, "edge_mqtt_connected") == 0.0
        assert (value(found, "edge_outbox_oldest_unsent_age_seconds") or -1) >= 0

        # -- the broker returns: ready again -----------------------------------------------
        stack.broker.start()
        await wait_until(ready, 30, message="/readyz 200 after the broker returns")
