"""``python -m simulators community``: a whole community of devices on one machine.

Why: the hub's facility rules (doors, parcels, leaks, full bins, power cuts) only mean
something when many devices of every kind talk through one edge at once, the way a real
community does. This starts the hub broker and the hub (:class:`simulators.stack.Stack`,
seeded with the 示范区 demo community and its two grids), a *local* Mosquitto for the
doors and the parcel locker with one account per device (files written by
:mod:`edge.local_broker`), registers in the hub the households (spread over the demo
grids and a few buildings) and every device, writes the matching edge configuration and
starts the edge:

* one CB-100 call button per household on a pty bus;
* one DL/T 645 electricity meter per household (at most :data:`MAX_METERS`) on a meter
  pty bus;
* one water meter per building on a Modbus RTU bus (a socat pty pair, pymodbus server);
* one bin sensor per building on one Modbus TCP pymodbus server (a unit id each);
* one face-recognition door per building and one parcel locker, over MQTT.

Then it prints what happens (Chinese and English, as ``make demo`` does) and plays the
scenarios (:mod:`simulators.community_scenarios`) until Ctrl-C.

Faster than life, on purpose: the shipped meter profile polls hourly (cron) and doors send
a heartbeat every 30 s, which would make a demo of a power cut take hours. So the edge
loads its own profiles directory, ``<workdir>/profiles``: a copy of ``device_profiles/``
with faster polls and heartbeats (:data:`FAST_PROFILES`); the hub keeps the shipped
profiles (names, events and commands are the same). The hub's time-driven rules run every
second and, for the stuck-water-meter scenario, its night window is set so that it is
"night" from the hub's start for :data:`NIGHT_S` seconds (see :func:`hub_settings`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import secrets
import shutil
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import yaml

from edge.config import EdgeConfig
from edge.device_plan import plan_devices
from edge.local_broker import STORE_PATH, read_passwords, write_local_broker_files
from profiles.loader import load_profiles
from simulators.broker import MosquittoProcess, free_port
from simulators.button import SimulatedButtonBus
from simulators.dlt645_meter import SimulatedMeter, SimulatedMeterBus
from simulators.door import SimulatedDoor
from simulators.locker import SimulatedLocker
from simulators.modbus_devices import BinSensor, DeviceServer, WaterMeter
from simulators.stack import REPO_ROOT, Stack

log = logging.getLogger(__name__)

EDGE_ID = "edge-community"
EDGE_LOCAL_USER = "edge-local"
TZ = ZoneInfo("Asia/Shanghai")
#: Compounds of the two demo grids (first grid, second grid).
SITES = ("幸福里小区", "和平新村")
FIRST_BUILDING_NO = 21  # the seeded demo households live in buildings 3-12
HOUSEHOLDS_PER_BUILDING = 4
MAX_BUILDINGS = 8
MAX_METERS = 24  # one DL/T 645 bus: a real pair carries a few dozen meters
FIRST_BUTTON = 880_001
FIRST_METER = 202_400_000_001
BUTTON_HEARTBEAT_S = 10.0
NIGHT_S = 150.0  # how long the community's "night" lasts from the hub's start
SCENARIOS = ("power-cut", "stuck-meter", "full-bin", "forced-door")

#: Profile changes for a demo that shows in minutes what takes hours in life.
FAST_PROFILES: dict[str, dict[str, Any]] = {
    "dlt645-meter": {"polls": {"every_s": 5}},
    "water-meter": {"polls": {"every_s": 2}, "transport": {"timeout_ms": 1000}},
    "bin-sensor": {"polls": {"every_s": 2}},
    "fr-door": {"supervision": {"heartbeat_interval_s": 3}},
    "parcel-locker": {"supervision": {"heartbeat_interval_s": 5}},
}
DOOR_HEARTBEAT_S = 3.0
LOCKER_HEARTBEAT_S = 5.0


def say(who: str, text: str) -> None:
    stamp = datetime.now(TZ).strftime("%H:%M:%S.%f")[:-3]
    print(f"{stamp}  {who:<10} {text}", flush=True)


# ---- the layout: who lives where, which device is which (no I/O) ------------------------


@dataclass
class HouseholdPlan:
    index: int
    address: str
    grid_id: int
    building: int  # index into Layout.buildings
    button_serial: int
    meter_address: str | None
    lives_alone: bool
    hub_id: int = 0  # set once registered

    @property
    def button_id(self) -> str:
        return f"cb100-{self.button_serial}"

    @property
    def meter_id(self) -> str | None:
        return f"meter-{self.meter_address}" if self.meter_address else None


@dataclass
class BuildingPlan:
    index: int
    name: str  # "幸福里小区21号楼": what the hub's outage grouping reads from addresses
    grid_id: int
    unit: int  # Modbus unit id of its water meter (RTU bus) and bin sensor (TCP server)
    households: list[HouseholdPlan] = field(default_factory=list)

    @property
    def number(self) -> int:
        return FIRST_BUILDING_NO + self.index

    @property
    def door_address(self) -> str:
        return f"b{self.number}-gate"

    @property
    def door_id(self) -> str:
        return f"door-{self.door_address}"

    @property
    def water_meter_id(self) -> str:
        return f"wm-{self.unit}"

    @property
    def bin_id(self) -> str:
        return f"bin-{self.unit}"


@dataclass(frozen=True)
class DeviceSpec:
    """One device as registered in the hub and listed in the edge configuration."""

    id: str
    profile: str
    address: str
    place: str
    bus: str
    building: int | None
    household: HouseholdPlan | None = None
    grid_id: int | None = None


@dataclass
class Layout:
    buildings: list[BuildingPlan]
    households: list[HouseholdPlan]
    locker_address: str = "station-1"
    locker_grid: int = 0

    @property
    def locker_id(self) -> str:
        return f"locker-{self.locker_address}"

    def devices(self) -> list[DeviceSpec]:
        found: list[DeviceSpec] = []
        for h in self.households:
            found.append(
                DeviceSpec(h.button_id, "cb-100", str(h.button_serial), "卧室床头", "rs485-buttons",
                           h.building, h)
            )  # fmt: skip
            if h.meter_address is not None:
                found.append(
                    DeviceSpec(f"meter-{h.meter_address}", "dlt645-meter", h.meter_address,
                               "入户电表箱", "rs485-meters", h.building, h)
                )  # fmt: skip
        for b in self.buildings:
            found += [
                DeviceSpec(b.water_meter_id, "water-meter", str(b.unit), f"{b.name} 地下水表间",
                           "rs485-water", b.index, grid_id=b.grid_id),
                DeviceSpec(b.bin_id, "bin-sensor", str(b.unit), f"{b.name} 楼下垃圾桶",
                           "modbus-tcp", b.index, grid_id=b.grid_id),
                DeviceSpec(b.door_id, "fr-door", b.door_address, f"{b.name} 单元门",
                           "mqtt-local", b.index, grid_id=b.grid_id),
            ]  # fmt: skip
        found.append(
            DeviceSpec(self.locker_id, "parcel-locker", self.locker_address,
                       f"{SITES[0]} 快递驿站", "mqtt-local", None, grid_id=self.locker_grid)
        )  # fmt: skip
        return found

    def building_devices(self, index: int) -> list[DeviceSpec]:
        """What loses power with building ``index`` (its battery call buttons do not)."""
        return [d for d in self.devices() if d.building == index and d.profile != "cb-100"]

    def by_profile(self) -> dict[str, list[DeviceSpec]]:
        grouped: dict[str, list[DeviceSpec]] = {}
        for device in self.devices():
            grouped.setdefault(device.profile, []).append(device)
        return grouped


def plan_layout(
    households: int, grid_ids: Sequence[int], *, max_meters: int = MAX_METERS
) -> Layout:
    """``households`` households in a few buildings, the buildings alternating between the
    grids. Raises ValueError for fewer than 2 households or no grid."""
    if households < 2:
        raise ValueError("--households: at least 2 (two buildings)")
    if not grid_ids:
        raise ValueError("the hub has no grid to put households in")
    count = max(2, min(MAX_BUILDINGS, math.ceil(households / HOUSEHOLDS_PER_BUILDING)))
    buildings = []
    for index in range(count):
        site = index % min(len(SITES), len(grid_ids))
        name = f"{SITES[site]}{FIRST_BUILDING_NO + index}号楼"
        buildings.append(BuildingPlan(index, name, grid_ids[site], unit=index + 1))
    plans = []
    for index in range(households):
        building = buildings[index % count]
        floor, door = divmod(len(building.households), 2)
        address = f"{building.name}1单元{floor + 1}0{door + 1}室"
        meter = f"{FIRST_METER + index:012d}" if index < max_meters else None
        plan = HouseholdPlan(
            index, address, building.grid_id, building.index, FIRST_BUTTON + index, meter,
            lives_alone=index % 3 == 0,
        )  # fmt: skip
        building.households.append(plan)
        plans.append(plan)
    return Layout(buildings, plans, locker_grid=grid_ids[0])


# ---- files ---------------------------------------------------------------------------


def _patch(profile: dict[str, Any], changes: dict[str, Any]) -> None:
    for section, values in changes.items():
        if section == "polls":
            for poll in profile["polls"]:
                poll.pop("cron", None)
                poll.update(values)
        else:
            profile.setdefault(section, {}).update(values)


def write_fast_profiles(dest: Path, source: Path = REPO_ROOT / "device_profiles") -> Path:
    """A copy of ``source`` with the :data:`FAST_PROFILES` changes (comments are lost)."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.yaml")):
        profile = yaml.safe_load(path.read_text(encoding="utf-8"))
        name = profile.get("identity", {}).get("name", path.stem)
        if name in FAST_PROFILES:
            _patch(profile, FAST_PROFILES[name])
            text = "# Demo copy with faster polls (simulators.community)\n"
            text += yaml.safe_dump(profile, allow_unicode=True, sort_keys=False)
            (dest / path.name).write_text(text, encoding="utf-8")
        else:
            shutil.copyfile(path, dest / path.name)
    return dest


def hub_settings(*, night_s: float = NIGHT_S, tick_s: float = 1.0) -> dict[str, Any]:
    """Hub configuration overrides for the community: device rules every ``tick_s``, and,
    where this hub has the settings, a night window starting now and lasting ``night_s``
    and an outage grouping that a building of this simulator can reach."""
    from hub.config import HubConfig  # the hub extra; only a hub-starting caller gets here

    settings: dict[str, Any] = {"device_tick_s": tick_s}
    now = datetime.now(TZ)
    fields = HubConfig.model_fields
    if "facilities" in fields:
        start = (now - timedelta(seconds=30)).time().replace(microsecond=0)
        end = (now + timedelta(seconds=night_s)).time().replace(microsecond=0)
        settings["facilities"] = {
            "night_start": start.isoformat(),
            "night_end": end.isoformat(),
            "night_min_readings": 3,
        }
    if "supervision" in fields:
        settings["supervision"] = {"outage_min_devices": 4, "outage_window_s": 120}
    return settings


def night_configured() -> bool:
    from hub.config import HubConfig

    return "facilities" in HubConfig.model_fields


# ---- the running community -------------------------------------------------------------


class Community:
    """The devices of a :class:`Layout`, registered in the hub and running behind one edge.

    ``await start(client)`` (an API client of the running hub), ``await stop()``. The
    simulators stay reachable for scenarios and tests: :attr:`buttons`, :attr:`meters`,
    :attr:`water`, :attr:`bins`, :attr:`doors` (by building index), :attr:`locker`.
    """

    def __init__(
        self,
        stack: Stack,
        layout: Layout,
        *,
        workdir: Path | None = None,
        edge_id: str = EDGE_ID,
        stuck_building: int | None = None,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.stack = stack
        self.layout = layout
        self.workdir = workdir or stack.workdir / "community"
        self.edge_id = edge_id
        self.stuck_building = stuck_building
        self.on_change = on_change
        self.buttons = SimulatedButtonBus(
            [h.button_serial for h in layout.households],
            link_path=self.workdir / "buttons",
            heartbeat_s=BUTTON_HEARTBEAT_S,
        )
        self.meters = SimulatedMeterBus(
            [
                SimulatedMeter(h.meter_address, load_kw=0.4 + 0.1 * (h.index % 7), seed=h.index)
                for h in layout.households
                if h.meter_address is not None
            ],
            link_path=self.workdir / "meters",
        )
        self.water = DeviceServer(
            [
                WaterMeter(b.unit, stuck=b.index == stuck_building, seed=b.unit)
                for b in layout.buildings
            ]
        )
        self.bins = DeviceServer(
            [BinSensor(b.unit, fill_pct=15.0 + 10 * b.index) for b in layout.buildings]
        )
        self.doors: dict[int, SimulatedDoor] = {}
        self.locker: SimulatedLocker | None = None
        self.local_broker: MosquittoProcess | None = None
        self.passwords: dict[str, str] = {}
        self.local_port = free_port()
        self._edge_password = secrets.token_urlsafe(24)
        self.powered_off: set[int] = set()
        self._socat: asyncio.subprocess.Process | None = None
        self._started: list[Callable[[], Any]] = []

    # -- start and stop ---------------------------------------------------------------------
    async def start(self, client: httpx.AsyncClient) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        await self.register(client)
        await self._start_wired_devices()
        config = self.edge_config()
        await self._start_mqtt_devices(config)
        self.stack.start_edge(
            self.edge_id,
            [str(self.workdir / "buttons")],
            extra_env={"EDGE__LOCAL_BROKER__PASSWORD": self._edge_password},
            **config,
        )

    async def stop(self) -> None:
        """Stop the edge, then the simulators (the local broker stops with the stack)."""
        edge = self.stack.edges.get(self.edge_id)
        if edge is not None:
            await asyncio.to_thread(edge.stop)
        for stop in reversed(self._started):
            try:
                result = stop()
                if asyncio.iscoroutine(result):
                    await result
            except (OSError, RuntimeError, TimeoutError) as err:  # the others still stop
                log.warning("community: stopping %s failed: %s", stop, err)
        self._started.clear()

    async def register(self, client: httpx.AsyncClient) -> None:
        """Households, then every device, through the registry API."""
        for h in self.layout.households:
            response = await client.post(
                "/api/v1/households",
                json={"grid_id": h.grid_id, "address": h.address, "lives_alone": h.lives_alone},
            )
            _check(response, f"household {h.address}")
            h.hub_id = int(response.json()["id"])
        for d in self.layout.devices():
            body: dict[str, Any] = {
                "id": d.id,
                "profile": d.profile,
                "place": d.place,
                "edge_id": self.edge_id,
                "bus": d.bus,
                "address": d.address,
            }
            if d.household is not None:
                body["household_id"] = d.household.hub_id
            else:
                body["grid_id"] = d.grid_id
            _check(await client.post("/api/v1/devices", json=body), f"device {d.id}")

    async def _start_wired_devices(self) -> None:
        await self.buttons.start()
        self._started.append(self.buttons.close)
        await self.meters.start()
        self._started.append(self.meters.close)
        edge_end, devices_end = self.workdir / "rs485-water", self.workdir / "rs485-water-dev"
        for link in (edge_end, devices_end):
            link.unlink(missing_ok=True)
        self._socat = await asyncio.create_subprocess_exec(
            "socat",
            f"pty,raw,echo=0,link={edge_end}",
            f"pty,raw,echo=0,link={devices_end}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._started.append(self._stop_socat)
        await _wait_for(lambda: edge_end.exists() and devices_end.exists(), 10, "socat ptys")
        await self.water.start_rtu(str(devices_end))
        self._started.append(self.water.stop)
        await self.bins.start_tcp("127.0.0.1", 0)
        self._started.append(self.bins.stop)

    async def _stop_socat(self) -> None:
        if self._socat is not None and self._socat.returncode is None:
            self._socat.terminate()
            await asyncio.wait_for(self._socat.wait(), 10)

    def edge_config(self) -> dict[str, Any]:
        """The edge's YAML settings beyond what :meth:`Stack.start_edge` writes."""
        devices: list[dict[str, Any]] = []
        for d in self.layout.devices():
            entry: dict[str, Any] = {"profile": d.profile, "address": d.address, "place": d.place}
            if d.household is not None:
                entry["household_id"] = d.household.hub_id
            elif d.grid_id is not None:
                entry["grid_id"] = d.grid_id
            if d.profile == "cb-100":
                continue  # heard on the serial_buses line, not polled
            if d.profile == "dlt645-meter":
                entry["port"] = str(self.workdir / "meters")
            elif d.profile == "water-meter":
                entry["port"] = str(self.workdir / "rs485-water")
            elif d.profile == "bin-sensor":
                entry |= {"host": "127.0.0.1", "port": self.bins.tcp_port}
            devices.append(entry)
        return {
            "profiles_dir": str(write_fast_profiles(self.workdir / "profiles")),
            "devices": devices,
            "local_broker": {
                "host": "127.0.0.1",
                "port": self.local_port,
                "username": EDGE_LOCAL_USER,
            },
        }

    async def _start_mqtt_devices(self, config: dict[str, Any]) -> None:
        data_dir = self.stack.workdir / self.edge_id
        checked = EdgeConfig.model_validate(
            {"edge_id": self.edge_id, "data_dir": str(data_dir), **config}
        )
        plan = plan_devices(checked, load_profiles(checked.profiles_dir), "community edge config")
        store = data_dir / STORE_PATH
        files = write_local_broker_files(
            self.workdir / "local-broker",
            plan.mqtt,
            edge_username=EDGE_LOCAL_USER,
            edge_password=self._edge_password,
            store=store,
        )
        self.passwords = read_passwords(store)
        self.local_broker = await asyncio.to_thread(
            self.stack.start_local_broker,
            f"local-broker-{self.edge_id}",
            password_file=files.password_file,
            acl_file=files.acl_file,
            port=self.local_port,
        )
        for b in self.layout.buildings:
            door = self.door_simulator(b)
            await door.start()
            self.doors[b.index] = door
            self._started.append(self._stopper(door))
        locker = SimulatedLocker(
            "127.0.0.1",
            self.local_broker.port,
            address=self.layout.locker_address,
            username=self.layout.locker_id,
            password=self.passwords[self.layout.locker_id],
            heartbeat_s=LOCKER_HEARTBEAT_S,
        )
        locker.on_change = self.on_change
        await locker.start()
        self.locker = locker
        self._started.append(self._stopper(locker))

    def door_simulator(self, building: BuildingPlan) -> SimulatedDoor:
        assert self.local_broker is not None
        door = SimulatedDoor(
            "127.0.0.1",
            self.local_broker.port,
            address=building.door_address,
            username=building.door_id,
            password=self.passwords[building.door_id],
            heartbeat_s=DOOR_HEARTBEAT_S,
        )
        door.on_change = self.on_change
        return door

    def _stopper(self, device: SimulatedDoor | SimulatedLocker) -> Callable[[], Any]:
        async def stop() -> None:
            await device.stop()

        return stop

    # -- what scenarios do ------------------------------------------------------------------
    async def power_cut(self, index: int) -> list[str]:
        """Building ``index`` loses power: its door, meters, water meter and bin sensor fall
        silent (the call buttons run on batteries). Returns the device ids cut off."""
        building = self.layout.buildings[index]
        self.powered_off.add(index)
        for h in building.households:
            if h.meter_address is not None:
                self.meters.meter(h.meter_address).silent = True
        self.water.devices[building.unit].set_fault("silent")
        self.bins.devices[building.unit].set_fault("silent")
        door = self.doors.pop(index, None)
        if door is not None:
            await door.stop()
        return [d.id for d in self.layout.building_devices(index)]

    def bin_sensor(self, index: int) -> BinSensor:
        sensor = self.bins.devices[self.layout.buildings[index].unit]
        assert isinstance(sensor, BinSensor)
        return sensor

    def water_meter(self, index: int) -> WaterMeter:
        meter = self.water.devices[self.layout.buildings[index].unit]
        assert isinstance(meter, WaterMeter)
        return meter

    def describe(self) -> dict[str, Any]:
        """The layout as JSON-ready data (written to ``community.json`` for tools and tests)."""
        return {
            "edge_id": self.edge_id,
            "hub_url": self.stack.hub_url,
            "buildings": [
                {
                    "index": b.index,
                    "name": b.name,
                    "grid_id": b.grid_id,
                    "households": [h.hub_id for h in b.households],
                    "powered_devices": [d.id for d in self.layout.building_devices(b.index)],
                }
                for b in self.layout.buildings
            ],
            "devices": [
                {"id": d.id, "profile": d.profile, "building": d.building}
                for d in self.layout.devices()
            ],
        }


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code >= 300:
        raise RuntimeError(f"hub refused {what}: {response.status_code} {response.text[:500]}")


async def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout} s")
        await asyncio.sleep(0.05)


async def grid_ids(client: httpx.AsyncClient) -> list[int]:
    response = await client.get("/api/v1/grids")
    _check(response, "the grid list")
    return sorted(int(g["id"]) for g in response.json())


# ---- command line ----------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--households", type=int, default=12, help="households to simulate (default 12)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO_ROOT / "var" / "community",
        help="where databases, configs and logs go (wiped at start)",
    )
    parser.add_argument(
        "--scenario",
        choices=[*SCENARIOS, "all", "none"],
        default="all",
        help="what to play once every device kind has reported (default: all)",
    )


async def run(args: argparse.Namespace) -> int:
    from simulators import community_scenarios as scenarios

    workdir: Path = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    stack = Stack(workdir)
    try:
        broker = stack.start_broker()
        say("broker", f"hub broker: Mosquitto on 127.0.0.1:{broker.port}")
        await asyncio.to_thread(stack.start_hub, **hub_settings())
        say("hub", f"{stack.hub_url}  API docs: {stack.hub_url}/docs")
        say("hub", f"API token (demo only, new each run): {stack.api_token}")
        async with httpx.AsyncClient(
            base_url=stack.hub_url, headers=stack.headers(), timeout=10
        ) as client:
            await scenarios.run_community(stack, client, args.households, args.scenario)
    finally:
        await asyncio.to_thread(stack.stop)
        say("community", f"stopped every process; logs and databases are in {workdir}")
    return 0


class _NoSubscriberYet(logging.Filter):
    """Drops "heartbeat refused (0x10)": MQTT 5's "no matching subscribers" PUBACK, which a
    device gets until the edge has subscribed (the message was accepted)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "(0x10)" not in record.getMessage()


def quiet_device_logs() -> None:
    """Warnings to stderr, without the simulated devices' "no subscriber yet" ones."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NoSubscriberYet())


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the children like Ctrl-C does
    from simulators.community_scenarios import chosen

    try:  # bad arguments fail before anything starts
        chosen(args.scenario)
        plan_layout(args.households, [1])
    except ValueError as err:
        print(f"community: {err}")
        return 2
    quiet_device_logs()
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0
