"""What every device driver offers the agent, and how a configured device is described.

A driver owns one family of devices on one transport (a CB-100 bus, a Modbus RTU bus, the
Modbus TCP devices of the edge, the MQTT devices on the local broker). The agent starts
each driver's :meth:`DeviceDriver.run` in its task group and routes hub commands to the
driver that :meth:`DeviceDriver.knows` the device. A driver never ends on a device error:
a dead device is reported offline through :class:`edge.supervision.Supervisor` and retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from contract.envelope import CommandStatus
from edge.command_deadline import CommandDeadline
from profiles.model import DeviceProfile

#: What became of a command: the contract's status and a human-readable detail.
CommandOutcome = tuple[CommandStatus, str]


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """One device of the installation: which profile, and where to find it.

    ``address`` is what the device answers to on its transport: a Modbus unit id, a
    12-digit DL/T 645 meter address, an MQTT device's topic name. ``port`` is the serial
    device of an RS-485 bus, or the TCP port of a Modbus TCP device (then with ``host``).
    """

    device_id: str
    profile: DeviceProfile
    address: str
    port: str | None = None
    host: str | None = None


class DeviceDriver(Protocol):
    name: str

    def knows(self, device_id: str) -> bool: ...

    async def run(self) -> None:
        """Run until cancelled; device errors never end it."""
        ...

    async def command(
        self,
        device_id: str,
        name: str,
        args: dict[str, Any],
        *,
        deadline: CommandDeadline | None = None,
    ) -> CommandOutcome:
        """Carry out one hub command on one device and say what became of it. Past
        ``deadline`` at the moment it would go on the bus or to the device: ``expired``,
        and nothing is sent."""
        ...

    def stats(self) -> dict[str, Any]: ...
