"""``make bench`` / ``python -m bench``: every benchmark in one run, one table.

Each figure is measured with real processes (private Mosquitto, ``python -m hub`` on
SQLite, ``python -m edge``, CB-100 buttons on ptys) next to the machine's own limit
measured in the same run (``bench.limits``). Nothing here is a timed test.

    python -m bench                 # everything, about 30 minutes on 2 cores
    python -m bench --quick         # a smoke run of about 10 minutes (smaller counts)
    python -m bench --rows sos,backlog --write-docs

Rows (``--rows``): limits, sos, city, fulledge, sustained, footprint, backlog, escalation,
ingest, modbus-hub, pg, modbus. Issue #13's goals are listed under the table, each with
its row's verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import limits as machine
from bench import modbus_store as store
from bench.city import CITY_BATCH, city_load
from bench.escalation import escalation
from bench.footprint import footprint
from bench.full_edge import DOOR_EVERY_S, full_edge
from bench.measure import machine_load, percentile
from bench.modbus_poll import rtu_wire, tcp_fleet
from bench.modbus_store import ModbusStore
from bench.report import Report, Row, at_least, at_most, num, share, write_docs
from bench.rig import LOAD_PTYS, SOS_BUTTON, Rig, run_loads
from bench.scale_out import NotAvailable, scale_out
from bench.sos_latency import Latencies, SosProbe
from bench.throughput import backlog, cpu_text, cpu_windows, hub_ingest, sustained
from simulators.button import SimulatedButtonBus
from simulators.stack import REPO_ROOT

ROWS = (
    "limits",
    "sos",
    "city",
    "fulledge",
    "sustained",
    "footprint",
    "backlog",
    "escalation",
    "ingest",
    "modbus",
    "modbus-hub",
    "pg",
)
JITTER_GOAL_MS = 50.0
SOS_GOAL_MS = 50.0
SOS_LOADED_EDGE_GOAL_MS = 100.0  # issue #13: a fully loaded edge, and during a 1 M drain
RATE_GOAL = 20_000.0
SUSTAINED_GOAL = 10_000.0  # issue #13: sustained edge → hub, held


#: Issue #13's goal list: every goal is listed under the table with its row's verdict.
GOALS = [
    ("ingest", "hub ingest on SQLite ≥ 20,000 events/s"),
    ("ingest-share", "hub ingest ≥ 50% of the raw SQLite batch-insert limit of the same run"),
    ("drain", "backlog drain ≥ 20,000 events/s"),
    ("sustained", "sustained edge → hub ≥ 10,000 events/s held"),
    ("sos-idle", "SOS p99 ≤ 50 ms idle"),
    ("sos-city", "SOS p99 ≤ 50 ms under the city load at the hub"),
    ("sos-fulledge", "SOS p99 ≤ 100 ms at a fully loaded edge"),
    ("sos-drain", "SOS p99 ≤ 100 ms during a 1 M drain"),
    ("edge-cpu", "edge ≤ 10% of one core with 200 buttons at 100 events/s"),
    ("edge-rss", "edge ≤ 60 MB RSS with 200 buttons at 100 events/s"),
    (
        "modbus-goal",
        "Modbus: 200 devices × 10 registers every 100 ms (20,000 datapoints/s), 0 lost",
    ),
    (
        "modbus-beyond",
        "Modbus beyond the machine: 0 lost, shortfall counted as polls behind schedule",
    ),
    ("modbus-latency", "Modbus read → hub commit p50 ≤ 10 ms at 1 poll/s"),
]


@dataclass(frozen=True)
class Plan:
    """How much of everything: the full run, or ``--quick``."""

    paho_small: int = 50_000
    paho_batches: int = 2_000
    paho_pings: int = 500
    sqlite_rows: int = 250_000
    sqlite_commits: int = 500
    modbus_s: float = 5.0
    sos_samples: int = 100
    telemetry_rate: float = 5_000.0
    city_edges: int = 50
    city_processes: int = 5
    city_rate: float = 5_000.0
    city_s: float = 60.0
    sustained_rate: float = SUSTAINED_GOAL
    sustained_warm_s: float = 10.0
    sustained_window_s: float = 20.0
    trials: int = 4
    footprint_warm_s: float = 20.0
    footprint_window_s: float = 30.0
    backlog: int = 1_000_000
    cases: int = 1_000
    case_timeout_s: float = 60.0
    ingest_events: int = 300_000
    modbus_warm_s: float = 15.0
    modbus_window_s: float = 30.0
    rtu_window_s: float = 20.0
    store_warm_s: float = 10.0
    store_window_s: float = 20.0
    pg_events: int = 60_000


QUICK = Plan(
    paho_small=10_000,
    paho_batches=300,
    paho_pings=100,
    sqlite_rows=50_000,
    sqlite_commits=100,
    modbus_s=2.0,
    sos_samples=30,
    city_s=25.0,
    sustained_warm_s=5.0,
    sustained_window_s=8.0,
    trials=2,
    footprint_warm_s=8.0,
    footprint_window_s=10.0,
    backlog=50_000,
    cases=200,
    case_timeout_s=20.0,
    ingest_events=50_000,
    modbus_warm_s=8.0,
    modbus_window_s=10.0,
    rtu_window_s=8.0,
    store_warm_s=6.0,
    store_window_s=10.0,
    pg_events=20_000,
)


@dataclass
class Limits:
    paho: machine.PahoLimit | None = None
    sqlite: machine.SqliteLimit | None = None
    modbus_per_s: float | None = None

    def rows_limit(self) -> str:
        parts = []
        if self.sqlite:
            parts.append(f"SQLite {num(self.sqlite.rows_per_s)} rows/s")
        if self.paho:
            parts.append(f"paho {num(self.paho.batched_events_per_s)} ev/s in batches")
        return "; ".join(parts) or "—"

    def rows_share(self, value: float) -> str:
        return share(value, self.sqlite.rows_per_s) if self.sqlite else "—"

    def sos_floor_ms(self) -> float | None:
        """Broker hop + two fsynced commits (edge outbox, hub): what no design can beat."""
        if self.paho is None or self.sqlite is None:
            return None
        return self.paho.latency_p99_ms + 2 * self.sqlite.commit_p99_ms

    def sos_limit(self) -> str:
        floor = self.sos_floor_ms()
        if floor is None:
            return "—"
        assert self.paho is not None and self.sqlite is not None
        return (
            f"p99 floor {floor:.1f} ms (paho p99 {self.paho.latency_p99_ms:.1f} + "
            f"2 × fsync commit p99 {self.sqlite.commit_p99_ms:.1f})"
        )


def split_text(rig: Rig, lat: Latencies) -> str:
    """Where the time went: the edge → hub part of the same presses, from the hub's rows."""
    split = rig.sos_edge_to_hub_ms(len(lat.samples))
    if not split:
        return ""
    return (
        f" Of that, edge outbox stamp → hub insert: p50 {percentile(split, 0.5):.1f} / "
        f"p99 {percentile(split, 0.99):.1f} ms (the rest: the pty and edge decode before, "
        "the hub's case work, commit and SSE after)."
    )


def sos_row(
    name: str,
    lat: Latencies,
    limits: Limits,
    how: str,
    goal_ms: float = SOS_GOAL_MS,
    goal_key: str = "",
) -> Row:
    if not lat.samples:
        return Row(
            name,
            lat.text(),
            limits.sos_limit(),
            f"p99 ≤ {goal_ms:.0f} ms",
            "missed (no sample)",
            how=how,
            goal_key=goal_key,
        )
    p99 = lat.p(0.99)
    floor = limits.sos_floor_ms()
    return Row(
        name,
        lat.text(),
        limits.sos_limit(),
        f"p99 ≤ {goal_ms:.0f} ms",
        at_most(p99, goal_ms),
        f"{p99 / floor:.0f}×" if floor else "—",
        how,
        goal_key,
    )


async def measure_limits(report: Report, limits: Limits, plan: Plan, work: Path) -> None:
    print("machine limits …", flush=True)
    limits.paho = await asyncio.to_thread(
        machine.paho_limit,
        work,
        small=plan.paho_small,
        batches=plan.paho_batches,
        pings=plan.paho_pings,
    )
    limits.sqlite = await asyncio.to_thread(
        machine.sqlite_limit, work, rows=plan.sqlite_rows, commits=plan.sqlite_commits
    )
    modbus = limits.modbus_per_s = await machine.modbus_limit(work, seconds=plan.modbus_s)
    p, s = limits.paho, limits.sqlite
    report.add(
        Row(
            "limit: paho QoS 1 publish → subscribe",
            f"{num(p.small_msgs_per_s)} msg/s (228 B); {num(p.batch_msgs_per_s)} msg/s "
            f"({p.batch_bytes // 1024} KiB 250-event batches = {num(p.batched_events_per_s)} "
            f"ev/s); latency p50 {p.latency_p50_ms:.2f} / p99 {p.latency_p99_ms:.2f} ms",
            how="One paho client publishes (max 100 in flight, as contract.mqtt sets it) "
            "through a private Mosquitto started like the stack's; a second process "
            "subscribes at QoS 1. Latency: 100 messages/s, one clock (CLOCK_MONOTONIC).",
        )
    )
    report.add(
        Row(
            "limit: SQLite batch insert, hub PRAGMAs",
            f"{num(s.rows_per_s)} rows/s; one-row commit p50 {s.commit_p50_ms:.2f} / "
            f"p99 {s.commit_p99_ms:.2f} ms",
            how="stdlib sqlite3, one executemany of 250 rows between BEGIN IMMEDIATE and "
            "COMMIT per transaction, into a fresh database made by the hub's own Alembic "
            "migrations (the events table with every index and trigger the hub's has: unique "
            "uid, device/time), with the hub's PRAGMAs (hub.db.engine.SQLITE_PRAGMAS: WAL, "
            "synchronous=FULL, …), uids made by the hub's event_uid, in the bench's work "
            "directory (the disk the hub uses). A fresh table is the best case; the hub "
            "also looks its uids and devices up, which the limit does not.",
        )
    )
    report.add(
        Row(
            "limit: pymodbus TCP read holding registers",
            f"{num(modbus)} requests/s",
            how="One AsyncModbusTcpClient, 10 registers per request, one request at a time, "
            "against a ModbusTcpServer process (pymodbus 3.x): the ceiling for a Modbus "
            "poller on this machine (see the Modbus rows below).",
        )
    )


async def measure_stack(
    report: Report, limits: Limits, plan: Plan, rows: set[str], work: Path
) -> None:
    rig = Rig(work)
    print("starting broker, hub, load generators, edge …", flush=True)
    await asyncio.to_thread(rig.start)
    try:
        async with (
            SimulatedButtonBus([SOS_BUTTON], link_path=rig.sos_link, retransmit_s=5) as bus,
            rig.client() as client,
        ):
            await asyncio.to_thread(rig.start_edge)
            probe = SosProbe(bus, rig.check)
            await probe.connect(client)
            await probe.sample(5, timeout_s=30)  # warm-up (edge connect, hub online), not counted
            if "sos" in rows:
                await sos_rows(report, limits, plan, rig, probe)
            if "city" in rows:
                await city_rows(report, limits, plan, rig, probe)
            if "fulledge" in rows:
                await full_edge_row(report, limits, plan, rig, probe)
            if "sustained" in rows:
                await sustained_row(report, limits, plan, rig)
            if "footprint" in rows:
                await footprint_row(report, plan, rig)
            if "backlog" in rows:
                await backlog_rows(report, limits, plan, rig, probe, client)
            await probe.close()
            if "escalation" in rows:
                await escalation_row(report, plan, rig, client)
            if "ingest" in rows:
                await ingest_rows(report, limits, plan, rig, client)
            if "modbus-hub" in rows:
                await modbus_store_rows(report, limits, plan, rig)
            if "pg" in rows:
                await scale_out_rows(report, limits, plan, rig)
    finally:
        await asyncio.to_thread(rig.close)


async def sos_rows(report: Report, limits: Limits, plan: Plan, rig: Rig, probe: SosProbe) -> None:
    print("SOS latency, idle …", flush=True)
    idle = await probe.sample(plan.sos_samples)
    report.add(
        sos_row(
            "SOS latency, idle",
            idle,
            limits,
            "t0 just before the SOS frame is written to the pty, t1 when the worker's SSE "
            "line arrives, both in the bench process; every press opens a new case; one "
            "press at a time, 100 ms apart." + split_text(rig, idle),
            goal_key="sos-idle",
        )
    )
    rate = plan.telemetry_rate
    print(f"SOS latency under {num(rate)} telemetry/s …", flush=True)
    await rig.wait_drained(600)
    seconds = plan.sos_samples * 0.12 + 20
    each = rate / LOAD_PTYS
    loads = asyncio.create_task(run_loads(rig.loads, each, int(each * seconds)))
    await asyncio.sleep(5)  # let the load reach steady state; not synchronisation
    e0, s0, t0 = rig.hub_events(), rig.outbox_seq(), time.monotonic()
    meters = cpu_windows(rig)
    loaded = await probe.sample(plan.sos_samples)
    hub_rate = (rig.hub_events() - e0) / (time.monotonic() - t0)
    edge_rate = (rig.outbox_seq() - s0) / (time.monotonic() - t0)
    cpu = {name: meter.share() for name, meter in meters.items()}
    for load in rig.loads:
        load.stop()
    await loads
    report.add(
        sos_row(
            f"SOS latency, {num(rate)} telemetry/s",
            loaded,
            limits,
            f"As idle, while {LOAD_PTYS} load processes write CB-100 heartbeats of "
            f"{LOAD_PTYS * 200} registered buttons on {LOAD_PTYS} more ptys of the same "
            f"edge. Meanwhile the edge stored {num(edge_rate)} events/s and the hub "
            f"committed {num(hub_rate)}/s. CPU (share of one core): {cpu_text(cpu)}."
            + split_text(rig, loaded),
        )
    )


async def city_rows(report: Report, limits: Limits, plan: Plan, rig: Rig, probe: SosProbe) -> None:
    print(
        f"SOS latency under city load: {plan.city_edges} synthetic edges, "
        f"{num(plan.city_rate)} events/s …",
        flush=True,
    )
    c = await city_load(
        rig,
        probe,
        edges=plan.city_edges,
        processes=plan.city_processes,
        rate=plan.city_rate,
        seconds=plan.city_s,
        samples=plan.sos_samples,
    )
    load = (
        f"{c.processes} processes of bench.synthetic_edge run {c.edges} edges (each its own "
        f"MQTT connection, window 8, {CITY_BATCH}-event batches, 20 registered buttons), "
        f"paced at {num(c.offered_per_s / c.edges)} events/s each, for {c.seconds:.0f} s"
    )
    report.add(
        sos_row(
            f"SOS latency under city load at the hub ({c.edges} edges, "
            f"{num(c.offered_per_s)} events/s offered)",
            c.sos,
            limits,
            f"{load}; meanwhile the SOS button on the real edge's pty (its own buses quiet) is "
            "pressed and timed as in the idle row, from the first 3 s of load to its end. "
            f"CPU (share of one core): {cpu_text(c.cpu)}." + split_text(rig, c.sos),
            goal_key="sos-city",
        )
    )
    report.add(
        Row(
            "city load at the hub: events/s achieved of offered",
            f"offered {num(c.offered_per_s)}/s; published {num(c.published_per_s)}/s; "
            f"acked {num(c.acked_per_s)}/s; hub committed {num(c.hub_per_s)}/s during the SOS "
            "window",
            limits.rows_limit(),
            f"≥ {num(plan.city_rate)}/s achieved",
            at_least(c.acked_per_s, plan.city_rate),
            limits.rows_share(c.acked_per_s),
            f"{load}. Published = what the windows let out (a hub that does not keep up "
            f"holds them shut: {num(c.behind_batches)} batches went out later than their "
            "schedule by more than one batch interval); acked = events acked ÷ (last ack − "
            "first publish); committed = MAX(events.id) growth over the SOS window.",
        )
    )


async def full_edge_row(
    report: Report, limits: Limits, plan: Plan, rig: Rig, probe: SosProbe
) -> None:
    print(
        "SOS latency at a fully loaded edge: 4 saturated RS-485 buses, 200 Modbus TCP "
        "devices at 1 Hz, 20 MQTT doors …",
        flush=True,
    )
    f = await full_edge(rig, probe, plan.sos_samples)
    report.add(
        sos_row(
            "SOS latency at a fully loaded edge (4 RS-485 buses at 9,600 baud, 200 Modbus "
            "TCP at 1 Hz, 20 MQTT doors)",
            f.sos,
            limits,
            f"The rig's edge restarted with: its {LOAD_PTYS} load ptys each written at "
            f"{f.bus_frames_per_s:.1f} CB-100 frames/s (a 9,600-baud 8N1 bus filled with "
            "14-byte frames and the edge's 13-byte link acks), 200 bench-meter10 devices "
            "(10 registers, one request) at 1 poll/s on bench.modbus_fleet endpoints, 20 "
            f"fr-door simulators on the edge's local Mosquitto (own accounts; a pass every "
            f"{DOOR_EVERY_S:.0f} s each, {f.doors_sent:,} sent), all registered at the hub. "
            "The SOS button has a pty of its own; presses as in the idle row after 10 s of "
            f"load. Meanwhile the edge stored {num(f.edge_stored_per_s)} events/s and the "
            f"hub committed {num(f.hub_per_s)}/s; edge RSS {f.rss_mib:.1f} MiB. CPU (share "
            f"of one core): {cpu_text(f.cpu)}." + split_text(rig, f.sos),
            goal_ms=SOS_LOADED_EDGE_GOAL_MS,
            goal_key="sos-fulledge",
        )
    )


async def sustained_row(report: Report, limits: Limits, plan: Plan, rig: Rig) -> None:
    print(f"sustained edge → hub, {num(plan.sustained_rate)}/s offered first …", flush=True)
    best, trials = await sustained(
        rig, plan.sustained_rate, plan.sustained_warm_s, plan.sustained_window_s, plan.trials
    )
    shown = best or max(trials, key=lambda t: t.hub_per_s)
    held = "held" if best else "best seen, none held"
    report.add(
        Row(
            "sustained edge → hub, events/s (batches of 250)",
            f"{num(shown.hub_per_s)}/s ({held})",
            limits.rows_limit(),
            f"≥ {num(SUSTAINED_GOAL)}/s held",
            at_least(shown.hub_per_s, SUSTAINED_GOAL)
            if best
            else f"{shown.hub_per_s / SUSTAINED_GOAL:.2f} missed (none held)",
            limits.rows_share(shown.hub_per_s),
            f"{LOAD_PTYS} load processes write CB-100 heartbeats on {LOAD_PTYS} ptys of the "
            "edge (the only way to feed it live frames here: one pty gives the edge ~5,000 "
            "frames/s); each try offers a rate for "
            f"{plan.sustained_window_s:.0f} s after {plan.sustained_warm_s:.0f} s warm-up and "
            "counts what the edge stored and the hub committed in the window; a rate held if "
            "both kept up with what was written (≥ 95%). The goal rate first, then a search: "
            + "; ".join(f"try {i}: {t.text()}" for i, t in enumerate(trials, 1))
            + f". CPU at the figure: {cpu_text(shown.cpu)}; hub "
            f"{shown.cpu.get('hub', 0) / max(1.0, shown.hub_per_s) * 1e6:.0f} µs CPU per event.",
            goal_key="sustained",
        )
    )


async def footprint_row(report: Report, plan: Plan, rig: Rig) -> None:
    print("edge footprint, 200 buttons at 100 events/s …", flush=True)
    f = await footprint(rig, plan.footprint_warm_s, plan.footprint_window_s)
    how = (
        "A second edge process, one pty, 200 CB-100 buttons (distinct serials, registered "
        "at the hub) sending heartbeats totalling 100/s; after "
        f"{plan.footprint_warm_s:.0f} s, CPU over {plan.footprint_window_s:.0f} s from "
        f"/proc (all threads), RSS at the end (peak {f.peak_mib:.1f} MiB); the hub "
        f"committed {num(f.hub_events)} of its events in the window and warm-up. Limit "
        "column: a Python that has only imported the edge's modules."
    )
    report.add(
        Row(
            "edge RSS, 200 buttons, 100 events/s",
            f"{f.rss_mib:.1f} MiB",
            f"{f.floor_rss_mib:.1f} MiB (imports only)",
            "≤ 60 MB",
            at_most(f.rss_mib * 1.048576, 60),
            f"{f.rss_mib / f.floor_rss_mib:.2f}×",
            how,
            goal_key="edge-rss",
        )
    )
    report.add(
        Row(
            "edge CPU, 200 buttons, 100 events/s",
            f"{f.cpu_share:.1%} of one core",
            "—",
            "≤ 10% of one core",
            at_most(f.cpu_share, 0.10),
            goal_key="edge-cpu",
        )
    )


async def backlog_rows(
    report: Report, limits: Limits, plan: Plan, rig: Rig, probe: SosProbe, client: httpx.AsyncClient
) -> None:
    print(f"backlog of {num(plan.backlog)} with the hub stopped, then drain …", flush=True)
    b = await backlog(rig, probe, client, plan.backlog)
    how = (
        f"Hub stopped (it says offline; the edge holds everything); {LOAD_PTYS} load "
        f"processes wrote heartbeats through {LOAD_PTYS} ptys as fast as the edge took "
        f"them ({num(b.build_per_s)} stored/s) until the outbox held {num(b.size)}. "
        f"Then the hub was started ({b.hub_restart_s:.1f} s to healthy)."
    )
    report.add(
        Row(
            f"backlog drain after an outage, events/s ({num(b.size)} events)",
            f"{num(b.drain_per_s)}/s",
            limits.rows_limit(),
            "≥ 20,000/s",
            at_least(b.drain_per_s, RATE_GOAL),
            limits.rows_share(b.drain_per_s),
            how + " Figure = backlog events ÷ (last − first hub commit time of them); "
            f"hub start to empty outbox: {b.drain_wall_s:.1f} s. CPU during the drain: "
            f"{cpu_text(b.cpu)}; per event: hub "
            f"{b.cpu.get('hub', 0) * b.drain_wall_s / max(1, b.size) * 1e6:.0f} µs, edge "
            f"{b.cpu.get('edge-demo', 0) * b.drain_wall_s / max(1, b.size) * 1e6:.0f} µs.",
            goal_key="drain",
        )
    )
    report.add(
        sos_row(
            f"SOS latency, during the {num(b.size)}-event drain",
            b.sos,
            limits,
            "As idle, 50 ms between presses, sampled while the hub had committed < 90% "
            "of the backlog." + split_text(rig, b.sos),
            goal_ms=SOS_LOADED_EDGE_GOAL_MS,
            goal_key="sos-drain",
        )
    )


async def escalation_row(report: Report, plan: Plan, rig: Rig, client: httpx.AsyncClient) -> None:
    print(f"escalation lateness with {plan.cases:,} open cases …", flush=True)
    lat = await escalation(rig, client, plan.cases, plan.case_timeout_s)
    p99 = lat.p(lat.stream_s, 0.99)
    report.add(
        Row(
            f"escalation lateness, {lat.cases:,} open cases",
            f"p50 {lat.p(lat.stream_s, 0.5) * 1000:.0f} / p99 {p99 * 1000:.0f} ms",
            "—",
            "p99 ≤ 1 s",
            at_most(p99, 1.0),
            "—",
            f"{lat.cases:,} households, one hotline case each via POST /api/v1/cases "
            f"(8 operators at once, {lat.open_s:.1f} s for all), grid-worker time "
            f"{plan.case_timeout_s:.0f} s, nobody acknowledges. Lateness = arrival of the "
            "escalation on the backup worker's SSE stream − (dispatch time + timeout). "
            f"The sweep's decision time (escalate audit row): p50 "
            f"{lat.p(lat.decided_s, 0.5) * 1000:.0f} / p99 "
            f"{lat.p(lat.decided_s, 0.99) * 1000:.0f} ms.",
        )
    )


async def ingest_rows(
    report: Report, limits: Limits, plan: Plan, rig: Rig, client: httpx.AsyncClient
) -> None:
    print(f"hub ingest, {num(plan.ingest_events)} events, with the case list polled …", flush=True)
    with rig.hub_sql() as db:
        cases = int(db.execute("SELECT COUNT(*) FROM cases").fetchone()[0])
    h = await hub_ingest(rig, client, plan.ingest_events)
    report.add(
        Row(
            "hub ingest on SQLite, events/s",
            f"{num(h.per_s)}/s",
            limits.rows_limit(),
            "≥ 20,000/s",
            at_least(h.per_s, RATE_GOAL),
            limits.rows_share(h.per_s),
            f"bench.synthetic_edge publishes {num(h.events)} heartbeats in pre-encoded "
            "250-event batches with the uplink's window (8) and retires them on the hub's "
            "end-to-end acks; figure = events ÷ (last ack − first publish). CPU: "
            f"{cpu_text(h.cpu)}; hub {h.cpu.get('hub', 0) / max(1.0, h.per_s) * 1e6:.0f} µs "
            "CPU per event.",
            goal_key="ingest",
        )
    )
    report.add(
        Row(
            "hub ingest on SQLite ÷ raw SQLite batch-insert limit",
            limits.rows_share(h.per_s),
            limits.rows_limit(),
            "≥ 50% of the limit",
            at_least(h.per_s / limits.sqlite.rows_per_s, 0.5) if limits.sqlite else "—",
            limits.rows_share(h.per_s),
            "The row above divided by the raw SQLite limit of the same run (limits row; not "
            "measured when the limits row is left out).",
            goal_key="ingest-share",
        )
    )
    report.add(
        Row(
            "case list API p99 under ingest load",
            h.api.text(),
            "—",
            "—",
            how=f"GET /api/v1/cases?limit=50, ten a second, during the ingest row above; "
            f"{cases:,} cases in the database.",
        )
    )


async def modbus_rows(report: Report, plan: Plan, work: Path) -> None:
    print("200 Modbus TCP devices polled every second by one edge …", flush=True)
    t = await tcp_fleet(work / "modbus-tcp", plan.modbus_warm_s, plan.modbus_window_s)
    how = (
        f"A real python -m edge with {t.devices} bin-sensor devices (the shipped profile, "
        "its poll set to every second), each its own Modbus TCP endpoint, served by "
        "bench.modbus_fleet in another process, which stamps every request as it arrives; "
        f"after {plan.modbus_warm_s:.0f} s, a {plan.modbus_window_s:.0f} s window. Jitter = "
        "|interval between two requests of one device − 1 s|, over all devices."
    )
    report.add(
        Row(
            f"Modbus TCP: {t.devices} devices polled every second",
            f"{t.polls_per_s:.0f} polls/s",
            f"{t.devices} polls/s scheduled",
            "—",
            "—",
            share(t.polls_per_s, t.devices),
            how,
        )
    )
    report.add(
        Row(
            f"Modbus TCP: schedule jitter, {t.devices} devices",
            f"p50 {t.jitter_p50_ms:.1f} / p99 {t.jitter_p99_ms:.1f} ms",
            "—",
            f"p99 ≤ {JITTER_GOAL_MS:.0f} ms",
            at_most(t.jitter_p99_ms, JITTER_GOAL_MS),
        )
    )
    report.add(
        Row(
            f"edge RSS and CPU, {t.devices} Modbus TCP devices at 1 poll/s",
            f"{t.rss_mib:.1f} MiB (peak {t.peak_mib:.1f}); {t.cpu_share:.1%} of one core",
            "—",
            "RSS ≤ 60 MB",
            at_most(t.rss_mib * 1.048576, 60),
        )
    )
    print("one RS-485 bus at 9600 baud with real byte timing …", flush=True)
    r = await rtu_wire(plan.rtu_window_s)
    report.add(
        Row(
            "RS-485 at 9600 baud: requests/s, 10 registers each",
            f"{r.requests_per_s:.1f}/s ({r.failures} failures)",
            f"{r.ceiling_per_s:.1f}/s wire ceiling",
            "≥ 80% of the ceiling",
            at_least(r.requests_per_s / r.ceiling_per_s, 0.8),
            share(r.requests_per_s, r.ceiling_per_s),
            "The edge's Modbus RTU driver polls one unit as often as its bus scheduler "
            "allows, through two ptys joined by a relay that delivers each direction's "
            "bytes at 9600 baud, 11 bits per character (8E1); a pymodbus serial server in "
            "its own process answers. Ceiling = 1 / ((8 + 25 bytes + 2 × 3.5 characters "
            "of silence) × 11 bits / 9600).",
        )
    )


async def modbus_store_rows(report: Report, limits: Limits, plan: Plan, rig: Rig) -> None:
    counting = (
        "Exact counting: the fleet process counts every reply it sends; after the window it "
        "stops serving and takes the count, the edge's outbox drains, and the hub's events "
        "rows of the edge are counted; lost = replies − rows (× 10 datapoints). The edge's "
        "own counters, from its status: "
    )
    pymodbus = f"pymodbus {num(limits.modbus_per_s)} requests/s" if limits.modbus_per_s else "—"

    async def one(period_s: float) -> ModbusStore:
        print(
            f"{store.DEVICES} Modbus TCP devices × {store.REGISTERS} registers every "
            f"{period_s * 1000:.0f} ms, through the hub …",
            flush=True,
        )
        return await store.modbus_store(
            rig,
            rig.workdir / f"modbus-{period_s * 1000:.0f}ms",
            period_s=period_s,
            warm_s=plan.store_warm_s,
            window_s=plan.store_window_s,
        )

    def how(m: ModbusStore) -> str:
        return (
            f"A real python -m edge ({store.EDGE_ID}) on the stack's broker and hub polls "
            f"{m.devices} Modbus TCP devices (each its own endpoint of bench.modbus_fleet in "
            f"another process; {store.REGISTERS} holding registers in one request, one event "
            f"per poll) every {m.period_s * 1000:.0f} ms; after {plan.store_warm_s:.0f} s, a "
            f"{m.window_s:.0f} s window for the rate. {counting}{m.edge_text()}; polls behind "
            f"schedule {m.behind_text()}. Edge CPU {m.cpu_share:.0%} of one core, RSS "
            f"{m.rss_mib:.1f} MiB."
        )

    def lost_text(m: ModbusStore) -> str:
        return (
            f"{num(m.lost * store.REGISTERS)} datapoints lost of "
            f"{num(m.replies * store.REGISTERS)} read ({num(m.stored)} readings stored)"
        )

    goal = await one(store.GOAL_PERIOD_S)
    dp_s = goal.polls_per_s * store.REGISTERS
    dp_goal = goal.scheduled_per_s * store.REGISTERS
    met = dp_s >= 0.98 * dp_goal and goal.lost == 0
    report.add(
        Row(
            f"Modbus TCP: {goal.devices} devices × {store.REGISTERS} registers every 100 ms, "
            "stored at the hub",
            f"{num(dp_s)} datapoints/s ({num(goal.polls_per_s)} polls/s); {lost_text(goal)}; "
            f"polls behind schedule {goal.behind_text()}",
            f"{pymodbus}; {num(goal.scheduled_per_s)} polls/s scheduled",
            f"{num(dp_goal)} datapoints/s, 0 lost",
            f"{dp_s / dp_goal:.2f} {'met' if met else 'missed'}",
            share(goal.polls_per_s, limits.modbus_per_s or 0.0),
            how(goal)
            + " Counted as met at ≥ 98% of the scheduled rate over the window (the window's "
            "edges cut polls) with 0 lost.",
            goal_key="modbus-goal",
        )
    )
    beyond = await one(store.BEYOND_PERIOD_S)
    shortfall = beyond.scheduled_per_s - beyond.polls_per_s
    counted = beyond.behind is not None and (beyond.behind > 0 or shortfall <= 0)
    verdict = "met" if beyond.lost == 0 and counted else "missed"
    report.add(
        Row(
            f"Modbus TCP beyond the machine: {beyond.devices} devices every "
            f"{beyond.period_s * 1000:.0f} ms",
            f"{num(beyond.polls_per_s)} polls/s of {num(beyond.scheduled_per_s)} scheduled "
            f"(shortfall {num(shortfall)}/s); {lost_text(beyond)}; polls behind schedule "
            f"{beyond.behind_text()}",
            f"{pymodbus}",
            "0 lost; shortfall counted as polls behind schedule",
            verdict + ("" if counted else " (shortfall not counted)"),
            share(beyond.polls_per_s, limits.modbus_per_s or 0.0),
            how(beyond),
            goal_key="modbus-beyond",
        )
    )
    slow = await one(store.LATENCY_PERIOD_S)
    lat = slow.latency_ms
    floor = (
        limits.paho.latency_p50_ms + 2 * limits.sqlite.commit_p50_ms
        if limits.paho and limits.sqlite
        else None
    )
    report.add(
        Row(
            f"Modbus TCP read → hub insert, {slow.devices} devices at 1 poll/s",
            (
                f"p50 {store.p50(lat):.1f} / p99 {percentile(lat, 0.99):.1f} ms (n={len(lat):,}); "
                if lat
                else "no readings; "
            )
            + lost_text(slow),
            f"p50 floor {floor:.1f} ms (paho p50 + 2 × fsync commit p50)" if floor else "—",
            "p50 ≤ 10 ms, 0 lost",
            f"{store.p50(lat) / 10:.2f} "
            + ("met" if lat and store.p50(lat) <= 10 and slow.lost == 0 else "missed"),
            f"{store.p50(lat) / floor:.0f}×" if floor and lat else "—",
            how(slow)
            + " Latency = events.received_at (hub insert) − events.occurred_at (the edge's "
            "stamp as the decoded reading is handed to its outbox), one machine clock, ms "
            "resolution.",
            goal_key="modbus-latency",
        )
    )


async def scale_out_rows(report: Report, limits: Limits, plan: Plan, rig: Rig) -> None:
    print("hub ingest on PostgreSQL, 1 and 2 replicas; SOS across replicas …", flush=True)
    ingest_name = "hub ingest on PostgreSQL, events/s"
    sos_name = "SOS latency across 2 hub replicas on PostgreSQL"
    assert rig.stack.broker is not None
    try:
        s = await scale_out(
            rig.workdir / "scale-out",
            rig.stack.broker,
            rig.stack.api_token,
            plan.pg_events,
            plan.sos_samples,
        )
    except NotAvailable as why:
        for name in (f"{ingest_name}, 1 replica", f"{ingest_name}, 2 replicas", sos_name):
            report.add(Row(name, f"not available: {why}"))
        return
    for result in s.ingest:
        report.add(
            Row(
                f"{ingest_name}, {result.replicas} replica{'s' if result.replicas > 1 else ''}",
                f"{num(result.per_s)}/s",
                limits.rows_limit(),
                "—",
                "—",
                limits.rows_share(result.per_s),
                f"{num(result.events)} heartbeats from {LOAD_PTYS} synthetic edges in one "
                "bench.synthetic_edge process (pre-encoded 250-event batches, window 8 each, "
                "flat out; several edges because replicas own edges), against "
                f"{result.replicas} python -m hub process(es) on one private PostgreSQL "
                "cluster (initdb in the work directory, fsync and synchronous_commit on) and "
                "the stack's broker; figure = events ÷ (last ack − first publish). CPU: "
                f"{cpu_text(result.cpu)}.",
            )
        )
    if s.replicas_missing is not None:
        report.add(Row(f"{ingest_name}, 2 replicas", f"not available: {s.replicas_missing}"))
        report.add(Row(sos_name, f"not available: {s.replicas_missing}"))
    elif s.sos:
        every = Latencies(
            [x for lat in s.sos.values() for x in lat.samples], sum(x.lost for x in s.sos.values())
        )
        report.add(
            sos_row(
                sos_name,
                every,
                limits,
                "A real edge with the SOS button on a pty, two hub replicas (each owns some "
                "edges); the grid worker's stream on each replica in turn, half the presses "
                "each, so one half crosses from the replica that ingests to the one that "
                "streams; presses as in the idle row. Per stream: "
                + "; ".join(f"{name}: {lat.text()}" for name, lat in s.sos.items())
                + ".",
            )
        )


async def run(plan: Plan, rows: set[str], mode: str) -> Report:
    report = Report(
        mode=mode, goals=GOALS, goals_title="Issue #13 goals, each with its row's verdict"
    )
    t0 = time.monotonic()
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM cancels the run, so every process it started is stopped on the way out.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    limits = Limits()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        if "limits" in rows:
            await measure_limits(report, limits, plan, work)
        if rows - {"limits", "modbus"}:
            await measure_stack(report, limits, plan, rows, work)
        if "modbus" in rows:
            await modbus_rows(report, plan, work)
    report.seconds = time.monotonic() - t0
    report.load_after = machine_load()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts: a few minutes")
    parser.add_argument(
        "--rows", default=",".join(ROWS), help=f"comma-separated subset of: {', '.join(ROWS)}"
    )
    parser.add_argument(
        "--write-docs", action="store_true", help="store the table in docs/benchmarks.md"
    )
    parser.add_argument(
        "--remark",
        action="append",
        default=[],
        help="a line to print under the table, e.g. that the machine was shared (repeatable)",
    )
    args = parser.parse_args(argv)
    rows = {r.strip() for r in args.rows.split(",") if r.strip()}
    unknown = rows - set(ROWS)
    if unknown:
        parser.error(f"unknown row(s) {', '.join(sorted(unknown))}; choose from {', '.join(ROWS)}")
    plan, mode = (QUICK, "quick") if args.quick else (Plan(), "full")
    if rows != set(ROWS):
        mode += f", rows {','.join(r for r in ROWS if r in rows)}"
    report = asyncio.run(run(plan, rows, mode))
    report.remarks.extend(args.remark)
    print()
    print(report.markdown())
    if args.write_docs:
        write_docs(REPO_ROOT / "docs" / "benchmarks.md", report)
        print("\nwritten to docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
