"""Acceptance: an SOS on a real pty reaches the on-duty worker through real Mosquitto,
edge and hub processes; acknowledgement and escalation drive the button's feedback."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from edge.codecs.cb100 import FrameType
from simulators.button import LedState, SimulatedButtonBus
from simulators.stack import Stack
from tests.conftest import wait_until
from tests.integration.conftest import api, placement, worker_stream

pytestmark = pytest.mark.integration

EDGE = "edge-demo"  # the seeded devices belong to it
BUTTON = 77626


@pytest.mark.postgres  # the whole path once on PostgreSQL too
@pytest.mark.fresh_database  # on both back ends the hub migrates an empty database itself
async def test_sos_reaches_on_duty_worker_and_button_hears_back(
    stack: Stack, tmp_path: Path
) -> None:
    stack.start_hub()
    household, grid, worker = placement(stack, f"cb100-{BUTTON}")
    link = tmp_path / "bus0"
    async with SimulatedButtonBus([BUTTON], link_path=link, retransmit_s=1.0) as bus:
        stack.start_edge(EDGE, [str(link)])
        async with api(stack) as client, worker_stream(client, worker) as stream:
            button = bus.button(BUTTON)
            sos = button.press_sos()

            await wait_until(
                lambda: LedState.RECEIVED in button.led_history, 20, message="0x81 received"
            )
            feedback = [(f.type, f.seq) for f in button.received]
            assert feedback[0] == (FrameType.LINK_ACK, sos.seq)
            assert (FrameType.RECEIVED, sos.seq) in feedback
            assert button.led_history.index(LedState.SENT) < button.led_history.index(
                LedState.RECEIVED
            )

            await wait_until(lambda: stream.notifications, 10, message="worker notification")
            note = stream.notifications[0]
            assert note["household_id"] == household
            assert note["kind"] == "sos" and note["resident_name"] and note["address"]
            case_id = note["case_id"]
            case = (await client.get(f"/api/v1/cases/{case_id}")).json()
            assert (case["household_id"], case["grid_id"]) == (household, grid)
            assert case["state"] == "dispatched"

            response = await client.post(
                f"/api/v1/cases/{case_id}/acknowledge", json={"worker_id": worker}
            )
            assert response.status_code == 200, response.text
            await wait_until(
                lambda: LedState.HELP_COMING in button.led_history, 15, message="0x82 help coming"
            )
            assert (FrameType.HELP_COMING, sos.seq) in [(f.type, f.seq) for f in button.received]
            case = (await client.get(f"/api/v1/cases/{case_id}")).json()
            assert case["state"] == "acknowledged"


async def test_escalation_survives_hub_kill_and_fires_on_time(stack: Stack, tmp_path: Path) -> None:
    stack.start_hub(escalation={"grid_worker_s": 6, "backup_worker_s": 600})
    household, _grid, _worker = placement(stack, f"cb100-{BUTTON}")
    link = tmp_path / "bus0"
    async with SimulatedButtonBus([BUTTON], link_path=link, retransmit_s=1.0) as bus:
        stack.start_edge(EDGE, [str(link)])
        async with api(stack) as client:
            bus.button(BUTTON).press_sos()

            async def dispatched() -> dict | None:
                cases = (
                    await client.get("/api/v1/cases", params={"household_id": household})
                ).json()
                return cases[0] if cases else None

            case = await wait_until(dispatched, 20, message="case created")
            assert case["tier"] == 0
            deadline = datetime.fromisoformat(case["deadline_at"])

        assert stack.hub is not None
        stack.hub.kill()  # SIGKILL while the escalation is pending
        stack.hub.start()
        stack.wait_for_hub()

        async with api(stack) as client:

            async def escalated() -> dict | None:
                body = (await client.get(f"/api/v1/cases/{case['id']}")).json()
                return body if body["tier"] >= 1 else None

            case = await wait_until(escalated, 20, message="escalation after restart")
        step = next(a for a in case["audit"] if a["action"] == "escalate")
        lateness = (datetime.fromisoformat(step["at"]) - deadline).total_seconds()
        assert 0 <= lateness <= 1.0, f"escalated {lateness:.3f} s after its deadline"
        tiers = {n["tier"] for n in case["notifications"]}
        assert {"grid_worker", "backup_worker"} <= tiers
