"""``make demo``: the whole system on one machine, with a help call played through.

Starts a private Mosquitto, the hub on SQLite (seeded with the 示范区 demo community), one
edge agent and three simulated CB-100 buttons on a pty; presses SOS on one button and
shows live what happens: the case is dispatched to the on-duty grid worker, whose phone page
(``/worker``, with a demo login printed at start) shows it; the demo waits ``--wait-s`` for a
person to tap 接单 there. If nobody does, it escalates to the backup worker, whose scripted
phone acknowledges; the button shows "help is coming"; the worker's presence press moves
it on site, then it is resolved and closed.

Then the community (:mod:`simulators.community`) joins the same hub: households in a few
buildings with doors, a parcel locker, electricity and water meters, bin sensors and call
buttons behind a second edge and a local Mosquitto, and its scenarios are played (a full
bin, a forced door, a stuck water meter, a power cut; ``--households 0`` skips it). The
system keeps running (heartbeats flow, the API is open) until Ctrl-C, which stops every
process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import shutil
import signal
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from simulators import community_scenarios
from simulators.button import LED_TEXT, LedState, SimulatedButton, SimulatedButtonBus
from simulators.community import NIGHT_S, hub_settings, quiet_device_logs
from simulators.screenshots import primary_workers
from simulators.stack import REPO_ROOT, Stack
from simulators.worker_phone import stream_events

EDGE = "edge-demo"
BUTTONS = (77626, 77627, 77628)
TZ = ZoneInfo("Asia/Shanghai")


def say(who: str, text: str) -> None:
    stamp = datetime.now(TZ).strftime("%H:%M:%S.%f")[:-3]
    print(f"{stamp}  {who:<10} {text}", flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO_ROOT / "var" / "demo",
        help="where databases, configs and logs go (wiped at start)",
    )
    parser.add_argument(
        "--escalation-s",
        type=float,
        default=10.0,
        help="seconds each tier above the grid worker has to acknowledge (default 10)",
    )
    parser.add_argument(
        "--wait-s",
        type=float,
        default=60.0,
        help="seconds the help call waits for a person to acknowledge it on the worker page "
        "before it escalates (default 60)",
    )
    parser.add_argument(
        "--households",
        type=int,
        default=12,
        help="households of the community played after the help call (0: none; default 12)",
    )


async def follow_stream(client: httpx.AsyncClient, worker: dict[str, Any]) -> None:
    """Print what the worker's phone would show, until the hub or the demo stops."""
    with contextlib.suppress(httpx.HTTPError):  # the hub went away (Ctrl-C stops it too)
        async for event, note in stream_events(client, worker["id"]):
            if event == "notification":
                say(f"📱{worker['name']}", f"{note['message_zh']} / {note['message_en']}")


async def wait_for(
    client: httpx.AsyncClient, path: str, predicate: Any, timeout: float = 120
) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        body = (await client.get(path)).json()
        if predicate(body):
            return body
        await asyncio.sleep(0.2)  # polling the API as a console would
    raise TimeoutError(f"demo: {path} did not reach the expected state in {timeout} s")


def desk_login(stack: Stack) -> tuple[str, str]:
    """A hotline desk account for the desk board (issue #12): (username, password)."""
    password = secrets.token_urlsafe(9)
    with httpx.Client(base_url=stack.hub_url, headers=stack.headers(), timeout=10) as client:
        body = {"username": "desk", "role": "hotline", "password": password}
        client.post("/api/v1/accounts", json=body).raise_for_status()
    return "desk", password


async def play(
    stack: Stack, bus: SimulatedButtonBus, households: int = 0, wait_s: float = 60.0
) -> None:
    async with httpx.AsyncClient(
        base_url=stack.hub_url, headers=stack.headers(), timeout=10
    ) as client:
        await wait_for(
            client,
            "/api/v1/edges",
            lambda edges: any(e["edge_id"] == EDGE and e["online"] for e in edges),
            30,
        )
        say("edge", f"{EDGE} 在线 / online")
        workers = (await client.get("/api/v1/workers")).json()
        streams = [
            asyncio.create_task(follow_stream(client, w), name=f"phone {w['id']}") for w in workers
        ]
        try:
            await _play_call(stack, bus, client, households, wait_s)
            await asyncio.gather(*streams)
        finally:
            # Ctrl-C cancels us while the readers are blocked on their streams: stop them
            # and collect what they raise, before the client closes their connections;
            # otherwise each ends later in "Task exception was never retrieved".
            for task in streams:
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)


def demo_login(stack: Stack, household_grid: int) -> tuple[str, str, int]:
    """A worker account for the grid worker the help call goes to: (username, password, id).

    The password is printed: it is a demo, on a throw-away database, made afresh each run.
    """
    password = secrets.token_urlsafe(9)
    found = primary_workers(stack.workdir / "hub" / "hub.db")
    worker = next(w for w, grid in found if grid == household_grid)
    with httpx.Client(base_url=stack.hub_url, headers=stack.headers(), timeout=10) as client:
        body = {"username": "demo", "role": "worker", "worker_id": worker, "password": password}
        client.post("/api/v1/accounts", json=body).raise_for_status()
    return "demo", password, worker


async def _play_call(
    stack: Stack,
    bus: SimulatedButtonBus,
    client: httpx.AsyncClient,
    households: int,
    wait_s: float = 60.0,
) -> None:
    """The help call played through, then (``households`` > 0) the community."""
    devices = {d["id"]: d for d in (await client.get("/api/v1/devices")).json()}
    household = devices[f"cb100-{BUTTONS[0]}"]["household_id"]
    grid = (await client.get(f"/api/v1/households/{household}")).json()["grid_id"]
    username, password, grid_worker = await asyncio.to_thread(demo_login, stack, grid)
    say("demo", f"网格员页面 / worker page: {stack.hub_url}/worker")
    say("demo", f"  演示账号 / demo login: {username}  密码 / password: {password}")
    desk_user, desk_password = await asyncio.to_thread(desk_login, stack)
    say("demo", f"96890 坐席看板 / desk board: {stack.hub_url}/desk")
    say("demo", f"  演示账号 / demo login: {desk_user}  密码 / password: {desk_password}")
    await asyncio.sleep(0.5)  # let the phones' streams connect before the call
    say("resident", f"按下一键通 SOS (button {BUTTONS[0]}) / presses SOS")
    button = bus.button(BUTTONS[0])
    button.press_sos()

    cases = await wait_for(
        client, f"/api/v1/cases?household_id={household}", lambda body: bool(body), 30
    )
    case_id = cases[0]["id"]
    shown = 0

    async def show_audit() -> dict[str, Any]:
        nonlocal shown
        case: dict[str, Any] = (await client.get(f"/api/v1/cases/{case_id}")).json()
        for step in case["audit"][shown:]:
            say(
                "hub",
                f"工单 #{case_id}: {step['from_state']} → {step['to_state']} "
                f"({step['action']}, {step['actor']}) {step['detail']}",
            )
        shown = len(case["audit"])
        return case

    def escalated(case: dict[str, Any]) -> bool:
        return int(case["tier"]) >= 1

    case = await show_audit()
    say(
        "demo",
        f"工单 #{case_id} 等待有人在网格员页面上点“接单”（{wait_s:.0f} 秒，之后升级到备岗，"
        f"由脚本接单）/ case #{case_id} waits {wait_s:.0f} s for a person to tap "
        f"Acknowledge on {stack.hub_url}/worker?case={case_id}; then it escalates "
        "and the scripted backup phone acknowledges",
    )
    while not escalated(case) and case["state"] in ("open", "dispatched"):
        await asyncio.sleep(0.2)
        case = await show_audit()
    if case["state"] in ("open", "dispatched"):
        backup = next(n for n in case["notifications"] if n["tier"] == "backup_worker")
        await asyncio.sleep(1.0)
        say(f"👷{backup['worker_name']}", "接单 / acknowledges")
        await client.post(
            f"/api/v1/cases/{case_id}/acknowledge", json={"worker_id": backup["worker_id"]}
        )
    else:
        say("demo", "有人在网格员页面上接单了 / a person acknowledged it on the worker page")
        who = case["acknowledged_by"] or grid_worker
        name = (await client.get(f"/api/v1/workers/{who}")).json().get("name", "网格员")
        backup = {"worker_id": who, "worker_name": name}
    await wait_led(button, LedState.HELP_COMING)
    case = await show_audit()
    await asyncio.sleep(2.0)
    say(f"👷{backup['worker_name']}", "到场, 按一键通确认 / on site, presses the button")
    button.presence()
    case = await wait_for(client, f"/api/v1/cases/{case_id}", lambda c: c["state"] == "on_site", 30)
    await show_audit()
    await client.post(
        f"/api/v1/cases/{case_id}/resolve",
        json={
            "worker_id": backup["worker_id"],
            "outcome": "helped_on_site",
            "note": (
                "老人起身时头晕, 已扶起并联系家属 / dizzy on standing; helped up, family called"
            ),
        },
    )
    await client.post(f"/api/v1/cases/{case_id}/close", json={"worker_id": backup["worker_id"]})
    await wait_led(button, LedState.CLOSED)
    await show_audit()
    say(
        "demo",
        "求助流程演示完毕; 系统继续运行, Ctrl-C 退出 / "
        "help call played through; the system keeps running, Ctrl-C stops it",
    )
    say("demo", f"API docs: {stack.hub_url}/docs   token: {stack.api_token}")
    if households:
        say("demo", "接下来: 整个社区的设备 / next: the devices of a whole community")
        await community_scenarios.run_community(stack, client, households, phones=False)


async def wait_led(button: SimulatedButton, state: LedState, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while state not in button.led_history and loop.time() < deadline:
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_system(
    workdir: Path, escalation_s: float, wait_s: float = 60.0
) -> AsyncIterator[tuple[Stack, SimulatedButtonBus]]:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    stack = Stack(workdir)
    try:
        broker = stack.start_broker()
        say("broker", f"Mosquitto on 127.0.0.1:{broker.port} (private, {broker.config_path})")
        stack.start_hub(
            escalation={
                "grid_worker_s": wait_s,  # time for a person on the worker page
                "backup_worker_s": escalation_s * 3,
                "community_station_s": escalation_s * 3,
                "street_centre_s": escalation_s * 3,
                "hotline_desk_s": escalation_s * 3,
            },
            # The community after the help call: device rules every second, and a "night"
            # (for the stuck water meter) from now until after the help call is done.
            **hub_settings(night_s=NIGHT_S + 60),
        )
        say("hub", f"{stack.hub_url}  API docs: {stack.hub_url}/docs")
        say("hub", f"API token (demo only, new each run): {stack.api_token}")

        def led(button: SimulatedButton, state: LedState) -> None:
            zh, en = LED_TEXT[state]
            say(f"🔘{button.serial}", f"{zh} / {en}")

        link = workdir / "bus0"
        async with SimulatedButtonBus(
            BUTTONS, link_path=link, heartbeat_s=30, on_led_change=led
        ) as bus:
            say("buttons", f"{len(BUTTONS)} CB-100 buttons on {link} → {bus.slave_path}")
            stack.start_edge(EDGE, [str(link)])
            say("edge", f"{EDGE} started (log: {workdir / (EDGE + '.log')})")
            yield stack, bus
    finally:
        stack.stop()
        say("demo", f"stopped every process; logs and databases are in {workdir}")


async def run(args: argparse.Namespace) -> None:
    async with running_system(args.workdir, args.escalation_s, args.wait_s) as (stack, bus):
        try:
            await play(stack, bus, args.households, args.wait_s)
        except httpx.TransportError:
            if not await hub_exited(stack):
                raise
            # Ctrl-C reaches the whole process group: the hub can die of it a moment before
            # our own handler cancels us, and a request in flight then fails to connect.
            # That is the interrupt (or a hub crash, whose log says why), not a demo fault.
            assert stack.hub is not None and stack.hub.process is not None
            code = stack.hub.process.returncode
            say("hub", f"中心已退出 (退出码 {code}) / the hub has exited (exit code {code})")


async def hub_exited(stack: Stack, within_s: float = 5.0) -> bool:
    """Has the hub process exited (or does it, within ``within_s``: it closes its socket
    before the process ends)?"""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while stack.hub is not None and stack.hub.running:
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return stack.hub is not None


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the children like Ctrl-C does
    quiet_device_logs()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))
    return 0
