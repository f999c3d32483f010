"""Acceptance (issue #15): a consenting resident who lives alone goes quiet; a welfare check
(关爱探访) reaches the grid worker, escalates while nobody takes it, and the worker's
outcome closes it; every read of the activity data is in the audit log.

Real parts: Mosquitto, ``python -m hub`` (demo community) on its SQLite file; the water
meter and the door speak as an edge sends them (``EventBatch`` on the edge's events
topic), bound to that edge in the registry. Windows are shortened by config (the rhythm
is still untrained, so the fallback threshold of a few seconds applies); every wait is on
a condition with a deadline. The daily check-in (CB-100 frame 0x08) is pressed on a
simulated button on a real pty, read by a real ``python -m edge``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract import Event, EventBatch, Lane, topics
from edge.codecs.cb100 import FrameType
from hub.domain.wellbeing import SLOTS
from simulators.button import LedState, SimulatedButtonBus
from simulators.stack import Stack
from tests.conftest import wait_until
from tests.integration.conftest import api, hub_db, query, worker_stream

pytestmark = pytest.mark.integration

EDGE = "edge-care"
PASSWORD = "correct horse battery staple 9"
FACE = "P-0071"
BUTTON = 77626
BUTTON_ID = f"cb100-{BUTTON}"


def publish(stack: Stack, batches: list[tuple[Lane, list[Event]]]) -> None:
    """Publish event batches as edge ``EDGE`` would, each acknowledged by the broker."""
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex}"
    )
    client.connect("127.0.0.1", stack.broker_port)
    client.loop_start()
    try:
        for lane, events in batches:
            batch = EventBatch(EDGE, "care-incarnation", tuple(events))
            info = client.publish(topics.events(EDGE, lane), batch.encode(), qos=1)
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


async def token_of(stack: Stack, username: str) -> str:
    async with httpx.AsyncClient(base_url=stack.hub_url, timeout=30) as anonymous:
        response = await anonymous.post(
            "/api/v1/auth/token", data={"username": username, "password": PASSWORD}
        )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def as_user(stack: Stack, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.hub_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def worker_id(stack: Stack, name: str) -> int:
    [(found,)] = query(stack, "SELECT id FROM workers WHERE name = ?", name)
    return int(found)


async def test_a_quiet_flat_becomes_a_welfare_check_that_escalates_and_is_closed(
    stack: Stack,
) -> None:
    stack.start_hub(
        device_tick_s=0.2,
        wellbeing={
            "fallback_h": 0.003,  # about 11 s of silence while the rhythm is untrained
            "check_every_s": 0.5,
            "backup_after_s": 2,
            "station_after_s": 2,
        },
    )
    [(household, grid)] = query(
        stack,
        "SELECT id, grid_id FROM households WHERE address = ?",
        "幸福里小区3号楼2单元301室",  # 张桂英, lives alone
    )
    primary, backup, station = (worker_id(stack, n) for n in ("王丽", "孙强", "周洁"))
    async with api(stack) as admin:
        for body in (
            {"id": "wm-71", "profile": "water-meter", "household_id": household},
            {"id": "door-gate-9", "profile": "fr-door", "grid_id": grid, "place": "9号门"},
        ):
            response = await admin.post("/api/v1/devices", json={**body, "edge_id": EDGE})
            assert response.status_code == 201, response.text
        for username, role, worker in (
            ("wang", "worker", primary),
            ("desk", "hotline", None),
        ):
            account: dict[str, Any] = {"username": username, "role": role, "password": PASSWORD}
            if worker is not None:
                account["worker_id"] = worker
            response = await admin.post("/api/v1/accounts", json=account)
            assert response.status_code == 201, response.text
        consent = {"consent": True, "face_person_id": FACE, "note": "本人签字同意 / signed"}
        refused = await admin.put(f"/api/v1/wellbeing/households/{household}/consent", json=consent)
        assert refused.status_code == 403  # an admin runs the system, not residents' lives
        desk = as_user(stack, await token_of(stack, "desk"))
        wang = as_user(stack, await token_of(stack, "wang"))
        async with desk, wang:
            response = await desk.put(
                f"/api/v1/wellbeing/households/{household}/consent", json=consent
            )
            assert response.status_code == 200, response.text

            async with (
                worker_stream(admin, primary) as first,
                worker_stream(admin, backup) as second,
                worker_stream(admin, station) as third,
            ):
                now = datetime.now(UTC)
                water = {"flow_m3h": 0.6}, {"flow_m3h": 0}
                face = {"person_id": FACE, "similarity": 0.95}
                publish(
                    stack,
                    [
                        (
                            Lane.TELEMETRY,
                            [
                                Event(1, "wm-71", "water_reading", Lane.TELEMETRY, now, water[0]),
                                Event(2, "wm-71", "water_reading", Lane.TELEMETRY, now, water[1]),
                            ],
                        ),
                        (
                            Lane.NORMAL,
                            [Event(3, "door-gate-9", "face_pass", Lane.NORMAL, now, face)],
                        ),
                    ],
                )

                def welfare(stream: Any, tier: str) -> dict[str, Any] | None:
                    return next(
                        (
                            n
                            for n in stream.notifications
                            if n["kind"] == "welfare_check" and n["tier"] == tier
                        ),
                        None,
                    )

                told = await wait_until(
                    lambda: welfare(first, "grid_worker"), 120, message="welfare check to 王丽"
                )
                assert "no water since" in told["message_en"] and "关爱探访" in told["message_zh"]
                assert "no door pass since" in told["message_en"]
                task_id = int(told["task_id"])
                # nobody takes it: the backup worker, then the community station
                await wait_until(lambda: welfare(second, "backup_worker"), 60, message="backup")
                await wait_until(lambda: welfare(third, "community_station"), 60, message="station")

            # the task is in the task list the worker page and desk board read…
            listed = await wang.get("/api/v1/tasks", params={"kind": "welfare_check"})
            assert [t["id"] for t in listed.json()] == [task_id]
            hidden = await admin.get("/api/v1/tasks", params={"kind": "welfare_check"})
            assert hidden.json() == []  # …but not in an admin's, who may not take it either
            taken = await admin.post(
                f"/api/v1/tasks/{task_id}/acknowledge", json={"worker_id": primary}
            )
            assert taken.status_code == 403
            # the worker reads the activity (audited), the admin may not
            response = await wang.get(f"/api/v1/wellbeing/households/{household}/activity")
            assert response.status_code == 200, response.text
            sources = {row["source"] for row in response.json()["activity"]}
            assert sources == {"water", "door"}
            denied = await admin.get(f"/api/v1/wellbeing/households/{household}/activity")
            assert denied.status_code == 403
            # the visit: all well; the check is closed and escalates no more
            response = await wang.post(
                f"/api/v1/wellbeing/checks/{task_id}/outcome",
                json={"outcome": "all_well", "note": "在家午睡 / asleep at home"},
            )
            assert response.status_code == 200, response.text
            [(state,)] = query(stack, "SELECT state FROM tasks WHERE id = ?", task_id)
            assert state == "done"
            [(outcome, closed)] = query(
                stack, "SELECT outcome, closed_at FROM welfare_checks WHERE task_id = ?", task_id
            )
            assert outcome == "all_well" and closed is not None
            again = await wang.post(
                f"/api/v1/wellbeing/checks/{task_id}/outcome", json={"outcome": "helped"}
            )
            assert again.status_code == 409

        audit = await admin.get("/api/v1/audit", params={"target_type": "household"})
        entries = [(e["actor"], e["action"]) for e in audit.json()]
        assert ("user:wang", "wellbeing_activity.read") in entries
        assert ("user:desk", "wellbeing.consent") in entries
        wellbeing_actors = {a for a, act in entries if act.startswith("wellbeing")}
        assert wellbeing_actors == {"user:wang", "user:desk"}  # never the refused admin
    # one silence, one welfare check: once judged again after the visit, none is reopened
    [(closed_at,)] = query(stack, "SELECT closed_at FROM welfare_checks")
    await wait_until(
        lambda: query(
            stack,
            "SELECT 1 FROM wellbeing_watch WHERE household_id = ? AND judged_at > ?",
            household,
            closed_at,
        ),
        60,
        message="judged again after the visit",
    )
    [(count,)] = query(stack, "SELECT count(*) FROM welfare_checks")
    assert count == 1


async def test_a_daily_check_in_key_press_reaches_the_hub_as_activity(
    stack: Stack, tmp_path: Path
) -> None:
    """CB-100 frame 0x08 on a real pty, through the edge, to the resident's activity."""
    stack.start_hub()
    [(household,)] = query(stack, "SELECT household_id FROM devices WHERE id = ?", BUTTON_ID)
    async with api(stack) as admin:
        account = {"username": "desk", "role": "hotline", "password": PASSWORD}
        response = await admin.post("/api/v1/accounts", json=account)
        assert response.status_code == 201, response.text
    desk = as_user(stack, await token_of(stack, "desk"))
    link = tmp_path / "bus0"
    async with desk, SimulatedButtonBus([BUTTON], link_path=link, retransmit_s=1.0) as bus:
        consent = {"consent": True, "check_in_hour": 9}
        response = await desk.put(f"/api/v1/wellbeing/households/{household}/consent", json=consent)
        assert response.status_code == 200, response.text
        stack.start_edge("edge-demo", [str(link)])  # the seeded buttons belong to it
        button = bus.button(BUTTON)
        sent = button.check_in()
        await wait_until(
            lambda: (FrameType.LINK_ACK, sent.seq) in [(f.type, f.seq) for f in button.received],
            30,
            message="the edge's link ack of the check-in",
        )

        async def checked_in() -> list[dict[str, Any]]:
            response = await desk.get(f"/api/v1/wellbeing/households/{household}/activity")
            assert response.status_code == 200, response.text
            return [a for a in response.json()["activity"] if a["source"] == "check_in"]

        [row] = await wait_until(checked_in, 60, message="check-in stored as activity")
        assert row["device_id"] == BUTTON_ID


def execute(stack: Stack, sql: str, *params: Any) -> None:
    """Write to the hub's database, whichever it is (PostgreSQL commits on its own)."""
    if stack.database_url is not None:
        query(stack, sql, *params)
        return
    db = hub_db(stack)
    try:
        db.execute(sql, params)
        db.commit()
    finally:
        db.close()


async def test_the_button_asks_are_you_ok_before_a_welfare_check(
    stack: Stack, tmp_path: Path
) -> None:
    """The prompt (关爱询问) as a CB-100 frame 0x84 on a real pty, through a real edge: the
    resident's green key (0x08) answers it; unanswered, it becomes the welfare check.

    The learnt rhythm needs two weeks of history, so the day's thresholds are written into
    the watch's row as the hub stores them (seconds instead of hours); the hub reads them
    from there like a baseline it learnt itself that day."""
    zone = zone_at_midday()  # the stored thresholds are the day's: the day must not end
    stack.start_hub(
        timezone=zone,
        device_tick_s=0.2,
        wellbeing={"check_every_s": 0.5, "prompt_enabled": True, "prompt_wait_min": 0.1},
    )
    [(household,)] = query(stack, "SELECT household_id FROM devices WHERE id = ?", BUTTON_ID)
    async with api(stack) as admin:
        account = {"username": "desk", "role": "hotline", "password": PASSWORD}
        response = await admin.post("/api/v1/accounts", json=account)
        assert response.status_code == 201, response.text
    desk = as_user(stack, await token_of(stack, "desk"))
    link = tmp_path / "bus0"
    async with desk, SimulatedButtonBus([BUTTON], link_path=link, retransmit_s=1.0) as bus:
        response = await desk.put(
            f"/api/v1/wellbeing/households/{household}/consent", json={"consent": True}
        )
        assert response.status_code == 200, response.text
        today = datetime.now(ZoneInfo(zone)).date()  # the hub's day
        slots = [0.003] * SLOTS, [0.003] * SLOTS  # prompt after about 11 s of silence
        welfare = [1.0] * SLOTS, [1.0] * SLOTS  # the welfare threshold: an hour
        stored = {"trained": True, "home": welfare, "out": welfare, "days": 28}
        stored["prompt"] = {"trained": True, "home": slots, "out": slots, "days": 28}
        await wait_until(
            lambda: query(stack, "SELECT 1 FROM wellbeing_watch WHERE judged_at IS NOT NULL"),
            30,
            message="the watch judged the household once",
        )
        execute(
            stack,
            "UPDATE wellbeing_watch SET baseline = ?, baseline_day = ? WHERE household_id = ?",
            json.dumps(stored),
            today,
            household,
        )
        stack.start_edge("edge-demo", [str(link)])  # the seeded buttons belong to it
        button = bus.button(BUTTON)
        button.answers_prompts = True  # she is up: the green key at once
        sent = button.check_in()  # the edge now knows the button; the silence starts here
        await wait_until(
            lambda: (FrameType.LINK_ACK, sent.seq) in [(f.type, f.seq) for f in button.received],
            30,
            message="the edge's link ack of the check-in",
        )

        def prompts() -> list[tuple[Any, ...]]:
            return query(
                stack,
                "SELECT answer, welfare_task_id FROM wellbeing_prompts ORDER BY id",
            )

        await wait_until(
            lambda: [p for p in prompts() if p[0] == "answer"], 60, message="an answered prompt"
        )
        assert LedState.ARE_YOU_OK in button.led_history
        assert FrameType.ARE_YOU_OK in [f.type for f in button.received]
        assert query(stack, "SELECT 1 FROM welfare_checks") == []
        # now she does not answer: the next prompt becomes the welfare check
        button.answers_prompts = False
        [(task_id, reason)] = await wait_until(
            lambda: query(stack, "SELECT task_id, reason FROM welfare_checks"),
            60,
            message="the welfare check after an unanswered prompt",
        )
        assert reason == "no_answer"
        assert (None, task_id) in prompts()
        response = await desk.get(f"/api/v1/wellbeing/households/{household}/activity")
        seen = response.json()
        assert {p["answer"] for p in seen["prompts"]} >= {"answer", None}
        assert "check_in" in {a["source"] for a in seen["activity"]}  # the first press


def zone_at_midday() -> str:
    """A fixed-offset zone where it is about noon now, so a test that writes the hub's
    thresholds for "today" cannot see that day end under it (Etc/GMT-N is UTC+N)."""
    offset = 12 - datetime.now(UTC).hour
    return "Etc/UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"
