"""The edge agent: wires profiles, buses, the outbox and the uplink, and runs them.

Start-up validates everything before connecting to anything (profiles, bus → profile
references), opens the outbox (so buffered events from before a crash are forwarded
first), then starts the MQTT connection, the uplink, one task per bus and the status
reporter in one ``asyncio.TaskGroup``. Hub commands (button feedback) are routed to the
bus that last heard the device, and their result is reported back to the hub. Every
command carries a deadline (:mod:`edge.command_deadline`): one that arrives past it, or
would reach the bus or the device past it, ends ``expired`` and is never executed. A
configuration document from the hub (``edge.remote_config``) may replace the buses while
everything else keeps running (:meth:`EdgeAgent.swap_buses`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from contract import Ack, Command, CommandResult, ContractError, EdgeStatus, HubStatus, Lane, topics
from contract.envelope import utc_now
from contract.mqtt import Message, MqttConnection
from edge import command_deadline
from edge.command_deadline import CommandDeadline
from edge.config import ConfigError, EdgeConfig
from edge.device_plan import DevicePlan, plan_devices
from edge.drivers.base import DeviceDriver
from edge.drivers.call_button import CallButtonBus
from edge.drivers.dlt645_meter import Dlt645MeterDriver
from edge.drivers.modbus_rtu import ModbusRtuDriver
from edge.drivers.modbus_tcp import ModbusTcpDriver
from edge.drivers.mqtt_devices import MqttDeviceDriver
from edge.errors import CommandExpired, DeviceError, EdgeError, TransportError
from edge.local_broker import edge_settings
from edge.metrics import EdgeMetrics
from edge.outbox import Outbox
from edge.remote_config import ConfigStore, GatedSink, RemoteConfig
from edge.supervision import Supervisor
from edge.uplink import Uplink
from profiles.config_check import CheckedConfig
from profiles.loader import load_profiles
from profiles.model import DeviceProfile

log = logging.getLogger(__name__)

#: How long a configuration swap waits for a driver's records in flight (a commit takes ms).
SWAP_DRAIN_S = 30.0


def check_buses(config: EdgeConfig, profiles: dict[str, DeviceProfile], source: str) -> None:
    for index, bus in enumerate(config.serial_buses):
        if bus.profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(
                f"{source}: serial_buses[{index}].profile: unknown profile {bus.profile!r} "
                f"(profiles in {config.profiles_dir}: {known})"
            )


def build_drivers(
    plan: DevicePlan, config: EdgeConfig, outbox: Outbox, supervisor: Supervisor
) -> list[DeviceDriver]:
    """The drivers of the configured devices; nothing is opened until they run."""
    drivers: list[DeviceDriver] = []
    tz = config.timezone
    for (codec, port), entries in plan.serial.items():
        if codec == "modbus":
            drivers.append(
                ModbusRtuDriver.from_entries(port, entries, outbox, supervisor, timezone=tz)
            )
        elif codec == "dlt645":
            drivers.append(Dlt645MeterDriver.from_entries(entries, outbox, supervisor, timezone=tz))
        else:
            raise ConfigError(f"devices on {port}: no driver for codec {codec!r}")
    if plan.modbus_tcp:
        drivers.append(
            ModbusTcpDriver.from_entries(plan.modbus_tcp, outbox, supervisor, timezone=tz)
        )
    if plan.mqtt:
        assert config.local_broker is not None  # checked by plan_devices
        drivers.append(
            MqttDeviceDriver(
                # the edge's own password: EDGE__LOCAL_BROKER__PASSWORD, else the store
                # edge.local_broker keeps under the data dir
                edge_settings(config.local_broker, config.data_dir),
                plan.mqtt,
                outbox,
                supervisor,
                client_id=f"edge-{config.edge_id}-devices",
            )
        )
    return drivers


class EdgeAgent:
    def __init__(self, config: EdgeConfig, *, source: str = "edge config") -> None:
        self.config = config
        self.profiles = load_profiles(config.profiles_dir)
        check_buses(config, self.profiles, source)
        self.device_plan = plan_devices(config, self.profiles, source)  # issue #3
        # Set when the status should go out before the next interval: a (re)connect, or a
        # change of buffer pressure / disk-full state (issue #5).
        self._status_due = asyncio.Event()
        self._last_info: dict[str, Any] = {}  # sent with the retained status on connect
        self.outbox = Outbox(
            config.outbox_path,
            group_commit_s=config.uplink.group_commit_ms / 1000,
            settings=config.outbox,
            on_buffer_change=self._status_due.set,
        )
        self.buses: list[CallButtonBus] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = {"bad_messages": 0, "commands": 0, "commands_expired": 0}
        edge_id = config.edge_id
        self._status_topic = topics.status(edge_id)
        # Remote configuration (issue #4): the hub's last known good document, if one was
        # ever applied, says which buses run, whatever the YAML file says.
        self.remote_config = RemoteConfig(
            edge_id,
            ConfigStore(config.config_dir),
            apply=self.swap_buses,
            sink=self.outbox,
            report=self._report_status_now,
        )
        running = self.remote_config.load_last_known_good()
        self._bus_plan: list[tuple[str, DeviceProfile]] = (
            running.bus_plan()
            if running is not None
            else [(b.port, self.profiles[b.profile]) for b in config.serial_buses]
        )
        self._bus_tasks: list[tuple[asyncio.Task[None], GatedSink]] = []
        self._group: asyncio.TaskGroup | None = None
        self._config_topic = topics.config(edge_id)
        self._events_prefix = topics.events(edge_id, Lane.ALARM).rsplit("/", 1)[0] + "/"
        self.mqtt = MqttConnection(
            config.broker,
            client_id=f"edge-{edge_id}",
            subscriptions=[
                (topics.acks(edge_id), 1),
                (topics.commands(edge_id), 1),
                (topics.HUB_STATUS, 1),
                (topics.config(edge_id), 1),
            ],
            on_message=self._on_message,
            on_connection_change=self._on_connection_change,
            persistent_session=True,
            # The uplink resends unacked batches itself, in order, after every reconnect.
            resent_by_owner=lambda topic: topic.startswith(self._events_prefix),
            will=(self._status_topic, self._status(online=False), 1, True),
            on_connect_publish=lambda: [
                (self._status_topic, self._status(True, self._last_info), 1, True)
            ],
        )
        self.uplink = Uplink(self.outbox, self.mqtt, edge_id, config.uplink)
        # Polled and MQTT devices (issue #3): one driver per RS-485 port, one for every
        # Modbus TCP device, one for every MQTT device; liveness through one supervisor.
        self.supervisor = Supervisor(self.outbox)
        self.drivers: list[DeviceDriver] = []  # built in run(): pymodbus needs the loop

    def _status(self, online: bool, info: dict[str, Any] | None = None) -> bytes:
        return EdgeStatus(self.config.edge_id, online, utc_now(), info or {}).encode()

    # -- MQTT callbacks (event loop thread) ----------------------------------------------
    def _on_connection_change(self, connected: bool) -> None:
        self.uplink.on_connection_change(connected)
        if connected:
            self._status_due.set()  # fresh counters (drops, fill level) right after connect

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_message(self, message: Message) -> None:
        try:
            if message.topic == topics.HUB_STATUS:
                self.uplink.on_hub_status(HubStatus.decode(message.payload).online)
            elif message.topic.endswith("/acks"):
                self._spawn(self.uplink.on_ack(Ack.decode(message.payload)))
            elif message.topic.endswith("/commands"):
                command = Command.decode(message.payload)
                self._spawn(self._run_command(command, self._deadline_of(command, message)))
            elif message.topic == self._config_topic:
                self._spawn(self.remote_config.on_message(message.payload))
            else:
                raise ContractError(f"unexpected topic {message.topic!r}")
        except ContractError as err:
            self.stats["bad_messages"] += 1
            log.warning("ignored a bad message on %s: %s", message.topic, err)

    def _deadline_of(self, command: Command, message: Message) -> CommandDeadline:
        """The command's deadline, measured from when paho handed the message over."""
        assert command.deadline is not None and command.ttl_s is not None  # decode checks
        received_mono = message.received or time.monotonic()
        return command_deadline.on_receipt(
            command.deadline,
            command.ttl_s,
            received_mono=received_mono,
            received_wall=time.time() - (time.monotonic() - received_mono),
            tolerance_s=self.config.command_clock_tolerance_s,
        )

    async def _run_command(self, command: Command, deadline: CommandDeadline) -> None:
        self.stats["commands"] += 1
        result: CommandResult
        driver = next((d for d in self.drivers if d.knows(command.device_id)), None)
        if deadline.expired():
            detail = deadline.detail("on arrival at the edge")
            log.warning("command %s on %s: %s", command.name, command.device_id, detail)
            result = CommandResult(command.command_id, command.device_id, "expired", detail)
        elif command.name == "button_feedback":
            result = await self._button_feedback(command, deadline)
        elif driver is not None:
            try:
                status, detail = await driver.command(
                    command.device_id, command.name, command.args, deadline=deadline
                )
            except Exception as err:  # a driver bug must still answer the hub
                log.exception("command %s on %s failed", command.name, command.device_id)
                status, detail = "device_error", f"edge error: {err}"
            result = CommandResult(command.command_id, command.device_id, status, detail)
        else:
            result = CommandResult(
                command.command_id,
                command.device_id,
                "rejected",
                f"device {command.device_id!r} is not configured on this edge",
            )
        if result.status == "expired":
            self.stats["commands_expired"] += 1
        self.mqtt.publish(topics.command_results(self.config.edge_id), result.encode(), qos=1)

    async def _button_feedback(self, command: Command, deadline: CommandDeadline) -> CommandResult:
        code, ref_seq = command.args.get("code"), command.args.get("ref_seq")
        if not isinstance(code, str) or not isinstance(ref_seq, int):
            return CommandResult(
                command.command_id,
                command.device_id,
                "rejected",
                "args need code (str) and ref_seq (int)",
            )
        bus = next((b for b in self.buses if b.knows(command.device_id)), None)
        if bus is None:
            return CommandResult(
                command.command_id,
                command.device_id,
                "device_error",
                "device not heard on any bus of this edge",
            )
        try:
            await bus.send_feedback(command.device_id, code, ref_seq, deadline)
        except CommandExpired as err:
            return CommandResult(command.command_id, command.device_id, "expired", str(err))
        except TransportError as err:
            return CommandResult(command.command_id, command.device_id, "timeout", str(err))
        except DeviceError as err:
            return CommandResult(command.command_id, command.device_id, "device_error", str(err))
        return CommandResult(command.command_id, command.device_id, "ok")

    # -- running --------------------------------------------------------------------------
    async def status_info(self) -> dict[str, Any]:
        return {
            "outbox_depth": await self.outbox.depth(),
            "oldest_unsent_age_s": round(await self.outbox.oldest_age_s(), 3),
            "outbox": dict(self.outbox.stats),
            "uplink": dict(self.uplink.stats),
            "buses": [bus.stats() for bus in self.buses],
            "drivers": {d.name: d.stats() for d in self.drivers},
            "devices_online": self.supervisor.online_count(),
            "bad_messages": self.stats["bad_messages"],
            "commands": dict(self.stats),
            **self.remote_config.status_info(),  # config_version, config_refused (issue #4)
            **await self.outbox.buffer_status(),  # buffer_pressure, fill_pct, dropped, buffer
        }

    async def _report_status(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._status_due.wait(), self.config.status_interval_s)
            except TimeoutError:
                pass
            self._status_due.clear()
            try:
                self._last_info = await self.status_info()
                payload = self._status(True, self._last_info)
            except EdgeError as err:
                log.warning("status report skipped: %s", err)
                continue
            except Exception:  # a status report is never worth the agent: the bus runs on
                log.exception(
                    "status report failed; the next one is in %s s", self.config.status_interval_s
                )
                continue
            self.mqtt.publish(self._status_topic, payload, qos=1, retain=True)

    async def _report_status_now(self) -> None:
        self._status_due.set()

    # -- serial drivers, swappable by remote configuration (issue #4) ----------------------
    def _start_buses(self, plan: list[tuple[str, DeviceProfile]]) -> None:
        assert self._group is not None, "buses run inside run()'s task group"
        for port, profile in plan:
            sink = GatedSink(self.outbox)
            bus = CallButtonBus.on_serial_port(port, profile, sink, windows=self.outbox)
            self.buses.append(bus)
            task = self._group.create_task(bus.run(), name=f"bus {port}")
            self._bus_tasks.append((task, sink))

    async def swap_buses(self, checked: CheckedConfig) -> None:
        """Stop every serial driver and start those of ``checked``; nothing else stops.

        The outbox and the uplink keep running, so every event already recorded goes on
        to the hub. Records in flight finish before a driver is cancelled (``GatedSink``);
        a frame refused meanwhile is not link-acked, so the button resends it to the new
        driver (and the outbox's dedupe acks a copy of one already stored).
        """
        old, self._bus_tasks = self._bus_tasks, []
        drained = await asyncio.gather(*(sink.close(SWAP_DRAIN_S) for _, sink in old))
        if not all(drained):
            log.error(
                "records still in flight after %.0f s; stopping the buses anyway", SWAP_DRAIN_S
            )
        for task, _ in old:
            task.cancel()
        await asyncio.gather(*(task for task, _ in old), return_exceptions=True)
        self.buses = []
        self._bus_plan = checked.bus_plan()
        self._start_buses(self._bus_plan)

    async def run(self) -> None:
        await self.outbox.open()
        log.info(
            "edge %s: outbox %s (incarnation %s), %d bus(es)",
            self.config.edge_id,
            self.config.outbox_path,
            self.outbox.incarnation,
            len(self._bus_plan),
        )
        try:
            await self.mqtt.start()
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self.uplink.run(), name="uplink")
                group.create_task(self._report_status(), name="status")
                if self.config.metrics_port:  # Prometheus on 127.0.0.1 (issue #4)
                    metrics = EdgeMetrics(self).serve(self.config.metrics_port)
                    group.create_task(metrics, name="metrics")
                self._start_buses(self._bus_plan)
                # before the supervisor runs: drivers register their heartbeat watches
                self.drivers = build_drivers(
                    self.device_plan, self.config, self.outbox, self.supervisor
                )
                group.create_task(self.supervisor.run(), name="supervision")
                for driver in self.drivers:
                    group.create_task(driver.run(), name=f"driver {driver.name}")
                self.remote_config.ready()
        finally:
            await self.mqtt.stop(
                final_publish=(self._status_topic, self._status(online=False), 1, True)
            )
            await self.outbox.close()
