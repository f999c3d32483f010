"""Acceptance (issues #13, #14): a worker's live stream on one hub process sees a case that
another process ingested, through the shared database and the broker's wake-up.

Two arrangements, each with real Mosquitto, hub and edge processes and a real pty:
``all``/``all``, two replicas, the stream opened on the one that does *not* own the edge;
``api``/``ingest``, the stream on the API process of a hub whose ingest runs in a process
of its own. The replicas on a private PostgreSQL cluster, the split hub on one SQLite file
(both work on either back end; these are the arrangements each is for).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from hub.domain.ownership import owner_of
from simulators.button import LedState, SimulatedButtonBus
from simulators.hub_db import HubDatabase
from simulators.postgres import PostgresCluster, run_coroutine
from simulators.stack import Stack
from tests.conftest import wait_until
from tests.integration.conftest import worker_stream

pytestmark = pytest.mark.integration

EDGE = "edge-demo"  # the seeded devices belong to it
BUTTON = 77626


@contextlib.asynccontextmanager
async def api_of(stack: Stack, replica_id: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.replica_url(replica_id), headers=stack.headers(), timeout=10
    ) as client:
        yield client


async def batches_ingested(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    [line] = [x for x in text.splitlines() if x.startswith("hub_ingest_batches_total ")]
    return float(line.split()[1])


def database_url(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> Iterator[str]:
    """The processes' one database: a SQLite file, or a fresh database on the session's
    private PostgreSQL cluster."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'hub' / 'hub.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    name = f"replicas_{uuid.uuid4().hex[:12]}"
    url = run_coroutine(cluster.create_database(name))
    try:
        yield url
    finally:
        run_coroutine(cluster.drop_database(name))


def primary_worker(database_url: str, device_id: str) -> int:
    """The on-duty primary grid worker of a seeded device's household."""
    db = HubDatabase(database_url)
    try:
        return int(
            db.scalar(
                "SELECT DISTINCT s.worker_id FROM devices d "
                "JOIN households h ON h.id = d.household_id "
                "JOIN shifts s ON s.grid_id = h.grid_id AND s.role = 'primary' "
                "WHERE d.id = :device",
                {"device": device_id},
            )
        )
    finally:
        db.close()


@pytest.mark.parametrize(
    ("first_role", "second_role", "backend"),
    [
        ("all", "all", "postgres"),  # a city: replicas on PostgreSQL (issue #14)
        ("ingest", "api", "sqlite"),  # one host: ingest and API processes (issue #13)
    ],
    ids=["replicas-postgres", "split-sqlite"],
)
async def test_stream_on_one_process_sees_a_case_ingested_by_another(
    request: pytest.FixtureRequest,
    stack: Stack,
    tmp_path: Path,
    first_role: str,
    second_role: str,
    backend: str,
) -> None:
    urls = database_url(request, tmp_path, backend)
    try:
        await _stream_sees_the_others_case(stack, tmp_path, first_role, second_role, next(urls))
    finally:
        urls.close()


async def _stream_sees_the_others_case(
    stack: Stack, tmp_path: Path, first_role: str, second_role: str, database_url: str
) -> None:
    stack.start_hub_replica("a", role=first_role, seed_demo=True, database_url=database_url)
    stack.start_hub_replica("b", role=second_role, database_url=database_url)
    for replica in ("a", "b"):
        stack.wait_for_replica(replica, 30, path="/readyz")
    if second_role == "api":
        ingester, listener = "a", "b"
    else:
        ingester = owner_of(EDGE, {"a", "b"})
        assert ingester is not None
        listener = "b" if ingester == "a" else "a"
    worker = primary_worker(database_url, f"cb100-{BUTTON}")
    link = tmp_path / "bus0"
    async with SimulatedButtonBus([BUTTON], link_path=link, retransmit_s=1.0) as bus:
        stack.start_edge(EDGE, [str(link)])
        async with api_of(stack, listener) as client, worker_stream(client, worker) as stream:
            button = bus.button(BUTTON)
            button.press_sos()
            await wait_until(lambda: stream.notifications, 30, message="notification on the stream")
            note = stream.notifications[0]
            assert note["kind"] == "sos"
            await wait_until(
                lambda: LedState.RECEIVED in button.led_history, 20, message="0x81 received"
            )
            case = (await client.get(f"/api/v1/cases/{note['case_id']}")).json()
            assert case["state"] == "dispatched"
            # The listener took none of the edge's messages; the ingester took them.
            assert await batches_ingested(client) == 0
        async with api_of(stack, ingester) as client:
            assert await batches_ingested(client) > 0
    ingest_log = stack.replicas[ingester].log_text()
    assert "Traceback" not in ingest_log, ingest_log[-3000:]
    # The listener never took the edge's messages: the ingester committed the case.
    listener_log = stack.replicas[listener].log_text()
    assert "Traceback" not in listener_log, listener_log[-3000:]
