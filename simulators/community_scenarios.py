"""What the community simulator shows: the hub's view of the community, and the scenarios.

Why apart from :mod:`simulators.community`: that module builds and runs the devices; this
one watches the hub through its API (new events, new tasks, the grid workers' phones) and
plays the four incidents a property manager cares about, each ending when the hub has
done what it should:

* ``full-bin``: a bin sensor reports 95 % → a ``collection`` task;
* ``forced-door``: a door reports ``door_forced`` → a ``door_alert`` task and the grid
  worker's phone rings;
* ``stuck-meter``: a water meter whose flow never reaches zero during the night → a
  ``leak_check`` task once the night window closes (the demo's "night" starts with the hub,
  see :func:`simulators.community.hub_settings`; the meter is stuck from the start);
* ``power-cut``: every powered device of one building falls silent → the edge reports
  them offline → ONE ``outage`` task for the building (not one task per device).

Between scenarios the community lives: residents pass the doors, couriers fill the locker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable
from typing import Any

import httpx

from simulators.community import (
    SCENARIOS,
    Community,
    grid_ids,
    night_configured,
    plan_layout,
    say,
)
from simulators.stack import Stack
from simulators.worker_phone import stream_events

STUCK_BUILDING = 0  # its water meter leaks, its bin fills, its door is forced
REPORT_TIMEOUT_S = 180.0
SCENARIO_TIMEOUT_S = 120.0

#: Event kinds in Chinese, for the printed lines.
KIND_ZH = {
    "face_pass": "刷脸通行",
    "face_unknown": "陌生人",
    "card_pass": "刷卡通行",
    "door_forced": "强行开门",
    "door_held_open": "门未关",
    "parcel_deposited": "快递入柜",
    "parcel_picked_up": "取件",
    "door_left_open": "柜门未关",
    "device.offline": "设备离线",
    "device.online": "设备上线",
    "low_battery": "电量低",
    "meter_reading": "电表读数",
    "water_reading": "水表读数",
    "bin_reading": "垃圾桶读数",
    "heartbeat": "心跳",
}
TASK_ZH = {
    "collection": "清运",
    "delivery": "送件",
    "door_alert": "门禁告警",
    "bin_alert": "垃圾桶告警",
    "leak_check": "漏水排查",
    "maintenance": "设备维修",
    "outage": "疑似停电",
    "service_request": "便民服务",
}


def chosen(scenario: str) -> list[str]:
    """The scenarios to play, in order, for the ``--scenario`` argument."""
    if scenario == "all":
        return ["full-bin", "forced-door", "stuck-meter", "power-cut"]
    if scenario == "none":
        return []
    if scenario not in SCENARIOS:
        raise ValueError(f"--scenario: unknown scenario {scenario!r}")
    return [scenario]


class HubWatcher:
    """Polls the hub's API like an operator's console: prints new events and tasks."""

    def __init__(self, client: httpx.AsyncClient, community: Community) -> None:
        self.client = client
        self.community = community
        self.tasks: dict[int, dict[str, Any]] = {}
        self.reported: set[str] = set()  # devices with at least one event at the hub
        self._last_event = 0

    async def run(self, interval_s: float = 1.0) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                await self.poll()
            await asyncio.sleep(interval_s)

    async def poll(self, *, quiet: bool = False) -> None:
        """New events and tasks; printed unless ``quiet`` (what was there before we came)."""
        response = await self.client.get("/api/v1/events", params={"limit": 200})
        if response.status_code == 200:
            fresh = [e for e in response.json() if e["id"] > self._last_event]
            for event in sorted(fresh, key=lambda e: e["id"]):
                self._last_event = max(self._last_event, event["id"])
                if not quiet:
                    self._show_event(event)
        await self.poll_tasks(quiet=quiet)

    async def poll_tasks(self, *, quiet: bool = False) -> list[dict[str, Any]]:
        """Every task (newest 500); new ones are printed unless ``quiet``."""
        response = await self.client.get("/api/v1/tasks", params={"limit": 500})
        response.raise_for_status()
        rows: list[dict[str, Any]] = response.json()
        for task in sorted(rows, key=lambda t: t["id"]):
            if task["id"] not in self.tasks and not quiet:
                kind = task["kind"]
                say(
                    "hub",
                    f"任务 #{task['id']} [{TASK_ZH.get(kind, kind)} / {kind}] {task['detail']}",
                )
            self.tasks[task["id"]] = task
        return rows

    def _show_event(self, event: dict[str, Any]) -> None:
        device, kind = event["device_id"], event["kind"]
        first = device not in self.reported
        self.reported.add(device)
        if event["lane"] == "telemetry" and not first:
            return
        label = KIND_ZH.get(kind, kind)
        data = ", ".join(f"{k}={_short(v)}" for k, v in event["data"].items())
        note = " (首次上报 / first report)" if first and event["lane"] == "telemetry" else ""
        say("hub", f"{device}: {label} / {kind} {data}{note}")

    async def wait_task(
        self,
        kind: str,
        device_id: str | None = None,
        timeout: float = SCENARIO_TIMEOUT_S,
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            for task in await self.poll_tasks():
                if task["kind"] == kind and (device_id is None or task["device_id"] == device_id):
                    return task
            await asyncio.sleep(0.5)
        raise TimeoutError(
            f"no {kind} task{' for ' + device_id if device_id else ''} in {timeout} s"
        )


def _short(value: object) -> object:
    return round(value, 2) if isinstance(value, float) else value


async def device_has_reported(client: httpx.AsyncClient, device_id: str) -> bool:
    response = await client.get("/api/v1/events", params={"device_id": device_id, "limit": 1})
    return response.status_code == 200 and bool(response.json())


async def kinds_reported(client: httpx.AsyncClient, community: Community) -> dict[str, str]:
    """profile → one of its devices that the hub has an event from."""
    found: dict[str, str] = {}
    for profile, devices in community.layout.by_profile().items():
        for device in devices:
            if await device_has_reported(client, device.id):
                found[profile] = device.id
                break
    return found


async def start_community(community: Community, client: httpx.AsyncClient) -> None:
    layout = community.layout
    say(
        "community",
        f"{len(layout.households)} 户, {len(layout.buildings)} 栋楼, "
        f"{len(layout.devices())} 台设备 / households, buildings, devices",
    )
    for b in layout.buildings:
        say("community", f"{b.name}: {len(b.households)} 户 / households, 网格 grid {b.grid_id}")
    await community.start(client)
    say("broker", f"local Mosquitto (per-device accounts) on 127.0.0.1:{community.local_port}")
    say("edge", f"{community.edge_id} started with {len(layout.devices())} devices")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REPORT_TIMEOUT_S
    profiles = set(layout.by_profile())
    shown: set[str] = set()
    edge = community.stack.edges[community.edge_id]
    while True:
        if not edge.running:
            raise RuntimeError(f"the edge exited:\n{edge.log_text()[-3000:]}")
        found = await kinds_reported(client, community)
        for profile in sorted(set(found) - shown):
            say("hub", f"{profile}: 已上报 / reported ({found[profile]})")
        shown |= set(found)
        if set(found) == profiles:
            break
        if loop.time() > deadline:
            missing = ", ".join(sorted(profiles - set(found)))
            raise TimeoutError(f"no event at the hub from any device of: {missing}")
        await asyncio.sleep(1.0)
    say("hub", "每类设备均已向中心上报 / every device kind has reported to the hub")


async def follow_phones(client: httpx.AsyncClient) -> None:
    """Print what the workers' phones show (as ``make demo`` does)."""
    workers = (await client.get("/api/v1/workers")).json()

    async def follow(worker: dict[str, Any]) -> None:
        with contextlib.suppress(httpx.HTTPError):
            async for event, note in stream_events(client, worker["id"]):
                if event == "notification":
                    say(f"📱{worker['name']}", f"{note['message_zh']} / {note['message_en']}")

    await asyncio.gather(*(follow(w) for w in workers))


async def community_life(community: Community) -> None:
    """Residents pass the doors, couriers fill the locker, residents pick parcels up."""
    rng = random.Random(7)  # a simulation, not cryptography
    households = community.layout.households
    while True:
        await asyncio.sleep(rng.uniform(4, 8))
        with contextlib.suppress(ConnectionError, TimeoutError):  # a door cut off, say
            pick = rng.random()
            doors = list(community.doors.values())
            if pick < 0.6 and doors:
                await rng.choice(doors).face_pass(f"P-{rng.randint(1000, 1099)}", 0.95)
            elif community.locker is not None:
                locker = community.locker
                if locker.parcels and pick > 0.85:
                    await locker.pick_up(rng.choice(sorted(locker.parcels)))
                else:
                    free = [c for c in range(1, 49) if c not in locker.parcels]
                    if free:
                        household = rng.choice(households)
                        await locker.deposit(rng.choice(free), household.hub_id)


# ---- the scenarios -----------------------------------------------------------------------


async def full_bin(community: Community, watcher: HubWatcher) -> dict[str, Any]:
    building = community.layout.buildings[STUCK_BUILDING]
    say("scenario", f"{building.name} 的垃圾桶满了 / the bin of {building.name} fills up (95 %)")
    community.bin_sensor(STUCK_BUILDING).force("full")
    return await watcher.wait_task("collection", building.bin_id)


async def forced_door(community: Community, watcher: HubWatcher) -> dict[str, Any]:
    building = community.layout.buildings[STUCK_BUILDING]
    say("scenario", f"{building.name} 单元门被强行打开 / the door of {building.name} is forced")
    door = community.doors[STUCK_BUILDING]
    await door.door_forced()
    return await watcher.wait_task("door_alert", building.door_id)


async def stuck_meter(community: Community, watcher: HubWatcher) -> dict[str, Any]:
    building = community.layout.buildings[STUCK_BUILDING]
    say(
        "scenario",
        f"{building.name} 水表夜间流量从未归零 (阀门漏水) / the water meter of {building.name} "
        "never reads zero flow in the night (a leaking valve)",
    )
    if community.stuck_building != STUCK_BUILDING:
        community.water_meter(STUCK_BUILDING).stuck = True
    if not night_configured():
        say("scenario", "hub has no facilities settings: waiting for the real night (01:00-05:00)")
    else:
        say("scenario", "演示的'夜间'随中心启动开始 / the demo's night began with the hub")
    return await watcher.wait_task("leak_check", building.water_meter_id, timeout=600)


async def power_cut(community: Community, watcher: HubWatcher) -> dict[str, Any]:
    index = len(community.layout.buildings) - 1
    building = community.layout.buildings[index]
    cut = await community.power_cut(index)
    say(
        "scenario",
        f"{building.name} 停电: {len(cut)} 台设备断电 / power cut in {building.name}: "
        f"{', '.join(cut)}",
    )
    return await watcher.wait_task("outage")


PLAYS: dict[str, Callable[[Community, HubWatcher], Any]] = {
    "full-bin": full_bin,
    "forced-door": forced_door,
    "stuck-meter": stuck_meter,
    "power-cut": power_cut,
}


async def play(
    community: Community,
    client: httpx.AsyncClient,
    scenarios: list[str],
    *,
    phones: bool = True,
) -> None:
    """Play ``scenarios`` in order, then keep the community living until cancelled.
    ``phones``: also print the workers' notifications (``make demo`` does that itself)."""
    watcher = HubWatcher(client, community)
    await watcher.poll(quiet=True)  # events and tasks from before (the help call's) are not news
    background = [
        asyncio.create_task(watcher.run(), name="hub watcher"),
        asyncio.create_task(community_life(community), name="community life"),
    ]
    if phones:
        background.append(asyncio.create_task(follow_phones(client), name="phones"))
    try:
        for name in scenarios:
            try:
                task = await PLAYS[name](community, watcher)
            except TimeoutError as err:
                say("scenario", f"⚠ 场景未完成 / scenario not done: {name}: {err}")
                continue
            say("scenario", f"场景完成 / scenario done: {name} → 任务 task #{task['id']}")
        say(
            "community",
            "社区演示进行中; 系统继续运行, Ctrl-C 退出 / the community keeps running, "
            "Ctrl-C stops it",
        )
        await asyncio.gather(*background)
    finally:
        for job in background:
            job.cancel()
        for job in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job


async def run_community(
    stack: Stack,
    client: httpx.AsyncClient,
    households: int,
    scenario: str = "all",
    *,
    phones: bool = True,
) -> None:
    """Build, start and register a community on the running ``stack``, play ``scenario``
    and keep it running until cancelled (``python -m simulators community`` and the end of
    ``make demo``). The layout is written to ``<workdir>/community.json``."""
    names = chosen(scenario)
    layout = plan_layout(households, await grid_ids(client))
    community = Community(
        stack,
        layout,
        stuck_building=STUCK_BUILDING if "stuck-meter" in names else None,
        on_change=lambda text: say("device", text),
    )
    try:
        await start_community(community, client)
        (stack.workdir / "community.json").write_text(
            json.dumps(community.describe(), ensure_ascii=False, indent=2), encoding="utf-8"
        )
        await play(community, client, names, phones=phones)
    finally:
        await community.stop()
