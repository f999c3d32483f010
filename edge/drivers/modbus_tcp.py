"""Modbus TCP devices, polled concurrently with a bound on requests in flight.

Why one connection per host:port and one scheduler per connection: a Modbus TCP device
(or a TCP-to-RTU gateway with many unit ids behind it) usually serves one request at a
time, so requests to one endpoint are serialised (and hub commands go first), while
different endpoints are polled at the same time. A shared :class:`asyncio.Semaphore`
(``max_in_flight``, 32 by default) bounds the requests in flight across the whole edge, so
200 bins polled each second never open 200 simultaneous exchanges. A lost or refused
connection is retried with capped exponential backoff by the link; the scheduler backs off
from each device that keeps failing, and reports it offline. What a poll reads and
records is :mod:`edge.drivers.modbus`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from edge.drivers.base import DeviceEntry
from edge.drivers.modbus import Liveness, ModbusDevice, ModbusDriverBase, devices_from_entries
from edge.sink import EventSink
from edge.transports.bus_scheduler import BusScheduler
from edge.transports.modbus_client import ModbusLink, TcpLink
from profiles.transports import ModbusTcpTransport

DEFAULT_MAX_IN_FLIGHT = 32


def _tcp_link(host: str, port: int, timeout_s: float) -> TcpLink:
    """A link whose connection attempts take no longer than one request may."""
    return TcpLink(host, port, connect_timeout_s=timeout_s)


@dataclass(frozen=True, slots=True)
class TcpDevice:
    """A Modbus device reached at ``host:port`` (its unit id is ``device.unit``)."""

    host: str
    port: int
    device: ModbusDevice


class ModbusTcpDriver(ModbusDriverBase):
    """Every Modbus TCP device of the edge. Run it with :meth:`run`.

    ``link_factory(host, port, timeout_s)`` makes the link of each endpoint (default:
    :class:`TcpLink`); tests pass fakes.
    """

    def __init__(
        self,
        devices: Iterable[TcpDevice],
        sink: EventSink,
        supervisor: Liveness,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        link_factory: Callable[[str, int, float], ModbusLink] | None = None,
        backoff_s: float = 2.0,
        backoff_max_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_pending: int = 1000,
        poll_at_start: bool = False,
    ) -> None:
        targets = list(devices)
        super().__init__(
            "modbus-tcp",
            (t.device for t in targets),
            sink,
            supervisor,
            max_pending=max_pending,
            clock=clock,
            poll_at_start=poll_at_start,
        )
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.max_in_flight = max_in_flight
        self._gate = asyncio.Semaphore(max_in_flight)
        self.links: dict[tuple[str, int], ModbusLink] = {}
        self.schedulers: dict[tuple[str, int], BusScheduler] = {}
        self._endpoint_of: dict[str, tuple[str, int]] = {}
        for target in targets:
            endpoint = (target.host, target.port)
            self._endpoint_of[target.device.device_id] = endpoint
            if endpoint not in self.links:
                self.links[endpoint] = (link_factory or _tcp_link)(
                    target.host, target.port, target.device.timeout_s
                )
                self.schedulers[endpoint] = BusScheduler(
                    f"modbus-tcp {target.host}:{target.port}",
                    inter_frame_gap_s=0.0,
                    timeout_s=target.device.timeout_s * 4,
                    backoff_s=backoff_s,
                    backoff_max_s=backoff_max_s,
                    on_state=self._on_state,
                    clock=clock,
                    gate=self._gate,
                )
        for device in self.devices.values():
            self._scheduler(device.device_id).set_offline_after(
                device.device_id, device.offline_after
            )
            self._add_polls(device, clock=clock)

    @classmethod
    def from_entries(
        cls,
        entries: Sequence[DeviceEntry],
        sink: EventSink,
        supervisor: Liveness,
        *,
        timezone: tzinfo | str | None = None,
        **kwargs: Any,
    ) -> ModbusTcpDriver:
        """The driver of every configured ``modbus-tcp`` device. ``entry.port`` (else the
        profile's) is the TCP port; the in-flight bound is the smallest any profile sets."""
        devices = devices_from_entries(entries, timezone=timezone)
        targets: list[TcpDevice] = []
        bound = DEFAULT_MAX_IN_FLIGHT
        for entry, device in zip(entries, devices, strict=True):
            transport = entry.profile.transport
            if not isinstance(transport, ModbusTcpTransport) or entry.host is None:
                raise ValueError(f"{entry.device_id}: not a modbus-tcp device with a host")
            port = int(entry.port) if entry.port else transport.port
            targets.append(TcpDevice(entry.host, port, device))
            bound = min(bound, transport.max_in_flight)
        kwargs.setdefault("max_in_flight", bound)
        return cls(targets, sink, supervisor, **kwargs)

    def _scheduler(self, device_id: str) -> BusScheduler:
        return self.schedulers[self._endpoint_of[device_id]]

    def _link(self, device_id: str) -> ModbusLink:
        return self.links[self._endpoint_of[device_id]]

    async def run(self) -> None:
        """Poll every endpoint until cancelled; device and network errors never end it."""
        try:
            async with asyncio.TaskGroup() as group:
                for (host, port), scheduler in self.schedulers.items():
                    group.create_task(scheduler.run(), name=f"modbus-tcp {host}:{port}")
                group.create_task(self._record_results(), name="modbus-tcp recorder")
        finally:
            for scheduler in self.schedulers.values():
                scheduler.close()
            for link in self.links.values():
                link.close()

    def stats(self) -> dict[str, Any]:
        base = super().stats()
        base.update(
            {
                "endpoints": len(self.links),
                "max_in_flight": self.max_in_flight,
                "transactions": sum(s.transactions for s in self.schedulers.values()),
            }
        )
        return base
