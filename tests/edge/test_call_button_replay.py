"""The call-button bus with the real outbox as sink and frame windows (issue #11): a frame
played back after the dedupe window is link-acked but not recorded, and counted; a button
that restarted is taken and flagged. Simulated buttons on a real pty, a real SQLite file;
the outbox's dedupe clock is the test's, so no waiting for the window to pass."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import suppress
from pathlib import Path

import pytest

from edge.codecs.cb100 import FrameType, encode
from edge.drivers.call_button import CallButtonBus
from edge.outbox import Outbox
from edge.transports.serial_port import LinkTiming, SerialLink
from profiles import DeviceProfile
from simulators.button import LedState, SimulatedButtonBus

pytestmark = pytest.mark.integration

DEVICE = "cb100-77626"


def _stored(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return list(db.execute("SELECT kind, data FROM outbox ORDER BY seq"))


async def test_a_replay_is_acked_not_recorded_and_a_restart_is_flagged(
    tmp_path: Path, cb100_profile: DeviceProfile
) -> None:
    offset = [0.0]  # added to the outbox's clocks: the dedupe window passes at once
    outbox = Outbox(
        tmp_path / "o.db",
        wall_clock=lambda: time.time() + offset[0],
        monotonic=lambda: time.monotonic() + offset[0],
    )
    await outbox.open()
    buttons = SimulatedButtonBus(link_path=tmp_path / "bus0", retransmit_s=0.5)
    button = buttons.add_button(77626, first_seq=300)
    async with buttons:
        timing = LinkTiming(read_timeout_s=0.02, backoff_initial_s=0.01)
        link = SerialLink(str(tmp_path / "bus0"), cb100_profile.transport, timing=timing)
        bus = CallButtonBus(link, cb100_profile, outbox, name="bus0", windows=outbox)
        task = asyncio.create_task(bus.run())
        try:
            sos = button.press_sos()
            await buttons.wait_for(lambda: button.state is LedState.SENT, 10)

            def acks() -> int:
                return sum(1 for f in button.received if f.type == FrameType.LINK_ACK)

            # within the dedupe window a copy is a retransmission
            before = acks()
            buttons.write(encode(sos))
            await buttons.wait_for(lambda: acks() > before, 10)
            assert bus.stats()["replays"] == 0
            # past it, the same bytes are a replay: acked, counted, not recorded
            offset[0] = 3600.0
            before = acks()
            buttons.write(encode(sos))
            await buttons.wait_for(lambda: acks() > before, 10)
            stats = bus.stats()
            assert (stats["replays"], stats["errors"].get("replay")) == (1, 1)
            assert stats["devices"][DEVICE]["replays"] == 1
            assert [kind for kind, _ in _stored(tmp_path / "o.db")] == ["sos"]

            # the button lost power and counts from 0 again: its SOS is taken, flagged
            button.stop()
            restarted = buttons.add_button(77626, first_seq=0)
            restarted.press_sos()
            await buttons.wait_for(lambda: restarted.state is LedState.SENT, 10)
            rows = _stored(tmp_path / "o.db")
            assert [kind for kind, _ in rows] == ["sos", "sos"]
            assert '"seq_restart": true' in rows[1][1]
            assert bus.stats()["seq_restarts"] == 1
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            await outbox.close()
