"""CallButtonBus end to end on a real pty: simulated CB-100 buttons → SerialLink → decoder →
profile → a fake outbox, and link acks and feedback back to the buttons' LEDs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from contract import Lane
from edge.codecs.cb100 import Frame, FrameType, encode
from edge.drivers.call_button import CallButtonBus
from edge.errors import DeviceError
from edge.transports.serial_port import LinkTiming, SerialLink
from profiles import DeviceProfile
from simulators.button import LedState, SimulatedButton, SimulatedButtonBus
from tests.edge.conftest import FakeSink, RecordedEvent, eventually

pytestmark = pytest.mark.integration

DEVICE = "cb100-77626"


@asynccontextmanager
async def line(
    tmp_path: Path,
    profile: DeviceProfile,
    sink: FakeSink,
    *,
    serials: tuple[int, ...] = (77626,),
    retransmit_s: float = 5.0,
    read_timeout_s: float = 0.02,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[tuple[SimulatedButtonBus, CallButtonBus]]:
    """Buttons on a pty behind ``tmp_path/bus0`` and a running bus on the edge side."""
    buttons = SimulatedButtonBus(link_path=tmp_path / "bus0", retransmit_s=retransmit_s)
    for serial in serials:
        buttons.add_button(serial, first_seq=7)
    async with buttons:
        timing = LinkTiming(read_timeout_s=read_timeout_s, backoff_initial_s=0.01)
        link = SerialLink(str(tmp_path / "bus0"), profile.transport, timing=timing)
        bus = CallButtonBus(link, profile, sink, name="bus0", clock=clock)
        task = asyncio.create_task(bus.run())
        try:
            await eventually(lambda: link.is_open, what="edge opened the port")
            yield buttons, bus
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


def in_state(button: SimulatedButton, state: LedState) -> Callable[[], bool]:
    return lambda: button.state is state


def acks(button: SimulatedButton) -> list[Frame]:
    return [f for f in button.received if f.type == FrameType.LINK_ACK]


async def test_sos_is_recorded_then_acked(
    tmp_path: Path, cb100_profile: DeviceProfile, fake_sink: FakeSink
) -> None:
    async with line(tmp_path, cb100_profile, fake_sink, read_timeout_s=2.0) as (buttons, bus):
        button = buttons.button(77626)
        pressed = time.monotonic()
        sos = button.press_sos()
        await eventually(lambda: fake_sink.events, what="SOS in the outbox")
        # The reader must not wait for its 2 s read timeout before handing bytes over.
        assert time.monotonic() - pressed < 0.5
        await buttons.wait_for(lambda: button.state is LedState.SENT)
        assert fake_sink.events == [
            RecordedEvent(DEVICE, "sos", Lane.ALARM, {"frame_seq": 7}, f"{DEVICE}:7")
        ]
        assert sos.seq == 7
        assert button.received == [Frame(77626, 7, FrameType.LINK_ACK)]
        assert button.led_history == [LedState.CALLING, LedState.SENT]
        stats = bus.stats()
        assert stats["frames_ok"] == 1
        assert stats["devices"][DEVICE]["frames_ok"] == 1
        assert stats["devices"][DEVICE]["last_seen"].endswith("Z")
        assert bus.knows(DEVICE)
        assert bus.known_devices == {DEVICE: 77626}


async def test_lost_ack_means_one_event_and_another_ack(
    tmp_path: Path, cb100_profile: DeviceProfile, fake_sink: FakeSink
) -> None:
    async with line(tmp_path, cb100_profile, fake_sink, retransmit_s=0.2) as (buttons, bus):
        button = buttons.button(77626)
        button.ignore_acks = 1  # the first ack is lost on the line
        button.press_sos()
        await buttons.wait_for(lambda: button.state is LedState.SENT)
        # Normally one retransmission; a loaded machine may send more. Every copy after
        # the first is a duplicate; only the first is stored; each record is acked.
        await eventually(lambda: bus.stats()["duplicates"] == len(button.sent) - 1)
        assert len(button.sent) >= 2
        assert fake_sink.kinds() == ["sos"]
        assert len(acks(button)) == len(fake_sink.calls) >= 2
        assert {f.seq for f in acks(button)} == {7}


async def test_no_ack_before_the_outbox_has_the_event(
    tmp_path: Path, cb100_profile: DeviceProfile, fake_sink: FakeSink
) -> None:
    fake_sink.gate = asyncio.Event()  # a slow disk
    async with line(tmp_path, cb100_profile, fake_sink, retransmit_s=0.05) as (buttons, bus):
        button = buttons.button(77626)
        button.press_sos()
        await eventually(lambda: bus.stats()["duplicates"] >= 2, what="copies in flight")
        assert button.state is LedState.CALLING
        assert button.received == []
        assert len(fake_sink.calls) == 1  # a copy of a frame in flight is not recorded again
        fake_sink.gate.set()
        await buttons.wait_for(lambda: button.state is LedState.SENT)
        assert fake_sink.kinds() == ["sos"]
        assert {f.seq for f in acks(button)} == {7}


async def test_records_overlap_and_start_in_frame_order(
    tmp_path: Path, cb100_profile: DeviceProfile, fake_sink: FakeSink
) -> None:
    # The outbox commits telemetry in groups; a bus that awaited each record before the
    # next would manage one frame per group-commit interval.
    fake_sink.gate = asyncio.Event()
    async with line(tmp_path, cb100_profile, fake_sink) as (buttons, _):
        button = buttons.button(77626)
        sent = [button.heartbeat(50 + i) for i in range(10)]
        await eventually(lambda: len(fake_sink.calls) == 10, what="ten records in flight")
        assert [c.data["frame_seq"] for c in fake_sink.calls] == [f.seq for f in sent]
        assert button.received == []
        fake_sink.gate.set()
        await buttons.wait_for(lambda: not button.pending_seqs)
        assert sorted(f.seq for f in acks(button)) == [f.seq for f in sent]
        assert [e.data["battery_pct"] for e in fake_sink.events] == list(range(50, 60))


async def test_outbox_failure_is_not_acked_and_the_retransmission_is_stored(
    tmp_path: Path, cb100_profile: DeviceProfile, fake_sink: FakeSink
) -> None:
    fake_sink.fail_next = 1
    async with line(tmp_path, cb100_profile, fake_sink, retransmit_s=0.05) as (buttons, bus):
        button = buttons.button(77626)
        button.press_sos()
        await buttons.wait_for(lambda: button.state is LedState.SENT)
        # The first copy was refused and not acked; every later copy is acked.
        await buttons.wait_for(lambda: len(acks(button)) == len(button.sent) - 1)
        assert fake_sink.kinds() == ["sos"]
        assert bus.stats()["errors"] == {"outbox": 1}
        assert bus.stats()["devices"][DEVICE]["errors"] == {"outbox": 1}


async def test_garbage_and_crc_errors_are_counted_and_later_frames_decode(
    tmp_path: Path, cb100_profile: DeviceProfile, fake_sink: FakeSink
) -> None:
    async with line(tmp_path, cb100_profile, fake_sink) as (buttons, bus):
        button = buttons.button(77626)
        button.press_sos()
        await buttons.wait_for(lambda: button.state is LedState.SENT)
        noise = buttons.inject_garbage(20, seed=1)
        broken = buttons.inject_crc_error(77626)
        button.heartbeat(87)
        await eventually(lambda: "heartbeat" in fake_sink.kinds(), what="heartbeat")
        assert fake_sink.events[-1].data == {"frame_seq": 8, "battery_pct": 87}
        stats = bus.stats()
        assert stats["bad_frames"] == {"crc": 1}
        assert stats["garbage_bytes"] == len(noise) + len(broken)
        assert stats["devices"][DEVICE]["errors"] == {"crc": 1}
        assert stats["frames_ok"] == 2


async def test_feedback_walks_the_led_through_a_case(
    tmp_path: Path, cb100_profile: DeviceProfile, fake_sink: FakeSink
) -> None:
    async with line(tmp_path, cb100_profile, fake_sink) as (buttons, bus):
        button = buttons.button(77626)
        sos = button.press_sos()
        await buttons.wait_for(lambda: button.state is LedState.SENT)
        for code, state in [
            ("received", LedState.RECEIVED),
            ("help_coming", LedState.HELP_COMING),
            ("case_closed", LedState.CLOSED),
        ]:
            await bus.send_feedback(DEVICE, code, sos.seq)
            await buttons.wait_for(in_state(button, state))
        assert button.led_history == [
            LedState.CALLING,
            LedState.SENT,
            LedState.RECEIVED,
            LedState.HELP_COMING,
            LedState.CLOSED,
        ]
        assert bus.stats()["feedback_sent"] == 3


async def test_feedback_errors(
    tmp_path: Path, cb100_profile: DeviceProfile, fake_sink: FakeSink
) -> None:
    async with line(tmp_path, cb100_profile, fake_sink) as (buttons, bus):
        with pytest.raises(DeviceError, match="no device 'cb100-77626'"):
            await bus.send_feedback(DEVICE, "received", 7)
        button = buttons.button(77626)
        button.presence()
        await eventually(lambda: bus.knows(DEVICE), what="device seen")
        with pytest.raises(DeviceError, match="code must be one of"):
            await bus.send_feedback(DEVICE, "thanks", 7)


async def test_unmappable_frame_is_counted_and_not_acked(
    tmp_path: Path, cb100_profile: DeviceProfile, fake_sink: FakeSink
) -> None:
    async with line(tmp_path, cb100_profile, fake_sink) as (buttons, bus):
        button = buttons.button(77626)
        button.request_service(12)  # categories are 1..11
        await eventually(lambda: bus.stats()["errors"], what="mapping error counted")
        assert bus.stats()["errors"] == {"out_of_range": 1}
        button.request_service(3)
        await buttons.wait_for(lambda: button.state is LedState.SENT)
        assert [e.data for e in fake_sink.events] == [{"frame_seq": 8, "category": 3}]
        assert [f.seq for f in acks(button)] == [8]


async def test_downlink_frames_on_the_bus_are_ignored(
    tmp_path: Path, cb100_profile: DeviceProfile, fake_sink: FakeSink
) -> None:
    async with line(tmp_path, cb100_profile, fake_sink) as (buttons, bus):
        buttons.write(encode(Frame(77626, 3, FrameType.LINK_ACK)))
        buttons.write(encode(Frame(77626, 3, FrameType.HELP_COMING)))
        await eventually(lambda: bus.stats()["downlink_ignored"] == 2, what="ignored")
        assert fake_sink.calls == []
        assert not bus.knows(DEVICE)


async def test_two_buttons_share_one_bus(
    tmp_path: Path, cb100_profile: DeviceProfile, fake_sink: FakeSink
) -> None:
    async with line(tmp_path, cb100_profile, fake_sink, serials=(77626, 77627)) as (buttons, _):
        first, second = buttons.button(77626), buttons.button(77627)
        first.press_sos()
        second.fall()
        await buttons.wait_for(
            lambda: first.state is LedState.SENT and second.state is LedState.SENT
        )
        assert sorted((e.device_id, e.kind) for e in fake_sink.events) == [
            ("cb100-77626", "sos"),
            ("cb100-77627", "fall"),
        ]
        assert acks(first) == [Frame(77626, 7, FrameType.LINK_ACK)]
        assert acks(second) == [Frame(77627, 7, FrameType.LINK_ACK)]


async def test_bad_input_is_logged_at_most_once_per_device_per_minute(
    tmp_path: Path,
    cb100_profile: DeviceProfile,
    fake_sink: FakeSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    caplog.set_level(logging.WARNING, logger="edge.drivers.call_button")
    async with line(tmp_path, cb100_profile, fake_sink, clock=lambda: now[0]) as (buttons, bus):
        button = buttons.button(77626)
        button.presence()
        await eventually(lambda: bus.knows(DEVICE), what="device seen")

        def device_crc_errors() -> int:
            return int(bus.stats()["devices"][DEVICE]["errors"].get("crc", 0))

        async def crc_errors(count: int) -> None:
            # The device's count is kept on the event loop with the log line; the decoder's
            # own count (bad_frames) runs ahead of both, in the serial reader thread.
            target = device_crc_errors() + count
            for _ in range(count):
                buttons.inject_crc_error(77626)
            await eventually(lambda: device_crc_errors() == target)

        def logged() -> list[Any]:
            return [r for r in caplog.records if "bad frame" in r.getMessage()]

        await crc_errors(3)
        assert len(logged()) == 1
        now[0] += 61
        await crc_errors(2)
        assert len(logged()) == 2
        assert bus.stats()["devices"][DEVICE]["errors"] == {"crc": 5}


async def test_bus_survives_the_adapter_being_replugged(
    tmp_path: Path, cb100_profile: DeviceProfile, fake_sink: FakeSink
) -> None:
    async with line(tmp_path, cb100_profile, fake_sink) as (buttons, bus):
        button = buttons.button(77626)
        await buttons.replug()
        await eventually(
            lambda: bus.stats()["reopen_count"] == 1 and bus.stats()["link_open"],
            what="the edge reopened the port",
        )
        button.press_sos()
        await buttons.wait_for(lambda: button.state is LedState.SENT)
        assert fake_sink.kinds() == ["sos"]
