"""One RS-485 bus of Modbus RTU devices, driven as a scheduled resource.

Why a scheduler rather than a loop per device: the devices share one half-duplex pair and
one master, so exactly one request may be on the wire at a time, followed by the 3.5
character silence that ends an RTU frame. The :class:`BusScheduler` gives that, runs hub
commands ahead of due polls, and backs off from a device that stops answering (or answers
with exceptions or bad CRCs) so that its timeouts do not eat the bus time of the others.
What a poll reads and records is :mod:`edge.drivers.modbus`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import tzinfo
from typing import Any

from edge.drivers.base import DeviceEntry
from edge.drivers.modbus import Liveness, ModbusDevice, ModbusDriverBase, devices_from_entries
from edge.sink import EventSink
from edge.transports.bus_scheduler import BusScheduler
from edge.transports.modbus_client import ModbusLink, RtuLink
from edge.transports.serial_port import LineSettings, SerialLine
from profiles.transports import ModbusRtuTransport

DEFAULT_LINE = LineSettings(baudrate=9600)  # Modbus RTU's usual 9600 8N1


def frame_gap_s(line: SerialLine) -> float:
    """The Modbus RTU inter-frame silence: 3.5 characters (11 bits each), 1.75 ms above
    19200 baud as the serial line specification fixes it."""
    if line.baudrate > 19_200:
        return 0.00175
    return 3.5 * 11 / line.baudrate


class ModbusRtuDriver(ModbusDriverBase):
    """The devices on one serial port. Run it with :meth:`run`."""

    def __init__(
        self,
        link: ModbusLink,
        devices: Iterable[ModbusDevice],
        sink: EventSink,
        supervisor: Liveness,
        *,
        inter_frame_gap_s: float = 0.004,
        backoff_s: float = 2.0,
        backoff_max_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_pending: int = 1000,
        poll_at_start: bool = False,
    ) -> None:
        super().__init__(
            link.name,
            devices,
            sink,
            supervisor,
            max_pending=max_pending,
            clock=clock,
            poll_at_start=poll_at_start,
        )
        self.link = link
        self.bus = BusScheduler(
            link.name,
            inter_frame_gap_s=inter_frame_gap_s,
            timeout_s=max((d.timeout_s for d in self.devices.values()), default=0.5) * 4,
            backoff_s=backoff_s,
            backoff_max_s=backoff_max_s,
            on_state=self._on_state,
            clock=clock,
        )
        for device in self.devices.values():
            self.bus.set_offline_after(device.device_id, device.offline_after)
            self._add_polls(device, clock=clock)

    @classmethod
    def on_serial_port(
        cls,
        port: str,
        devices: Iterable[ModbusDevice],
        sink: EventSink,
        supervisor: Liveness,
        *,
        line: SerialLine = DEFAULT_LINE,
        inter_frame_gap_s: float | None = None,
        **kwargs: Any,
    ) -> ModbusRtuDriver:
        """A driver for the devices on ``port`` (``/dev/ttyUSB1``) with these line settings."""
        gap = frame_gap_s(line) if inter_frame_gap_s is None else inter_frame_gap_s
        return cls(RtuLink(port, line), devices, sink, supervisor, inter_frame_gap_s=gap, **kwargs)

    @classmethod
    def from_entries(
        cls,
        port: str,
        entries: Sequence[DeviceEntry],
        sink: EventSink,
        supervisor: Liveness,
        *,
        timezone: tzinfo | str | None = None,
        **kwargs: Any,
    ) -> ModbusRtuDriver:
        """The driver of the bus on ``port`` for its configured devices (``modbus-rtu``
        profiles; the device plan has checked that they share one line setting)."""
        if not entries:
            raise ValueError(f"{port}: no devices")
        transport = entries[0].profile.transport
        if not isinstance(transport, ModbusRtuTransport):
            raise TypeError(f"{port}: {entries[0].device_id} is not a modbus-rtu device")
        return cls.on_serial_port(
            port,
            devices_from_entries(entries, timezone=timezone),
            sink,
            supervisor,
            line=transport,
            inter_frame_gap_s=transport.frame_gap_s,
            **kwargs,
        )

    def _scheduler(self, device_id: str) -> BusScheduler:
        return self.bus

    def _link(self, device_id: str) -> ModbusLink:
        return self.link

    async def run(self) -> None:
        """Poll until cancelled; device and port errors never end it."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.bus.run(), name=f"{self.name} bus")
                group.create_task(self._record_results(), name=f"{self.name} recorder")
        finally:
            self.bus.close()
            self.link.close()

    def stats(self) -> dict[str, Any]:
        base = super().stats()
        base.update(
            {
                "link_open": bool(getattr(self.link, "is_open", True)),
                "transactions": self.bus.transactions,
                "busy_s": round(self.bus.busy_s, 3),
            }
        )
        return base
