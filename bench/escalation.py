"""Escalation lateness with 1,000 open cases.

The hub is restarted with a grid-worker acknowledgement time of ``timeout_s`` (and a long
one for the backup tier, so each case escalates once). 1,000 households are added to the
demo grids, and a hotline operator opens one case for each through the API
(``POST /api/v1/cases``, 8 at a time) — a burst of calls nobody acknowledges. Each case's
deadline is its dispatch time (the ``dispatch`` audit row) + ``timeout_s``.

Two lateness figures per case:

- **stream**: when the escalation notification reached the backup worker's phone (SSE,
  wall clock in the bench process) minus the deadline — what the next tier experiences;
- **decided**: the ``escalate`` audit row's time (the sweep's ``now``) minus the deadline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from bench.measure import percentile
from bench.rig import QUIET_ESCALATION, Rig, worker_id
from simulators.worker_phone import stream_events

BACKUP_PHONE = "13800000003"  # 孙强, backup worker of both demo grids


@dataclass
class Lateness:
    cases: int
    open_s: float
    stream_s: list[float]
    decided_s: list[float]
    missing: int

    def p(self, values: list[float], q: float) -> float:
        return percentile(values, q) if values else float("nan")


def seed_households(rig: Rig, count: int) -> list[int]:
    """``count`` households with one resident each, alternating between the demo grids."""
    with rig.hub_sql() as db:
        grids = [row[0] for row in db.execute("SELECT id FROM grids ORDER BY id")]
        ids = []
        for i in range(count):
            cursor = db.execute(
                "INSERT INTO households (grid_id, address, lives_alone, medical_notes, notes) "
                "VALUES (?, ?, 0, '', '')",
                (grids[i % len(grids)], f"压测小区{i // 100 + 1}号楼{i % 100 + 1:03d}室"),
            )
            assert cursor.lastrowid is not None
            ids.append(cursor.lastrowid)
            db.execute(
                "INSERT INTO residents (household_id, name) VALUES (?, ?)",
                (cursor.lastrowid, f"居民{i:04d}"),
            )
    return ids


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def escalation(rig: Rig, client: httpx.AsyncClient, cases: int, timeout_s: float) -> Lateness:
    households = seed_households(rig, cases)
    await asyncio.to_thread(
        rig.restart_hub,
        escalation={**QUIET_ESCALATION, "grid_worker_s": timeout_s},
    )
    arrivals: dict[int, float] = {}
    ready = asyncio.Event()

    async def follow(backup: int) -> None:
        async for event, data in stream_events(client, backup):
            if event == "ready":
                ready.set()
            elif event == "notification" and data.get("tier") == "backup_worker":
                arrivals.setdefault(int(data["case_id"]), time.time())

    reader = asyncio.create_task(follow(await worker_id(client, BACKUP_PHONE)))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        opened: list[int] = []
        todo = iter(households)
        t0 = time.monotonic()

        async def operator(name: str) -> None:
            for household in todo:
                reply = await client.post(
                    "/api/v1/cases",
                    json={"household_id": household, "note": "压测 bench", "operator": name},
                )
                reply.raise_for_status()
                opened.append(int(reply.json()["case_id"]))

        await asyncio.gather(*(operator(f"bench-{k}") for k in range(8)))
        open_s = time.monotonic() - t0
        wanted = set(opened)
        deadline = time.monotonic() + timeout_s + open_s + 600
        while not wanted <= arrivals.keys():
            if time.monotonic() > deadline:
                missing = len(wanted - arrivals.keys())
                raise TimeoutError(f"bench: {missing} case(s) never escalated")
            await asyncio.sleep(0.2)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    marks = ",".join("?" * len(opened))
    with rig.hub_sql() as db:
        rows = db.execute(
            f"SELECT case_id, action, MIN(at) FROM case_audit WHERE case_id IN ({marks}) "
            "AND action IN ('dispatch', 'escalate') GROUP BY case_id, action",
            opened,
        ).fetchall()
    dispatched = {c: _utc(at) for c, action, at in rows if action == "dispatch"}
    escalated = {c: _utc(at) for c, action, at in rows if action == "escalate"}
    stream, decided = [], []
    for case_id in opened:
        deadline = dispatched[case_id].timestamp() + timeout_s
        stream.append(arrivals[case_id] - deadline)
        if case_id in escalated:
            decided.append(escalated[case_id].timestamp() - deadline)
    return Lateness(
        cases=len(opened),
        open_s=open_s,
        stream_s=stream,
        decided_s=decided,
        missing=len(opened) - len(decided),
    )
