"""Simulated CB-100 call buttons on a real pseudo-terminal, for tests, demos and debugging.

Why a pty rather than a fake transport: the edge opens it exactly like /dev/ttyUSB0, so the
real :class:`edge.transports.serial_port.SerialLink`, its reader thread and its reopen logic
are exercised end to end. The buttons behave like the firmware: every frame is resent every
``retransmit_s`` until its 0x80 link ack arrives, and the LED shows the resident what became
of a call. Everything seen and done is kept in lists that tests can wait on.
"""

from __future__ import annotations

import asyncio
import os
import random
import tty
from collections.abc import Callable, Iterable
from contextlib import suppress
from enum import StrEnum
from pathlib import Path
from types import TracebackType

from edge.codecs.cb100 import Frame, FrameDecoder, FrameType, encode

MAX_PENDING_OUTPUT = 65_536  # bytes queued for an edge that is not reading; older ones drop


class LedState(StrEnum):
    IDLE = "idle"
    CALLING = "calling"  # sent, no link ack yet
    SENT = "sent"  # 0x80 link ack: the edge has it
    RECEIVED = "received"  # 0x81: received by the centre
    HELP_COMING = "help_coming"  # 0x82
    CLOSED = "closed"  # 0x83
    ARE_YOU_OK = "are_you_ok"  # 0x84: the wellbeing watch asks; a check-in press answers


#: What the resident sees, in Chinese and English.
LED_TEXT: dict[LedState, tuple[str, str]] = {
    LedState.IDLE: ("待机", "idle"),
    LedState.CALLING: ("正在呼叫", "calling"),
    LedState.SENT: ("呼叫已送达网关", "delivered to the gateway"),
    LedState.RECEIVED: ("求助已被中心收到", "received by the centre"),
    LedState.HELP_COMING: ("救助人员正在赶来", "help is coming"),
    LedState.CLOSED: ("工单已关闭", "case closed"),
    LedState.ARE_YOU_OK: ("您还好吗？请按绿键", "are you OK? press the green key"),
}
_FEEDBACK = {
    FrameType.RECEIVED: LedState.RECEIVED,
    FrameType.HELP_COMING: LedState.HELP_COMING,
    FrameType.CASE_CLOSED: LedState.CLOSED,
    FrameType.ARE_YOU_OK: LedState.ARE_YOU_OK,
}
_CALLS = {FrameType.SOS, FrameType.SERVICE_REQUEST, FrameType.CANCEL, FrameType.FALL}


class SimulatedButton:
    """One button. Its methods send a frame at once and return it (seq included)."""

    def __init__(self, serial: int, bus: SimulatedButtonBus, *, first_seq: int = 0) -> None:
        self.serial = serial
        self.battery = 100
        self.state = LedState.IDLE
        self.led_history: list[LedState] = []  # every change, in order
        self.prompts = 0  # "are you OK?" prompts (0x84) received
        self.answers_prompts = False  # press the green key (0x08) when asked
        self.sent: list[Frame] = []  # every transmission, retransmissions included
        self.received: list[Frame] = []  # every frame from the edge addressed to us
        self.retransmissions = 0
        self.ignore_acks = 0  # pretend the next N link acks were lost on the line
        self._bus = bus
        self._next_seq = first_seq & 0xFFFF
        self._calls: set[int] = set()
        self._current_call: int | None = None
        self._pending: dict[int, asyncio.Task[None]] = {}

    def press_sos(self) -> Frame:
        return self._send(FrameType.SOS)

    def request_service(self, category: int) -> Frame:
        return self._send(FrameType.SERVICE_REQUEST, bytes([category]))

    def cancel(self) -> Frame:
        return self._send(FrameType.CANCEL)

    def presence(self) -> Frame:
        return self._send(FrameType.PRESENCE)

    def check_in(self) -> Frame:
        """The daily "I'm OK" (报平安, frame type 0x08); also the answer to a prompt."""
        frame = self._send(FrameType.CHECK_IN)
        if self.state is LedState.ARE_YOU_OK:
            self._set_state(LedState.IDLE)
        return frame

    def heartbeat(self, battery: int | None = None) -> Frame:
        self.battery = self.battery if battery is None else battery
        return self._send(FrameType.HEARTBEAT, bytes([self.battery]))

    def low_battery(self, battery: int) -> Frame:
        self.battery = battery
        return self._send(FrameType.LOW_BATTERY, bytes([battery]))

    def fall(self) -> Frame:
        return self._send(FrameType.FALL)

    @property
    def pending_seqs(self) -> set[int]:
        """Seqs still waiting for their link ack."""
        return set(self._pending)

    def _send(self, frame_type: FrameType, payload: bytes = b"") -> Frame:
        frame = Frame(self.serial, self._next_seq, frame_type, payload)
        self._next_seq = (self._next_seq + 1) & 0xFFFF
        self._transmit(frame)
        if frame_type in _CALLS:
            self._calls.add(frame.seq)
            self._current_call = frame.seq
            self._set_state(LedState.CALLING)
        self._pending[frame.seq] = asyncio.create_task(
            self._retransmit(frame), name=f"button {self.serial} seq {frame.seq}"
        )
        return frame

    def _transmit(self, frame: Frame) -> None:
        self.sent.append(frame)
        self._bus.write(encode(frame))

    async def _retransmit(self, frame: Frame) -> None:
        while True:
            await asyncio.sleep(self._bus.retransmit_s)
            self.retransmissions += 1
            self._transmit(frame)

    def handle(self, frame: Frame) -> None:
        """A frame from the edge addressed to this button."""
        self.received.append(frame)
        if frame.type == FrameType.LINK_ACK:
            if self.ignore_acks > 0:
                self.ignore_acks -= 1
                return
            task = self._pending.pop(frame.seq, None)
            if task is not None:
                task.cancel()
            if frame.seq == self._current_call and self.state is LedState.CALLING:
                self._set_state(LedState.SENT)
        elif frame.type == FrameType.ARE_YOU_OK:  # asked, not answering any call of ours
            self.prompts += 1
            self._set_state(LedState.ARE_YOU_OK)
            if self.answers_prompts:
                self.check_in()
        elif frame.type in _FEEDBACK and frame.seq in self._calls:
            self._set_state(_FEEDBACK[FrameType(frame.type)])

    def _set_state(self, state: LedState) -> None:
        self.state = state
        self.led_history.append(state)
        self._bus.led_changed(self, state)

    def stop(self) -> None:
        for task in self._pending.values():
            task.cancel()
        self._pending.clear()


class SimulatedButtonBus:
    """A pty that looks like a serial bus with CB-100 buttons on it. Use ``async with``."""

    def __init__(
        self,
        serials: Iterable[int] = (),
        *,
        link_path: str | Path | None = None,
        retransmit_s: float = 5.0,
        heartbeat_s: float | None = None,
        on_led_change: Callable[[SimulatedButton, LedState], None] | None = None,
    ) -> None:
        self.retransmit_s = retransmit_s
        self.heartbeat_s = heartbeat_s
        self.link_path = Path(link_path) if link_path is not None else None
        self.buttons: dict[int, SimulatedButton] = {}
        self.received: list[Frame] = []  # every frame from the edge
        self.decoder = FrameDecoder()
        self._on_led_change = on_led_change
        self._master = -1
        self._slave = -1
        self._output = bytearray()
        self._heartbeats: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        for serial in serials:
            self.add_button(serial)

    @property
    def slave_path(self) -> str:
        if self._slave < 0:
            raise RuntimeError("the simulated bus is not started")
        return os.ttyname(self._slave)

    def add_button(self, serial: int, *, first_seq: int = 0) -> SimulatedButton:
        button = SimulatedButton(serial, self, first_seq=first_seq)
        self.buttons[serial] = button
        return button

    def button(self, serial: int) -> SimulatedButton:
        return self.buttons[serial]

    async def __aenter__(self) -> SimulatedButtonBus:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        self._open_pty()
        if self.heartbeat_s is not None:
            self._heartbeats = asyncio.create_task(self._send_heartbeats(self.heartbeat_s))

    async def replug(self) -> None:
        """The adapter is unplugged and plugged in again: a new pty behind the same link."""
        self._close_pty()
        self._open_pty()

    async def close(self) -> None:
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            with suppress(asyncio.CancelledError):
                await self._heartbeats
        for button in self.buttons.values():
            button.stop()
        self._close_pty()
        if self.link_path is not None and self.link_path.is_symlink():
            self.link_path.unlink()

    def write(self, data: bytes) -> None:
        """Put bytes on the line (queued while the edge is not reading)."""
        self._output += data
        del self._output[: max(0, len(self._output) - MAX_PENDING_OUTPUT)]
        self._flush()

    def inject_garbage(self, count: int, seed: int | None = None) -> bytes:
        """``count`` noise bytes without 0xAA, so they can never look like a header."""
        rng = random.Random(seed)  # test noise, not cryptography
        noise = bytes(rng.choice([b for b in range(256) if b != 0xAA]) for _ in range(count))
        self.write(noise)
        return noise

    def inject_crc_error(self, serial: int) -> bytes:
        """A heartbeat from ``serial`` whose checksum is wrong (not retransmitted)."""
        button = self.buttons.get(serial)
        battery = button.battery if button is not None else 100
        frame = bytearray(encode(Frame(serial, 0xFFFF, FrameType.HEARTBEAT, bytes([battery]))))
        frame[-1] ^= 0xFF
        self.write(bytes(frame))
        return bytes(frame)

    async def wait_for(self, predicate: Callable[[], bool], within_s: float = 5.0) -> None:
        """Wait until ``predicate()`` holds; it is re-checked after every frame and LED change.
        Raises TimeoutError after ``within_s``."""
        try:
            async with asyncio.timeout(within_s):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"condition not met within {within_s} s") from None

    def led_changed(self, button: SimulatedButton, state: LedState) -> None:
        if self._on_led_change is not None:
            self._on_led_change(button, state)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _open_pty(self) -> None:
        self._master, self._slave = os.openpty()  # we keep the slave open: no EIO on master
        tty.setraw(self._master)  # on Linux this sets the line discipline of the pair
        os.set_blocking(self._master, False)
        asyncio.get_running_loop().add_reader(self._master, self._on_readable)
        if self.link_path is not None:
            self.link_path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.link_path.with_name(f".{self.link_path.name}.{os.getpid()}")
            with suppress(FileNotFoundError):
                temporary.unlink()
            temporary.symlink_to(self.slave_path)
            temporary.replace(self.link_path)  # atomic: the edge never sees no link

    def _close_pty(self) -> None:
        if self._master < 0:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._master)
        loop.remove_writer(self._master)
        os.close(self._master)
        os.close(self._slave)
        self._master = self._slave = -1
        self._output.clear()

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            asyncio.get_running_loop().remove_reader(self._master)
            return
        for frame in self.decoder.feed(data):
            self.received.append(frame)
            button = self.buttons.get(frame.device_serial)
            if button is not None:
                button.handle(frame)
        self._notify()

    def _flush(self) -> None:
        if self._master < 0 or not self._output:
            return
        try:
            written = os.write(self._master, self._output)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:
            written = len(self._output)  # nobody on the line: the bytes are lost, as on a wire
        del self._output[:written]
        loop = asyncio.get_running_loop()
        if self._output:
            loop.add_writer(self._master, self._flush)
        else:
            loop.remove_writer(self._master)

    async def _send_heartbeats(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for button in self.buttons.values():
                button.heartbeat()
