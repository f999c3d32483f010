"""Acceptance: doors and parcel lockers on the edge's local Mosquitto, end to end.

A real Mosquitto enforces the password file and ACL that ``edge.local_broker`` writes from
the device list; simulated doors and lockers connect with their own accounts; the MQTT
driver records into a sink and a supervisor watches heartbeats. Covered: every door and
locker event arrives with the right kind, lane and data; a device can neither publish as
another device nor read or send its commands (the broker refuses, nothing is recorded); a
wrong password is refused at CONNACK; an event sent with the ``mosquitto_pub`` tool is
recorded; a door that stops its heartbeats goes offline and comes back; the simulators
run as processes (``python -m simulators.door`` / ``simulators.locker``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from contract import Lane
from edge.supervision import OFFLINE, ONLINE
from simulators.door import SimulatedDoor
from simulators.mqtt_device import NOT_AUTHORIZED, DeviceRefused
from tests.conftest import wait_until
from tests.edge.test_mqtt_devices import (
    door_profile,
    entry,
    local_broker,
    locker_profile,
    running_driver,
    until_heard,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


async def test_door_and_locker_events_reach_the_sink_with_kinds_lanes_and_data(
    tmp_path: Path,
) -> None:
    door, locker = entry(door_profile(), "gate-3"), entry(locker_profile(), "b7")
    with local_broker(tmp_path, [door, locker]) as broker:
        async with (
            running_driver(broker) as running,
            broker.door("gate-3") as gate,
            broker.locker("b7") as box,
        ):
            await until_heard(gate, running, door.device_id)
            await until_heard(box, running, locker.device_id)
            await gate.face_pass("P-1001", 0.97)
            await gate.face_unknown(0.31)
            await gate.card_pass("C-7788")
            await gate.door_forced()
            await gate.door_held_open(120)
            await box.deposit(7, household_id=42, parcel_id="SF123")
            await box.pick_up(7)
            await box.door_left_open(7)
            await wait_until(lambda: len(running.sink.events) == 10, message="all ten events")
            seen = [
                (e.device_id, e.kind, e.lane, e.data)
                for e in running.sink.events
                if e.kind != "heartbeat"
            ]
            assert seen == [
                (
                    door.device_id,
                    "face_pass",
                    Lane.NORMAL,
                    {"person_id": "P-1001", "similarity": 0.97},
                ),
                (door.device_id, "face_unknown", Lane.NORMAL, {"similarity": 0.31}),
                (door.device_id, "card_pass", Lane.NORMAL, {"card_id": "C-7788"}),
                (door.device_id, "door_forced", Lane.NORMAL, {}),
                (door.device_id, "door_held_open", Lane.NORMAL, {"seconds": 120}),
                (
                    locker.device_id,
                    "parcel_deposited",
                    Lane.NORMAL,
                    {"compartment": 7, "household_id": 42, "parcel_id": "SF123"},
                ),
                (
                    locker.device_id,
                    "parcel_picked_up",
                    Lane.NORMAL,
                    {"compartment": 7, "parcel_id": "SF123"},
                ),
                (locker.device_id, "door_left_open", Lane.NORMAL, {"compartment": 7}),
            ]
            assert {e.lane for e in running.events("heartbeat")} == {Lane.TELEMETRY}
            assert running.quarantined() == []
            assert all(e.dedupe_key for e in running.sink.events if e.kind != "heartbeat")


async def test_a_device_cannot_publish_as_another_nor_touch_its_commands(tmp_path: Path) -> None:
    gate3, gate4 = entry(door_profile(), "gate-3"), entry(door_profile(), "gate-4")
    with local_broker(tmp_path, [gate3, gate4]) as broker:
        async with (
            running_driver(broker) as running,
            broker.door("gate-3") as victim,
            broker.door("gate-4") as intruder,
        ):
            await until_heard(intruder, running, gate4.device_id)
            # A fake face_pass "from gate 3", sent by gate 4 with its own account.
            fake = {"type": "face_pass", "event_id": "x", "person_id": "P-9", "similarity": 1.0}
            assert await intruder.publish_json(fake, topic=victim.event_topic) == NOT_AUTHORIZED
            # An open_door for gate 3, and reading gate 3's commands.
            order = {"type": "open_door", "command_id": "c", "duration_s": 60}
            assert await intruder.publish_json(order, topic=victim.command_topic) == NOT_AUTHORIZED
            await intruder.eavesdrop(victim.command_topic)
            command = running.driver.command
            assert (await command(gate3.device_id, "open_door", {"duration_s": 2}))[0] == "ok"
            assert victim.opened == [2]
            # The broker handles one client's packets in order: once gate 4's own event is
            # recorded, the refused one would have been delivered before it; and once gate 4
            # got its own command, gate 3's command would have reached it before.
            await intruder.card_pass("C-4")
            await wait_until(lambda: running.events("card_pass"), message="gate 4's own event")
            assert (await command(gate4.device_id, "set_mode", {"mode": "open"}))[0] == "ok"
            assert running.events(device_id=gate3.device_id) == []
            assert running.driver.stats()["received"] == len(running.sink.events) + 2  # results
            assert intruder.overheard == []
            assert victim.commands[0]["duration_s"] == 2 and len(victim.commands) == 1
        wrong = SimulatedDoor(
            "127.0.0.1", broker.port, address="gate-3", username=gate3.device_id, password="guess"
        )
        with pytest.raises(DeviceRefused, match="CONNACK refused"):
            await wrong.start()


async def test_an_event_sent_with_mosquitto_pub_is_recorded(tmp_path: Path) -> None:
    mosquitto_pub = shutil.which("mosquitto_pub")
    assert mosquitto_pub is not None, "install mosquitto-clients"
    door = entry(door_profile(), "gate-3")
    with local_broker(tmp_path, [door]) as broker:
        async with running_driver(broker) as running, broker.door("gate-3") as sim:
            await until_heard(sim, running, door.device_id)
            message = {"type": "card_pass", "event_id": "cli-1", "card_id": "C-0042"}
            process = await asyncio.create_subprocess_exec(
                mosquitto_pub,
                "-h", "127.0.0.1",
                "-p", str(broker.port),
                "-u", door.device_id,
                "-P", broker.passwords[door.device_id],
                "-i", "door-gate-3-cli",
                "-q", "1",
                "-t", "devices/gate-3/events",
                "-m", json.dumps(message),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            output, _ = await asyncio.wait_for(process.communicate(), 30)
            assert process.returncode == 0, output
            [event] = await wait_until(lambda: running.events("card_pass"), message="card_pass")
            assert (event.device_id, event.data) == (door.device_id, {"card_id": "C-0042"})
            assert event.dedupe_key == "door-gate-3:cli-1"


async def test_a_silent_door_goes_offline_and_comes_back(tmp_path: Path) -> None:
    door = entry(door_profile(heartbeat_s=0.2), "gate-3")  # offline after 3 missed: 0.6 s
    with local_broker(tmp_path, [door]) as broker:
        async with (
            running_driver(broker) as running,
            broker.door("gate-3", heartbeat_s=0.1) as sim,
        ):
            await wait_until(lambda: running.events("heartbeat"), message="heartbeats")
            assert running.supervisor.is_online(door.device_id) is True
            sim.stop_heartbeats()  # hung: connected, but says nothing
            [offline] = await wait_until(lambda: running.events(OFFLINE), message="offline")
            assert offline.device_id == door.device_id and offline.lane is Lane.NORMAL
            assert "heartbeats of 0.2 s missed" in offline.data["reason"]
            assert running.events(ONLINE) == []
            await sim.face_pass("P-1", 0.9)
            await wait_until(lambda: running.events(ONLINE), message="back online")
            assert running.supervisor.is_online(door.device_id) is True


async def test_the_simulators_run_as_processes(tmp_path: Path) -> None:
    door, locker = entry(door_profile(), "gate-3"), entry(locker_profile(), "b7")
    with local_broker(tmp_path, [door, locker]) as broker:
        async with running_driver(broker) as running, broker.door("gate-3") as probe:
            # Once the probe is heard, the driver's one subscription covers both devices.
            await until_heard(probe, running, door.device_id)
            env = {
                **os.environ,
                "DOOR_PW": broker.passwords[door.device_id],
                "LOCKER_PW": broker.passwords[locker.device_id],
            }
            common = ["--port", str(broker.port), "--interval-s", "0", "--heartbeat-s", "0"]
            runs = [
                ["simulators.door", "--username", door.device_id, "--password-env", "DOOR_PW",
                 "--address", "gate-3", "--scenario", "forced", "--count", "2"],
                ["simulators.locker", "--username", locker.device_id, "--password-env",
                 "LOCKER_PW", "--address", "b7", "--count", "3"],
            ]  # fmt: skip
            for args in runs:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", *args, *common,
                    cwd=REPO, env=env,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
                output, _ = await asyncio.wait_for(process.communicate(), 60)
                assert process.returncode == 0, output.decode()
                assert b"connected" in output
            await wait_until(
                lambda: (
                    len(running.events(device_id=locker.device_id)) == 3
                    and len(running.events("door_held_open")) == 1
                ),
                message="the events of both processes",
            )
            assert [e.kind for e in running.events(device_id=door.device_id)][-2:] == [
                "door_forced",
                "door_held_open",
            ]
            assert running.quarantined() == []
