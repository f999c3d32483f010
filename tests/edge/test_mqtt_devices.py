"""MQTT devices on the edge's local broker: the broker files, and the driver against a real
Mosquitto that enforces those files.

Every driver test runs a private Mosquitto with the password file and ACL that
``edge.local_broker`` writes (each device its own account), a simulated door or locker
connected with its own credentials, and the driver recording into a fake sink. Quarantine,
commands, dedupe, a failing outbox and a crash between record and ack are covered here;
the end-to-end flows (ACL between devices, ``mosquitto_pub``, offline, the simulators as
processes) are in ``tests/integration/test_mqtt_devices.py``.

The helpers above the tests are shared with that file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from contract import Lane
from contract.mosquitto_auth import verify_password
from contract.mqtt import BrokerSettings
from edge.command_deadline import CommandDeadline
from edge.drivers import mqtt_devices
from edge.drivers.base import DeviceEntry
from edge.drivers.mqtt_devices import QUARANTINE_EVENTS_PER_MIN, QUARANTINED, MqttDeviceDriver
from edge.local_broker import (
    STORE_PATH,
    LocalBrokerError,
    edge_settings,
    read_passwords,
    render_acl,
    write_local_broker_files,
)
from edge.supervision import Supervisor
from profiles import DeviceProfile, load_profile
from simulators.broker import MosquittoProcess
from simulators.door import SimulatedDoor
from simulators.locker import SimulatedLocker
from simulators.mqtt_device import JsonMqttDevice
from tests.conftest import wait_until
from tests.edge.conftest import FakeSink, RecordedEvent

EDGE_USER = "edge-local"

REPO = Path(__file__).resolve().parents[2]
DOOR_PROFILE = REPO / "device_profiles" / "fr-door.yaml"
LOCKER_PROFILE = REPO / "device_profiles" / "parcel-locker.yaml"


def tuned(
    profile: DeviceProfile, heartbeat_s: float | None, timeout_s: float | None
) -> DeviceProfile:
    """The shipped profile with a shorter heartbeat or command timeout, for fast tests."""
    supervision = profile.supervision
    if heartbeat_s is not None:
        supervision = supervision.model_copy(update={"heartbeat_interval_s": heartbeat_s})
    commands = profile.commands
    if timeout_s is not None:
        commands = tuple(c.model_copy(update={"result_timeout_s": timeout_s}) for c in commands)
    return profile.model_copy(update={"supervision": supervision, "commands": commands})


@functools.cache
def _shipped(path: Path) -> DeviceProfile:
    return load_profile(path)


def door_profile(heartbeat_s: float | None = None, timeout_s: float | None = None) -> DeviceProfile:
    """``device_profiles/fr-door.yaml``, optionally tuned."""
    return tuned(_shipped(DOOR_PROFILE), heartbeat_s, timeout_s)


def locker_profile(
    heartbeat_s: float | None = None, timeout_s: float | None = None
) -> DeviceProfile:
    """``device_profiles/parcel-locker.yaml``, optionally tuned."""
    return tuned(_shipped(LOCKER_PROFILE), heartbeat_s, timeout_s)


def entry(profile: DeviceProfile, address: str) -> DeviceEntry:
    return DeviceEntry(profile.device_id_for_address(address), profile, address)


@dataclass
class LocalBroker:
    """A private Mosquitto enforcing the files ``edge.local_broker`` wrote for ``devices``."""

    process: MosquittoProcess
    devices: Sequence[DeviceEntry]
    passwords: dict[str, str]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.process.port

    def edge_settings(self) -> BrokerSettings:
        return BrokerSettings(
            port=self.port,
            username=EDGE_USER,
            password=SecretStr(self.passwords[EDGE_USER]),
            reconnect_max_s=1,
        )

    def door(self, address: str, *, as_device: str | None = None, **kwargs: Any) -> SimulatedDoor:
        """A door at ``address`` logged in as ``as_device`` (default: its own account)."""
        username = as_device or f"door-{address}"
        return SimulatedDoor(
            "127.0.0.1",
            self.port,
            address=address,
            username=username,
            password=self.passwords[username],
            **kwargs,
        )

    def locker(self, address: str, **kwargs: Any) -> SimulatedLocker:
        username = f"locker-{address}"
        return SimulatedLocker(
            "127.0.0.1",
            self.port,
            address=address,
            username=username,
            password=self.passwords[username],
            **kwargs,
        )


@contextlib.contextmanager
def local_broker(tmp_path: Path, devices: Sequence[DeviceEntry]) -> Iterator[LocalBroker]:
    store = tmp_path / "edge-data" / STORE_PATH
    files = write_local_broker_files(
        tmp_path / "broker-files",
        devices,
        edge_username=EDGE_USER,
        edge_password=None,
        store=store,
    )
    process = MosquittoProcess(
        tmp_path / "mosquitto", password_file=files.password_file, acl_file=files.acl_file
    )
    with process:
        yield LocalBroker(process, devices, read_passwords(store))


@dataclass
class RunningDriver:
    driver: MqttDeviceDriver
    sink: FakeSink
    supervisor: Supervisor

    def events(self, kind: str | None = None, device_id: str | None = None) -> list[RecordedEvent]:
        return [
            e
            for e in self.sink.events
            if (kind is None or e.kind == kind) and (device_id is None or e.device_id == device_id)
        ]

    def quarantined(self) -> list[RecordedEvent]:
        return self.events(QUARANTINED)


@contextlib.asynccontextmanager
async def running_driver(
    broker: LocalBroker,
    devices: Sequence[DeviceEntry] | None = None,
    sink: FakeSink | None = None,
    **kwargs: object,
) -> AsyncIterator[RunningDriver]:
    """The driver (and a supervisor) running against ``broker`` until the block ends."""
    sink = sink or FakeSink()
    supervisor = Supervisor(sink)
    driver = MqttDeviceDriver(
        broker.edge_settings(),
        list(broker.devices if devices is None else devices),
        sink,
        supervisor,
        **kwargs,  # type: ignore[arg-type]
    )
    tasks = [asyncio.create_task(driver.run()), asyncio.create_task(supervisor.run())]
    try:
        await wait_until(lambda: driver.connected, message="driver connected to local broker")
        yield RunningDriver(driver, sink, supervisor)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until_heard(device: JsonMqttDevice, running: RunningDriver, device_id: str) -> None:
    """Wait until the driver's subscription is in place: a heartbeat from ``device`` is
    recorded. The driver subscribes right after its CONNACK, so the first heartbeat may
    reach the broker before the subscription does; it is sent again until one arrives."""
    for _ in range(50):
        await device.heartbeat()
        with contextlib.suppress(AssertionError):
            await wait_until(
                lambda: running.events("heartbeat", device_id), timeout=0.5, message="heartbeat"
            )
        if running.events("heartbeat", device_id):
            return
    raise AssertionError(f"{device_id}: no heartbeat reached the driver")


# -- local broker files (no broker) ---------------------------------------------------------


def test_acl_gives_each_device_its_own_two_topics_and_the_edge_all() -> None:
    devices = [entry(door_profile(), "gate-3"), entry(locker_profile(), "b7")]
    assert render_acl(EDGE_USER, devices).splitlines() == [
        "# Generated by the edge (edge.local_broker); every change here is overwritten.",
        "user edge-local",
        "topic read devices/+/events",
        "topic read lockers/+/events",
        "topic write devices/+/commands",
        "topic write lockers/+/commands",
        "",
        "user door-gate-3",
        "topic write devices/gate-3/events",
        "topic read devices/gate-3/commands",
        "",
        "user locker-b7",
        "topic write lockers/b7/events",
        "topic read lockers/b7/commands",
    ]


def test_passwords_are_generated_once_stored_0600_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    devices = [entry(door_profile(), "gate-3"), entry(locker_profile(), "b7")]
    given = tmp_path / "device-passwords.yaml"
    given.write_text("locker-b7: typed-into-the-locker\n")
    store = tmp_path / "data" / STORE_PATH

    def write() -> dict[str, str]:
        files = write_local_broker_files(
            tmp_path / "out",
            devices,
            edge_username=EDGE_USER,
            edge_password="from-the-environment",
            store=store,
            secrets_file=given,
        )
        for path in (files.password_file, files.acl_file, store):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        lines = files.password_file.read_text().splitlines()
        return dict(line.split(":", 1) for line in lines)

    hashes = write()
    stored = read_passwords(store)
    assert set(stored) == {"door-gate-3"}  # only what was generated
    assert len(stored["door-gate-3"]) >= 40
    assert sorted(hashes) == ["door-gate-3", EDGE_USER, "locker-b7"]
    assert verify_password("from-the-environment", hashes[EDGE_USER])
    assert verify_password("typed-into-the-locker", hashes["locker-b7"])
    assert verify_password(stored["door-gate-3"], hashes["door-gate-3"])
    again = write()  # a second run keeps the generated password (fresh salt)
    assert read_passwords(store) == stored
    assert verify_password(stored["door-gate-3"], again["door-gate-3"])
    for secret in (stored["door-gate-3"], "typed-into-the-locker", "from-the-environment"):
        assert secret not in caplog.text


def test_edge_password_from_the_store_when_the_environment_has_none(tmp_path: Path) -> None:
    settings = BrokerSettings(port=1884, username=EDGE_USER)
    first = edge_settings(settings, tmp_path)
    assert first.password is not None
    assert edge_settings(settings, tmp_path).password == first.password
    given = settings.model_copy(update={"password": SecretStr("env")})
    assert edge_settings(given, tmp_path) is given


@pytest.mark.parametrize(
    ("address", "device_id", "problem"),
    [
        ("gate/3", None, "one MQTT topic level"),
        ("gate+", None, "one MQTT topic level"),
        ("gate-3", "door:3", "invalid account name"),
        ("gate-3", EDGE_USER, "the edge's own local broker username"),
    ],
)
def test_devices_that_cannot_be_accounts_are_refused(
    address: str, device_id: str | None, problem: str
) -> None:
    profile = door_profile()
    device = DeviceEntry(device_id or f"door-{address}", profile, address)
    with pytest.raises(LocalBrokerError, match=problem):
        render_acl(EDGE_USER, [device])


def test_two_devices_on_one_topic_are_refused() -> None:
    profile = door_profile()
    twins = [DeviceEntry("door-a", profile, "gate-3"), DeviceEntry("door-b", profile, "gate-3")]
    with pytest.raises(LocalBrokerError, match="also used by device 'door-a'"):
        render_acl(EDGE_USER, twins)


def test_a_bad_secrets_file_is_named_without_showing_passwords(tmp_path: Path) -> None:
    bad = tmp_path / "secrets.yaml"
    bad.write_text("door-gate-3: [hunter2]\n")
    with pytest.raises(LocalBrokerError, match="door-gate-3: password must be a string") as err:
        read_passwords(bad)
    assert "hunter2" not in str(err.value)
    bad.write_text("door-gate-3: 'hunter2\n")
    with pytest.raises(LocalBrokerError, match="not a valid YAML mapping") as err:
        read_passwords(bad)
    assert "hunter2" not in str(err.value)


def test_command_line_writes_the_files_for_the_configs_mqtt_devices(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    shutil.copy(DOOR_PROFILE, profiles / "fr-door.yaml")
    config = tmp_path / "edge.yaml"
    config.write_text(
        f"edge_id: edge-1\ndata_dir: {tmp_path / 'data'}\nprofiles_dir: {profiles}\n"
        "devices:\n  - {profile: fr-door, address: gate-3}\n"
        "local_broker: {host: 127.0.0.1, port: 1884, username: edge-local}\n"
    )
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE__")}
    done = subprocess.run(
        [sys.executable, "-m", "edge.local_broker", "--config", str(config), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    stored = read_passwords(tmp_path / "data" / STORE_PATH)
    assert sorted(stored) == ["door-gate-3", EDGE_USER]
    for secret in stored.values():
        assert secret not in done.stdout + done.stderr
    assert "user door-gate-3" in (out / "local-broker.acl").read_text()


# -- the driver against a real broker -------------------------------------------------------


async def test_malformed_and_unknown_messages_are_quarantined_with_reasons(
    tmp_path: Path,
) -> None:
    door = entry(door_profile(), "gate-3")
    with local_broker(tmp_path, [door]) as broker:
        async with running_driver(broker) as running, broker.door("gate-3") as sim:
            await until_heard(sim, running, door.device_id)
            bad: list[tuple[bytes, str]] = [
                (b"not json {", "not_json"),
                (b"\xff\xfe", "not_json"),
                (b"[1, 2]", "not_object"),
                (b'{"type": "teleport"}', "no_match"),
                (b'{"type": "face_pass", "similarity": 0.9}', "missing_field"),
                (b'{"type": "face_pass", "person_id": "p", "similarity": "hi"}', "bad_type"),
                (b'{"type": "face_pass", "person_id": "p", "similarity": 1.5}', "out_of_range"),
                (b'{"type": "door_held_open", "seconds": true}', "bad_type"),
                (b'{"type": "command_result", "status": "ok"}', "bad_type"),
                (b"x" * 70_000, "too_large"),
            ]
            assert len(bad) <= QUARANTINE_EVENTS_PER_MIN  # all recorded, none suppressed
            for payload, _ in bad:
                assert await sim.publish_raw(payload) == 0
            await sim.face_pass("P-1001", 0.97)  # and the device still works
            await wait_until(lambda: running.events("face_pass"), message="good event")
            await wait_until(
                lambda: len(running.quarantined()) == len(bad), message="quarantine records"
            )
            reasons = [e.data["reason"] for e in running.quarantined()]
            assert reasons == [reason for _, reason in bad]
            first = running.quarantined()[0]
            assert first.device_id == door.device_id
            assert first.lane is Lane.NORMAL
            assert first.data["topic"] == "devices/gate-3/events"
            assert first.data["payload"] == "not json {"
            assert len(running.quarantined()[-1].data["payload"]) == 1024
            stats = running.driver.stats()
            assert stats["quarantined"] == {
                "not_json": 2,
                "not_object": 1,
                "no_match": 1,
                "missing_field": 1,
                "bad_type": 3,
                "out_of_range": 1,
                "too_large": 1,
            }
            assert stats["devices"][door.device_id]["quarantined"]["not_json"] == 2
            assert stats["events"] == 2  # the heartbeat and the face_pass


async def test_a_device_sending_garbage_in_a_loop_does_not_fill_the_outbox(
    tmp_path: Path,
) -> None:
    now = [1000.0]
    door = entry(door_profile(), "gate-3")
    with local_broker(tmp_path, [door]) as broker:
        async with (
            running_driver(broker, clock=lambda: now[0]) as running,
            broker.door("gate-3") as sim,
        ):
            await until_heard(sim, running, door.device_id)
            extra = 3
            for _ in range(QUARANTINE_EVENTS_PER_MIN + extra):
                await sim.publish_raw(b"garbage")
            await wait_until(
                lambda: (
                    sum(running.driver.stats()["quarantined"].values())
                    == QUARANTINE_EVENTS_PER_MIN + extra
                ),
                message="all counted",
            )
            assert len(running.quarantined()) == QUARANTINE_EVENTS_PER_MIN
            assert running.driver.stats()["quarantine_suppressed"] == extra
            now[0] += 60  # a minute later the next one is recorded, with the count
            await sim.publish_raw(b"garbage")
            await wait_until(lambda: len(running.quarantined()) == QUARANTINE_EVENTS_PER_MIN + 1)
            assert running.quarantined()[-1].data["suppressed"] == extra


async def test_a_message_of_no_configured_device_is_counted_not_recorded(
    tmp_path: Path,
) -> None:
    known, stranger = entry(door_profile(), "gate-3"), entry(door_profile(), "gate-9")
    # The broker has an account for gate-9 (installed, but not in the driver's list).
    with local_broker(tmp_path, [known, stranger]) as broker:
        async with (
            running_driver(broker, devices=[known]) as running,
            broker.door("gate-3") as sim,
            broker.door("gate-9") as other,
        ):
            await until_heard(sim, running, known.device_id)
            await other.face_pass("P-1")
            await wait_until(lambda: running.driver.stats()["unknown_topic"] == 1)
            assert [e.device_id for e in running.sink.events] == [known.device_id]


async def test_a_repeated_event_id_is_recorded_once(tmp_path: Path) -> None:
    door = entry(door_profile(), "gate-3")
    with local_broker(tmp_path, [door]) as broker:
        async with running_driver(broker) as running, broker.door("gate-3") as sim:
            await until_heard(sim, running, door.device_id)
            message = {"type": "card_pass", "event_id": "e-1", "card_id": "C-7788"}
            await sim.publish_json(message)
            await sim.publish_json(message)
            await wait_until(lambda: running.driver.stats()["duplicates"] == 1)
            [event] = running.events("card_pass")
            assert event.dedupe_key == "door-gate-3:e-1"
            assert event.data == {"card_id": "C-7788"}


async def test_an_event_the_outbox_cannot_store_is_retried_until_it_is(tmp_path: Path) -> None:
    door = entry(door_profile(), "gate-3")
    with local_broker(tmp_path, [door]) as broker:
        async with running_driver(broker) as running, broker.door("gate-3") as sim:
            await until_heard(sim, running, door.device_id)
            running.sink.fail_next = 2  # a full disk, twice
            await sim.door_forced()
            await wait_until(lambda: running.events("door_forced"), message="stored at last")
            assert running.driver.stats()["record_retries"] == 2


async def test_a_message_is_acked_only_once_recorded_so_a_crash_loses_nothing(
    tmp_path: Path,
) -> None:
    door = entry(door_profile(), "gate-3")
    with local_broker(tmp_path, [door]) as broker:
        stuck = FakeSink()
        async with running_driver(broker, sink=stuck) as running, broker.door("gate-3") as sim:
            await until_heard(sim, running, door.device_id)
            stuck.gate = asyncio.Event()  # from now on record() never returns: the edge dies
            await sim.face_pass("P-1001", 0.95)
            sent = await sim.face_pass("P-1002", 0.96)
            await wait_until(
                lambda: any(c.data.get("person_id") == "P-1002" for c in stuck.calls),
                message="record under way",
            )
            assert running.events("face_pass") == []
        # The next run (same client id, persistent session) gets what was never acked.
        async with running_driver(broker) as second:
            await wait_until(
                lambda: (
                    {e.data.get("person_id") for e in second.events("face_pass")}
                    == {"P-1001", "P-1002"}
                ),
                message="redelivered events",
            )
            keys = [e.dedupe_key for e in second.events("face_pass")]
            assert f"door-gate-3:{sent['event_id']}" in keys


async def test_open_door_round_trip_ok_device_error_timeout_and_rejected(tmp_path: Path) -> None:
    door = entry(door_profile(timeout_s=0.5), "gate-3")
    with local_broker(tmp_path, [door]) as broker:
        async with running_driver(broker) as running, broker.door("gate-3") as sim:
            await until_heard(sim, running, door.device_id)
            driver = running.driver
            assert await driver.command(door.device_id, "open_door", {"duration_s": 5}) == (
                "ok",
                "opened for 5 s",
            )
            assert sim.opened == [5]
            command = sim.commands[0]
            assert command["cmd"] == "open_door" and command["duration_s"] == 5
            assert len(command["command_id"]) == 32
            assert (await driver.command(door.device_id, "set_mode", {"mode": "locked"}))[0] == "ok"
            status, detail = await driver.command(door.device_id, "open_door", {"duration_s": 5})
            assert (status, sim.opened) == ("device_error", [5])
            assert "locked" in detail
            sim.silent = True
            status, detail = await driver.command(door.device_id, "open_door", {"duration_s": 5})
            assert status == "timeout" and "0.5 s" in detail
            received = len(sim.commands)
            for bad in ({"duration_s": 0}, {"duration_s": 61}, {"duration_s": "5"}, {}, {"x": 1}):
                status, detail = await driver.command(door.device_id, "open_door", bad)
                assert status == "rejected", (bad, detail)
            assert (await driver.command(door.device_id, "fly", {}))[0] == "rejected"
            assert (await driver.command("door-gate-9", "open_door", {"duration_s": 5}))[
                0
            ] == "rejected"
            assert (await driver.command(door.device_id, "set_mode", {"mode": "party"}))[
                0
            ] == "rejected"
            assert len(sim.commands) == received  # nothing rejected was published
            # Issue #11: past its deadline nothing is published to the door.
            sim.silent = False
            past = CommandDeadline(expires_at=0.0, why="deadline by the edge's clock")
            status, detail = await driver.command(
                door.device_id, "open_door", {"duration_s": 5}, deadline=past
            )
            assert status == "expired" and "before it was published" in detail, detail
            assert len(sim.commands) == received
            assert driver.stats()["commands"] == {
                "ok": 2,
                "device_error": 1,
                "timeout": 1,
                "rejected": 8,
                "expired": 1,
            }


async def test_a_late_answer_is_counted_and_does_not_confuse_the_next_command(
    tmp_path: Path,
) -> None:
    door = entry(door_profile(timeout_s=0.3), "gate-3")
    with local_broker(tmp_path, [door]) as broker:
        async with running_driver(broker) as running, broker.door("gate-3") as sim:
            await until_heard(sim, running, door.device_id)
            sim.silent = True
            assert (await running.driver.command(door.device_id, "open_door", {"duration_s": 3}))[
                0
            ] == "timeout"
            late = sim.commands[-1]
            await sim.publish_json(
                {"type": "command_result", "command_id": late["command_id"], "status": "ok"}
            )
            await wait_until(lambda: running.driver.stats()["late_results"] == 1)
            sim.silent = False
            assert (await running.driver.command(door.device_id, "open_door", {"duration_s": 4}))[
                0
            ] == "ok"
            assert running.quarantined() == []


async def test_locker_events_and_open_compartment(tmp_path: Path) -> None:
    locker = entry(locker_profile(), "b7")
    with local_broker(tmp_path, [locker]) as broker:
        async with running_driver(broker) as running, broker.locker("b7", compartments=24) as sim:
            await until_heard(sim, running, locker.device_id)
            await sim.deposit(4, household_id=1203, parcel_id="SF0001")
            await sim.door_left_open(4)
            await sim.pick_up(4)
            await wait_until(lambda: running.events("parcel_picked_up"), message="pick-up")
            assert [(e.kind, e.data) for e in running.sink.events[1:]] == [
                (
                    "parcel_deposited",
                    {"compartment": 4, "household_id": 1203, "parcel_id": "SF0001"},
                ),
                ("door_left_open", {"compartment": 4}),
                ("parcel_picked_up", {"compartment": 4, "parcel_id": "SF0001"}),
            ]
            driver = running.driver
            assert await driver.command(
                locker.device_id, "open_compartment", {"compartment": 4}
            ) == (
                "ok",
                "compartment 4 opened",
            )
            status, _ = await driver.command(
                locker.device_id, "open_compartment", {"compartment": 30}
            )
            assert status == "device_error"  # the profile allows it, this locker has 24
            status, _ = await driver.command(
                locker.device_id, "open_compartment", {"compartment": 0}
            )
            assert status == "rejected"
            assert sim.opened == [4]


async def test_a_bug_in_handling_quarantines_the_message_and_the_driver_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    door = entry(door_profile(), "gate-3")
    with local_broker(tmp_path, [door]) as broker:
        async with running_driver(broker) as running, broker.door("gate-3") as sim:
            await until_heard(sim, running, door.device_id)

            def broken(payload: object) -> None:
                raise RuntimeError("bug")

            monkeypatch.setattr(mqtt_devices, "parse_command_reply", broken)
            await sim.card_pass("C-1")
            [bad] = await wait_until(running.quarantined, message="quarantined")
            assert bad.data["reason"] == "internal_error"
            assert json.loads(bad.data["payload"])["card_id"] == "C-1"
            monkeypatch.undo()
            await sim.card_pass("C-2")
            await wait_until(lambda: running.events("card_pass"), message="next event")
            assert running.driver.stats()["internal_errors"] == 1
