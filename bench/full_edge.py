"""SOS latency at an edge carrying its own realistic maximum (issue #13, item 4).

The rig's edge (``edge-demo``) is restarted with everything one building gateway could
have to carry at once, and the SOS button on its pty is timed as in the idle row:

- **4 RS-485 call-button buses saturated at 9,600 baud**: the rig's four load ptys, each
  written at the wire's pace. A CB-100 heartbeat is 14 bytes and the edge answers every
  frame with a 13-byte link ack on the same half-duplex pair, so a saturated bus carries
  ``9600 / ((14 + 13) × 10 bits)`` = 35.6 frames/s (8N1); four of them, 142 frames/s.
  (A pty has no baud rate: the load generator paces the frames; the SOS button has a
  quiet bus of its own, so the SOS frame itself never waits behind a frame on the wire —
  at most one frame time, 15 ms, on a real shared bus.)
- **200 Modbus TCP devices at 1 Hz**: ``bench-meter10`` (ten registers, one request, one
  event per poll) on 200 endpoints of ``bench.modbus_fleet`` in another process;
- **20 MQTT doors**: ``bench.doors`` in another process, each door with its own account
  on the edge's local Mosquitto (``edge.local_broker`` writes the password file and
  ACL), a face pass every ``DOOR_EVERY_S`` per door plus heartbeats.

All these devices are registered at the hub behind ``edge-demo``, so their events are
forwarded and committed as in production. The edge is restarted with its ordinary
configuration afterwards.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import modbus_store
from bench.measure import memory_kib
from bench.modbus_poll import _Fleet
from bench.rig import EDGE_ID, Rig
from bench.sos_latency import Latencies, SosProbe
from bench.throughput import cpu_windows
from edge.codecs.cb100 import Frame, FrameType, encode
from edge.config import EdgeConfig
from edge.device_plan import plan_devices
from edge.local_broker import STORE_PATH, read_passwords, write_local_broker_files
from simulators.broker import free_port
from simulators.stack import REPO_ROOT

BAUD = 9600
BITS_PER_CHAR = 10  # 8N1, as the cb-100 profile says
MODBUS_DEVICES = 200
DOORS = 20
DOOR_EVERY_S = 2.0  # a busy entrance at rush hour: a pass every 2 s at each of 20 doors
LOCAL_USER = "edge-local"
WARM_S = 10.0


def bus_frames_per_s() -> float:
    """Frames/s one saturated CB-100 bus carries: each frame and its link ack on the wire."""
    frame = len(encode(Frame(900_000, 1, FrameType.HEARTBEAT, bytes([80]))))
    ack = len(encode(Frame(900_000, 1, FrameType.LINK_ACK)))
    return BAUD / ((frame + ack) * BITS_PER_CHAR)


@dataclass
class FullEdge:
    sos: Latencies
    bus_frames_per_s: float  # per bus
    hub_per_s: float  # events of the whole edge committed at the hub per second
    edge_stored_per_s: float
    doors_sent: int
    cpu: dict[str, float]
    rss_mib: float
    seconds: float


def load_profiles(folder: Path) -> Any:
    """The profile loader: ``profiles.loader`` since issue #13 moved the schema to a package
    both sides import, ``edge.profiles.loader`` before; the bench runs on either tree."""
    for name in ("profiles.loader", "edge.profiles.loader"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return module.load_profiles(folder)
    raise ImportError("no device-profile loader (profiles.loader or edge.profiles.loader)")


def _profiles(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("cb-100", "fr-door"):
        shutil.copy(REPO_ROOT / "device_profiles" / f"{name}.yaml", folder / f"{name}.yaml")
    modbus_store.write_profiles(folder, 1.0)
    return folder


def _doors() -> list[dict[str, Any]]:
    return [
        {"profile": "fr-door", "address": f"bench-gate-{k:02d}", "place": f"gate {k}"}
        for k in range(DOORS)
    ]


def _register(rig: Rig, meter_ids: list[str], door_ids: list[str]) -> None:
    with rig.hub_sql() as db:
        db.executemany(
            "INSERT OR IGNORE INTO devices (id, place, edge_id, profile, online) "
            "VALUES (?, 'bench', ?, ?, 0)",
            [(d, EDGE_ID, modbus_store.PROFILE) for d in meter_ids]
            + [(d, EDGE_ID, "fr-door") for d in door_ids],
        )
        db.executemany(
            "UPDATE devices SET edge_id = ? WHERE id = ?",
            [(EDGE_ID, d) for d in meter_ids + door_ids],
        )


def _start_doors(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.doors", str(config)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


async def full_edge(rig: Rig, probe: SosProbe, samples: int) -> FullEdge:
    work = rig.workdir / "full-edge"
    work.mkdir(parents=True, exist_ok=True)
    await rig.wait_drained(600)
    fleet = _Fleet(["tcp", "--ports", str(MODBUS_DEVICES), "--units", "1"])
    doors_proc: subprocess.Popen[str] | None = None
    restarted = False
    try:
        meters = modbus_store.device_entries(fleet.where, EDGE_ID)
        doors = _doors()
        local_port = free_port()
        edge_password = secrets.token_urlsafe(24)
        config: dict[str, Any] = {
            "profiles_dir": str(_profiles(work / "profiles")),
            "devices": meters + doors,
            "local_broker": {"host": "127.0.0.1", "port": local_port, "username": LOCAL_USER},
        }
        data_dir = rig.workdir / EDGE_ID
        checked = EdgeConfig.model_validate(
            {"edge_id": EDGE_ID, "data_dir": str(data_dir), **config}
        )
        plan = plan_devices(checked, load_profiles(checked.profiles_dir), "bench full edge")
        store = data_dir / STORE_PATH
        files = write_local_broker_files(
            work / "local-broker",
            plan.mqtt,
            edge_username=LOCAL_USER,
            edge_password=edge_password,
            store=store,
        )
        passwords = read_passwords(store)
        rig.stack.start_local_broker(
            "local-broker-full-edge",
            password_file=files.password_file,
            acl_file=files.acl_file,
            port=local_port,
        )
        door_ids = [f"door-{d['address']}" for d in doors]
        await asyncio.to_thread(_register, rig, [m["id"] for m in meters], door_ids)
        await asyncio.to_thread(rig.stack.edges.pop(EDGE_ID).stop)
        restarted = True
        ports = [str(rig.sos_link), *(str(load.link) for load in rig.loads)]
        rig.stack.start_edge(
            EDGE_ID,
            ports,
            status_interval_s=1,
            log_level="WARNING",
            extra_env={"EDGE__LOCAL_BROKER__PASSWORD": edge_password},
            **config,
        )
        door_config = work / "doors.json"
        door_config.write_text(
            json.dumps(
                {
                    "port": local_port,
                    "every_s": DOOR_EVERY_S,
                    "doors": [
                        {"address": d["address"], "username": i, "password": passwords[i]}
                        for d, i in zip(doors, door_ids, strict=True)
                    ],
                }
            )
        )
        doors_proc = _start_doors(door_config)
        assert doors_proc.stdout is not None and doors_proc.stdin is not None
        line = await asyncio.to_thread(doors_proc.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"bench.doors did not start: {line.strip()!r}")
        await probe.sample(3, timeout_s=30)  # the edge is up and forwarding; not counted
        rate = bus_frames_per_s()
        seconds = WARM_S + samples * 0.5 + 30
        for load in rig.loads:
            load.start(rate, int(rate * seconds))
        await asyncio.sleep(WARM_S)  # every source at its pace; not synchronisation
        edge = rig.stack.edges[EDGE_ID]
        assert edge.process is not None
        meters_cpu = cpu_windows(
            rig, extra={"modbus fleet": fleet.proc.pid, "doors": doors_proc.pid}
        )
        e0, s0, t0 = rig.hub_events(), rig.outbox_seq(), time.monotonic()
        sos = await probe.sample(samples)
        e1, s1, t1 = rig.hub_events(), rig.outbox_seq(), time.monotonic()
        cpu = {name: meter.share() for name, meter in meters_cpu.items()}
        rss = memory_kib(edge.process.pid)["VmRSS"] / 1024
        for load in rig.loads:
            load.stop()
        await asyncio.gather(*(load.wait() for load in rig.loads))
        doors_proc.stdin.write("quit\n")
        doors_proc.stdin.flush()
        sent_line = await asyncio.to_thread(doors_proc.stdout.readline)
        doors_sent = int(sent_line.split()[1]) if sent_line.startswith("sent ") else 0
        return FullEdge(
            sos=sos,
            bus_frames_per_s=rate,
            hub_per_s=(e1 - e0) / (t1 - t0),
            edge_stored_per_s=(s1 - s0) / (t1 - t0),
            doors_sent=doors_sent,
            cpu=cpu,
            rss_mib=rss,
            seconds=t1 - t0,
        )
    finally:
        if doors_proc is not None and doors_proc.poll() is None:
            doors_proc.kill()
            doors_proc.wait(10)
        fleet.close()
        if restarted:
            edge_proc = rig.stack.edges.pop(EDGE_ID, None)
            if edge_proc is not None:
                await asyncio.to_thread(edge_proc.stop)
            local = rig.stack.local_brokers.pop("local-broker-full-edge", None)
            if local is not None:
                local.stop()
            await asyncio.to_thread(rig.start_edge)
            await probe.sample(2, timeout_s=30)  # back to the ordinary edge; not counted
