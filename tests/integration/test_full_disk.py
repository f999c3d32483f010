"""Acceptance for the bounded edge buffer (issue #5). A full disk under the edge's outbox (a
real, small tmpfs) never crashes the edge; it says so in its status at the hub; nothing it
could not store is acknowledged to a button; and an SOS gets through — at once through the
space reserve, or without one as soon as space is freed. And over its row cap during an
outage the edge drops the oldest telemetry, never the SOS, and the hub learns the count
when the edge reconnects. Real Mosquitto, hub and edge processes, a real pty."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulators.broker import MosquittoProcess
from simulators.button import SimulatedButton, SimulatedButtonBus
from simulators.stack import Stack
from tests.conftest import wait_until
from tests.integration.conftest import api, placement, query

pytestmark = pytest.mark.integration

EDGE = "edge-demo"  # the seeded devices belong to it
TELEMETRY_BUTTON, SOS_BUTTON = 77626, 77627
DISK_SIZE = "16m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs for the edge's data_dir; unmounted after the test (and after the
    ``stack`` fixture, requested after this one, has stopped the edge)."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (tests run as root here and in CI)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill_disk(directory: Path, name: str = "filler") -> Path:
    """Write zeros into ``directory`` until the file system says ENOSPC (unbuffered, so
    nothing is left to fail later at close)."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (b"\0" * 65536, b"\0" * 512):
            try:
                while os.write(fd, chunk):
                    pass
            except OSError as err:
                assert err.errno == errno.ENOSPC, err
    finally:
        os.close(fd)
    return path


async def edge_info(client: httpx.AsyncClient) -> dict[str, Any]:
    """The edge's last status as the hub shows it in ``GET /api/v1/edges``."""
    response = await client.get("/api/v1/edges")
    assert response.status_code == 200, response.text
    for edge in response.json():
        if edge["edge_id"] == EDGE and edge["online"]:
            info: dict[str, Any] = edge["info"] or {}
            return info
    return {}


def outbox_errors(info: dict[str, Any], device_id: str) -> int:
    """How often the edge could not store a frame of ``device_id`` (bus counters)."""
    devices = info.get("buses", [{}])[0].get("devices", {}) if info.get("buses") else {}
    return int(devices.get(device_id, {}).get("errors", {}).get("outbox", 0))


def cases_of(stack: Stack, household: int) -> list[tuple[Any, ...]]:
    return query(stack, "SELECT id, state FROM cases WHERE household_id = ?", household)


@contextlib.asynccontextmanager
async def edge_on_small_disk(
    stack: Stack, tmp_path: Path, disk: Path, reserve_bytes: int
) -> AsyncIterator[tuple[SimulatedButtonBus, httpx.AsyncClient]]:
    stack.start_hub()
    link = tmp_path / "bus0"
    async with SimulatedButtonBus(
        [TELEMETRY_BUTTON, SOS_BUTTON], link_path=link, retransmit_s=0.5
    ) as bus:
        stack.start_edge(
            EDGE,
            [str(link)],
            data_dir=str(disk),
            status_interval_s=0.5,
            outbox={"reserve_bytes": reserve_bytes},
        )
        async with api(stack) as client:
            await wait_until(lambda: edge_info(client), 30, message="edge status at the hub")
            first = bus.button(TELEMETRY_BUTTON).heartbeat(90)  # the path works before
            await wait_until(
                lambda: query(
                    stack,
                    "SELECT 1 FROM events WHERE device_id = ? AND kind = 'heartbeat'",
                    f"cb100-{TELEMETRY_BUTTON}",
                ),
                30,
                message=f"heartbeat {first.seq} at the hub",
            )
            yield bus, client


async def heartbeats_refused(
    client: httpx.AsyncClient, button: SimulatedButton, count: int
) -> dict[str, Any]:
    """Send ``count`` heartbeats into the full disk; wait until the edge reports it."""
    for _ in range(count):
        button.heartbeat(80)

    async def reported() -> dict[str, Any] | None:
        info = await edge_info(client)
        buffer = info.get("buffer", {})
        failed = outbox_errors(info, f"cb100-{button.serial}")
        ok = buffer.get("disk_full") and info.get("buffer_pressure") and failed
        return info if ok else None

    info = await wait_until(reported, 60, message="edge status: disk full, buffer pressure")
    assert button.pending_seqs, "a heartbeat that could not be stored was link-acked"
    return info


async def test_full_disk_without_reserve_sos_waits_for_space_then_gets_through(
    small_disk: Path, stack: Stack, tmp_path: Path
) -> None:
    async with edge_on_small_disk(stack, tmp_path, small_disk, reserve_bytes=0) as (bus, client):
        household, _grid, _worker = placement(stack, f"cb100-{SOS_BUTTON}")
        filler = fill_disk(small_disk)
        tele, sos_button = bus.button(TELEMETRY_BUTTON), bus.button(SOS_BUTTON)
        info = await heartbeats_refused(client, tele, 20)
        assert info["outbox"]["disk_full_errors"] >= 1
        assert info["fill_pct"] == 100.0  # no room left on the disk

        sos = sos_button.press_sos()

        async def sos_refused() -> bool:
            return outbox_errors(await edge_info(client), f"cb100-{SOS_BUTTON}") >= 1

        await wait_until(sos_refused, 30, message="the edge tried and failed to store the SOS")
        assert sos.seq in sos_button.pending_seqs, "an SOS that is not on disk was link-acked"
        assert cases_of(stack, household) == []
        edge = stack.edges[EDGE]
        assert edge.running, f"edge died on a full disk:\n{edge.log_text()[-3000:]}"
        assert "not stored" in edge.log_text()

        filler.unlink()  # space is freed: the next retransmission is stored and delivered
        await wait_until(lambda: cases_of(stack, household), 30, message="case opened for SOS")
        await wait_until(
            lambda: not tele.pending_seqs and not sos_button.pending_seqs,
            30,
            message="every frame link-acked",
        )

        async def recovered() -> bool:
            info = await edge_info(client)
            return info.get("buffer", {}).get("disk_full") is False and not info.get(
                "buffer_pressure"
            )

        await wait_until(recovered, 30, message="edge status: disk has room again")
        assert edge.running
        sent = {f.seq for f in tele.sent}

        def heartbeats_at_hub() -> set[int]:
            rows = query(
                stack,
                "SELECT json_extract(data, '$.frame_seq') FROM events WHERE device_id = ?",
                f"cb100-{TELEMETRY_BUTTON}",
            )
            return {int(s) for (s,) in rows}

        await wait_until(lambda: heartbeats_at_hub() == sent, 30, message="every heartbeat")
        assert len(cases_of(stack, household)) == 1


async def test_full_disk_with_reserve_sos_gets_through_at_once_and_telemetry_waits(
    small_disk: Path, stack: Stack, tmp_path: Path
) -> None:
    reserve = 1 << 20
    async with edge_on_small_disk(stack, tmp_path, small_disk, reserve) as (bus, client):
        household, _grid, _worker = placement(stack, f"cb100-{SOS_BUTTON}")
        assert (small_disk / "outbox.db.reserve").stat().st_size == reserve
        filler = fill_disk(small_disk)
        tele, sos_button = bus.button(TELEMETRY_BUTTON), bus.button(SOS_BUTTON)
        await heartbeats_refused(client, tele, 20)

        sos_button.press_sos()  # the disk is still full: the reserve makes room for it
        await wait_until(lambda: cases_of(stack, household), 30, message="case opened for SOS")
        await wait_until(lambda: not sos_button.pending_seqs, 10, message="SOS link-acked")

        async def reserve_spent() -> dict[str, Any] | None:
            info = await edge_info(client)
            spent = info.get("outbox", {}).get("reserve_releases") == 1
            return info if spent and info["buffer"]["reserve_held"] is False else None

        info = await wait_until(reserve_spent, 30, message="edge status: reserve spent")
        assert info["buffer_pressure"] is True and info["buffer"]["disk_full"] is True
        # What is left of the reserve is kept for alarms: heartbeats are still refused.
        refused = info["outbox"]["refused_low_disk"]

        async def more_refused() -> bool:
            return (await edge_info(client))["outbox"]["refused_low_disk"] > refused

        await wait_until(more_refused, 30, message="heartbeats refused to keep space for alarms")
        assert tele.pending_seqs
        edge = stack.edges[EDGE]
        assert edge.running, f"edge died on a full disk:\n{edge.log_text()[-3000:]}"

        filler.unlink()

        async def recovered() -> bool:
            info = await edge_info(client)
            buffer = info.get("buffer", {})
            return bool(buffer.get("reserve_held")) and buffer.get("disk_full") is False

        await wait_until(recovered, 30, message="edge status: reserve re-created, disk has room")
        await wait_until(lambda: not tele.pending_seqs, 30, message="heartbeats link-acked")
        assert (small_disk / "outbox.db.reserve").stat().st_size == reserve
        assert len(cases_of(stack, household)) == 1


async def test_an_edge_restarted_on_a_full_disk_comes_up_and_takes_an_sos(
    small_disk: Path, stack: Stack, tmp_path: Path
) -> None:
    reserve = 1 << 20
    async with edge_on_small_disk(stack, tmp_path, small_disk, reserve) as (bus, client):
        household, _grid, _worker = placement(stack, f"cb100-{SOS_BUTTON}")
        edge = stack.edges[EDGE]
        edge.stop()  # a clean stop removes the WAL and its index (-shm) ...
        filler = fill_disk(small_disk)  # ... and while the edge is down the disk fills up:
        edge.start()  # SQLite cannot open the database without space for a new -shm

        async def back_and_full() -> bool:
            # Whether SQLite needed the reserve to open depends on what the stop left on
            # disk; either way the edge must come up and report the full disk as pressure.
            info = await edge_info(client)
            buffer = info.get("buffer", {}) if info else {}
            return bool(info) and (
                buffer.get("disk_full") is True or info.get("buffer_pressure") is True
            )

        await wait_until(back_and_full, 30, message="restarted edge online, reporting pressure")
        sos_button = bus.button(SOS_BUTTON)
        sos_button.press_sos()
        await wait_until(lambda: cases_of(stack, household), 30, message="case opened for SOS")
        await wait_until(lambda: not sos_button.pending_seqs, 10, message="SOS link-acked")
        assert edge.running
        filler.unlink()
        await wait_until(
            lambda: (small_disk / "outbox.db.reserve").exists(), 30, message="reserve re-created"
        )


async def test_drops_over_the_cap_during_an_outage_reach_the_hub_on_reconnect(
    stack: Stack, tmp_path: Path
) -> None:
    stack.start_hub()
    link = tmp_path / "bus0"
    async with SimulatedButtonBus(
        [TELEMETRY_BUTTON, SOS_BUTTON], link_path=link, retransmit_s=1.0
    ) as bus:
        # A long status interval: what reaches the hub is the status sent on reconnect.
        stack.start_edge(
            EDGE,
            [str(link)],
            status_interval_s=3600,
            outbox={"max_rows": 50, "pressure_pct": 80},
        )
        edge = stack.edges[EDGE]
        async with api(stack) as client:
            await wait_until(lambda: edge_info(client), 30, message="edge status at the hub")
            assert stack.broker is not None
            port = stack.broker.port
            stack.broker.kill()
            await wait_until(
                lambda: "lost" in edge.log_text(), 10, message="edge noticed the broker is gone"
            )
            tele, sos_button = bus.button(TELEMETRY_BUTTON), bus.button(SOS_BUTTON)
            beats = [tele.heartbeat(80) for _ in range(60)]
            sos = sos_button.press_sos()
            beats += [tele.heartbeat(80) for _ in range(40)]
            await wait_until(
                lambda: not tele.pending_seqs and not sos_button.pending_seqs,
                30,
                message="all 101 frames stored (link-acked)",
            )

            stack.broker = MosquittoProcess(stack.workdir / "broker2", port).start()

            async def dropped_at_hub() -> dict[str, Any] | None:
                info = await edge_info(client)
                return info if info.get("dropped", {}).get("telemetry") == 51 else None

            info = await wait_until(dropped_at_hub, 60, message="drop count at the hub")
            assert info["dropped"]["normal"] == 0
            await wait_until(
                lambda: query(stack, "SELECT 1 FROM events WHERE kind = 'sos'"),
                30,
                message="the SOS at the hub",
            )
            kept = {b.seq for b in beats[51:]}  # the 49 newest heartbeats

            def heartbeats_at_hub() -> set[int]:
                rows = query(
                    stack,
                    "SELECT json_extract(data, '$.frame_seq') FROM events "
                    "WHERE device_id = ? AND kind = 'heartbeat'",
                    f"cb100-{TELEMETRY_BUTTON}",
                )
                return {int(s) for (s,) in rows}

            await wait_until(lambda: kept <= heartbeats_at_hub(), 30, message="kept heartbeats")
            assert not heartbeats_at_hub() & {b.seq for b in beats[:51]}, "dropped ones arrived"
            assert sos.seq in {
                int(s)
                for (s,) in query(stack, "SELECT json_extract(data, '$.frame_seq') FROM events")
            }
