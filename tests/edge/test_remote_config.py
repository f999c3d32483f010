"""Remote configuration on the edge: the atomic store (a crash between writes leaves a
last known good document) and what the edge does with each document it is sent."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract import Lane
from contract.remote_config import CONFIG_APPLIED, CONFIG_REFUSED, EdgeConfigDocument
from edge.errors import OutboxError
from edge.remote_config import ConfigStore, GatedSink, RemoteConfig
from profiles.config_check import CheckedConfig
from tests.edge.conftest import FakeSink, eventually
from tests.edge.test_config_check import device, document

EDGE = "edge-1"


def versioned(version: int, **kwargs: object) -> EdgeConfigDocument:
    return dataclasses.replace(document(**kwargs), version=version)  # type: ignore[arg-type]


class Harness:
    """A RemoteConfig with fakes for the agent: applied documents, status reports, events."""

    def __init__(self, directory: Path) -> None:
        self.applied: list[int] = []
        self.reports = 0
        self.sink = FakeSink()
        self.config = RemoteConfig(
            EDGE, ConfigStore(directory), apply=self.apply, sink=self.sink, report=self.report
        )

    async def apply(self, checked: CheckedConfig) -> None:
        self.applied.append(checked.version)

    async def report(self) -> None:
        self.reports += 1

    async def send(self, doc: EdgeConfigDocument | bytes) -> None:
        self.config.ready()
        await self.config.on_message(doc if isinstance(doc, bytes) else doc.encode())


# -- the store -----------------------------------------------------------------------------
def test_store_keeps_current_and_previous(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config")
    assert store.candidates() == []
    store.save(b"one")
    store.save(b"two")
    assert [(p.name, data) for p, data in store.candidates()] == [
        ("current.json", b"two"),
        ("previous.json", b"one"),
    ]
    assert not list((tmp_path / "config").glob("*.tmp"))


@pytest.mark.parametrize("crash_at_replace", [1, 2])
def test_a_crash_between_writes_leaves_the_last_known_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at_replace: int
) -> None:
    """Power lost at the 1st rename (previous.json) or the 2nd (current.json): on restart
    the edge still loads the document that ran before, whole."""
    directory = tmp_path / "config"
    ConfigStore(directory).save(versioned(1).encode())
    real_replace = os.replace
    calls = 0

    def failing_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        nonlocal calls
        calls += 1
        if calls == crash_at_replace:
            raise OSError("power lost")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="power lost"):
        ConfigStore(directory).save(versioned(2).encode())
    monkeypatch.setattr(os, "replace", real_replace)

    after_restart = Harness(directory)
    checked = after_restart.config.load_last_known_good()
    assert checked is not None and checked.version == 1


def test_a_corrupt_current_file_falls_back_to_previous(tmp_path: Path) -> None:
    directory = tmp_path / "config"
    store = ConfigStore(directory)
    store.save(versioned(1).encode())
    store.save(versioned(2).encode())
    (directory / "current.json").write_bytes(b'{"v": 1, "edge_id": "edge-1", "vers')
    checked = Harness(directory).config.load_last_known_good()
    assert checked is not None and checked.version == 1


def test_no_usable_stored_document_means_the_yaml_file(tmp_path: Path) -> None:
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "current.json").write_bytes(versioned(1, profiles={"cb-100": ": :"}).encode())
    harness = Harness(directory)
    assert harness.config.load_last_known_good() is None
    assert harness.config.status_info() == {
        "config_version": 0,
        "config_source": "file",
        "config_refused": None,
    }


# -- documents arriving --------------------------------------------------------------------
async def test_a_good_document_is_kept_then_applied_and_reported(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    await harness.send(versioned(1))
    assert harness.applied == [1]
    assert harness.config.status_info()["config_version"] == 1
    assert harness.reports == 1
    [event] = harness.sink.events
    assert (event.device_id, event.kind, event.lane) == (EDGE, CONFIG_APPLIED, Lane.NORMAL)
    assert event.data == {"version": 1, "buses": ["/dev/ttyUSB0"], "devices": 2}
    stored = ConfigStore(tmp_path).candidates()[0][1]
    assert EdgeConfigDocument.decode(stored) == versioned(1)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (
            lambda: versioned(2, devices=(device(77626, profile="cb-999"),)),
            "config.devices[0].profile: 'cb100-77626': unknown profile 'cb-999'",
        ),
        (
            lambda: versioned(2, profiles={"cb-100": "identity: [unclosed"}),
            "config.profiles['cb-100']: line ",
        ),
        (lambda: b'{"v": 1, "edge_id": "edge-1"}', "config."),
        (lambda: dataclasses.replace(versioned(2), edge_id="edge-2"), "config.edge_id"),
    ],
)
async def test_a_bad_document_is_refused_and_the_previous_one_keeps_running(
    tmp_path: Path, bad: Callable[[], EdgeConfigDocument | bytes], reason: str
) -> None:
    harness = Harness(tmp_path)
    await harness.send(versioned(1))
    await harness.send(bad())
    assert harness.applied == [1]
    info = harness.config.status_info()
    assert info["config_version"] == 1
    assert reason in info["config_refused"]["reason"]
    assert harness.reports == 2
    refused = [e for e in harness.sink.events if e.kind == CONFIG_REFUSED]
    assert len(refused) == 1 and reason in refused[0].data["reason"]
    assert refused[0].data["running"] == 1
    assert EdgeConfigDocument.decode(ConfigStore(tmp_path).candidates()[0][1]).version == 1

    await harness.send(bad())  # the retained copy again, after a reconnect
    assert len([e for e in harness.sink.events if e.kind == CONFIG_REFUSED]) == 1


async def test_the_running_version_again_is_silent_an_older_one_is_stale(
    tmp_path: Path,
) -> None:
    harness = Harness(tmp_path)
    await harness.send(versioned(3))
    await harness.send(versioned(3))  # retained copy on reconnect
    assert harness.config.refused is None and harness.applied == [3]
    await harness.send(versioned(2))
    assert harness.applied == [3]
    assert harness.config.refused is not None
    assert harness.config.refused["version"] == 2
    assert harness.config.refused["reason"].startswith("stale: version 2")


async def test_after_a_restart_the_stored_document_runs_and_its_copy_is_silent(
    tmp_path: Path,
) -> None:
    first = Harness(tmp_path)
    await first.send(versioned(4))
    restarted = Harness(tmp_path)
    checked = restarted.config.load_last_known_good()
    assert checked is not None and checked.version == 4
    await restarted.send(versioned(4))
    assert restarted.applied == [] and restarted.config.refused is None
    await restarted.send(versioned(5))
    assert restarted.applied == [5]


async def test_documents_wait_until_the_drivers_run(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    task = asyncio.create_task(harness.config.on_message(versioned(1).encode()))
    for _ in range(20):  # let the task run as far as it can: up to its wait for ready()
        await asyncio.sleep(0)
    assert harness.applied == []
    harness.config.ready()
    await asyncio.wait_for(task, 5)
    assert harness.applied == [1]


async def test_a_document_that_cannot_be_kept_on_disk_is_not_applied(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the config directory should be")
    harness = Harness(blocker)
    await harness.send(versioned(1))
    assert harness.applied == []
    assert harness.config.refused is not None
    assert "cannot keep it on disk" in harness.config.refused["reason"]


# -- stopping a driver mid-record ------------------------------------------------------------
async def test_closing_the_gate_waits_for_records_in_flight(fake_sink: FakeSink) -> None:
    fake_sink.gate = asyncio.Event()
    sink = GatedSink(fake_sink)
    record = asyncio.create_task(sink.record("cb100-1", "sos", Lane.ALARM, {}, dedupe_key="k"))
    await eventually(lambda: fake_sink.calls, what="record started")
    closing = asyncio.create_task(sink.close(10))
    await asyncio.sleep(0)  # one loop turn: close() runs up to its wait
    with pytest.raises(OutboxError, match="reconfigured"):  # a frame arriving meanwhile
        await sink.record("cb100-1", "heartbeat", Lane.TELEMETRY, {})
    assert not closing.done()
    fake_sink.gate.set()
    assert await record is True
    assert await asyncio.wait_for(closing, 10) is True
    assert fake_sink.kinds() == ["sos"]


async def test_closing_an_idle_gate_is_immediate_and_a_stuck_one_times_out(
    fake_sink: FakeSink,
) -> None:
    assert await GatedSink(fake_sink).close(0.01) is True
    fake_sink.gate = asyncio.Event()
    sink = GatedSink(fake_sink)
    record = asyncio.create_task(sink.record("cb100-1", "sos", Lane.ALARM, {}))
    await eventually(lambda: fake_sink.calls, what="record started")
    assert await sink.close(0.01) is False
    fake_sink.gate.set()
    assert await record is True


def test_issued_at_survives_the_store(tmp_path: Path) -> None:
    doc = dataclasses.replace(versioned(1), issued_at=datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC))
    ConfigStore(tmp_path).save(doc.encode())
    assert EdgeConfigDocument.decode(ConfigStore(tmp_path).candidates()[0][1]) == doc
