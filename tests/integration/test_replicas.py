"""Acceptance (issues #13, #14): a worker's live stream on one hub process sees a case that
another process ingested, through the shared database and the broker's wake-up.

Two arrangements, each with real Mosquitto, hub and edge processes and a real pty:
``all``/``all``, two replicas, the stream opened on the one that does *not* own the edge;
``api``/``ingest``, the stream on the API process of a hub whose ingest runs in a process
of its own. The replicas on a private PostgreSQL cluster, the split hub on one SQLite file
(both work on either back end; these are the arrangements each is for).

And the broker as production runs it (``docker/mosquitto.conf``): no anonymous client,
the hub's password and ACL files, ``use_username_as_clientid``. Each replica logs in with
an account of its own; two edges provisioned through the API, one owned by each replica,
each get a help call through, and the broker never throws a connection out for another.
"""

from __future__ import annotations

import contextlib
import itertools
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


async def sharing_the_edges(database_url: str, replicas: tuple[str, ...]) -> None:
    """Wait until every replica has warmed up and each has heard the others say so.

    A replica that is ready (``/readyz``) owns nothing until it has warmed up
    (``hub.replicas``), and the others hand its edges over only at their next heartbeat
    after that: an edge started sooner is ingested by the replica that came up first."""
    db = HubDatabase(database_url)
    try:

        def beats() -> dict[str, tuple[int, bool]]:
            rows = db.rows("SELECT replica_id, beat, ready FROM hub_replicas")
            return {str(r): (int(beat), bool(ready)) for r, beat, ready in rows}

        def all_warm() -> dict[str, tuple[int, bool]] | None:
            seen = beats()
            return seen if all(seen.get(r, (0, False))[1] for r in replicas) else None

        warm = await wait_until(
            all_warm,
            60,
            message=f"replicas {replicas} warmed up",
        )
        await wait_until(
            lambda: all(beats()[r][0] > warm[r][0] for r in replicas),
            30,
            message="a heartbeat of every replica after all were warm",
        )
    finally:
        db.close()


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


async def test_replicas_on_accounts_of_their_own_both_ingest_under_username_as_client_id(
    request: pytest.FixtureRequest, stack: Stack, tmp_path: Path
) -> None:
    """Issue #14: with one shared account the broker named both replicas' connections
    "hub" and threw each out for the other in a loop (the compose stack measured 49
    takeovers in 90 s). Each replica now has ``hub.<replica>``, written by
    ``python -m hub broker-files`` and by every replica for all of them."""
    urls = database_url(request, tmp_path, "postgres")
    try:
        await _both_ingest_on_their_own_accounts(stack, tmp_path, next(urls))
    finally:
        urls.close()


SECOND_BUTTON = 77628  # another household's button, moved to the second edge


async def _both_ingest_on_their_own_accounts(
    stack: Stack, tmp_path: Path, database_url: str
) -> None:
    broker = stack.start_broker_for_replicas(["a", "b"], database_url=database_url)
    passwd = (tmp_path / "mosquitto" / "passwd").read_text()
    assert sorted(line.split(":")[0] for line in passwd.splitlines()) == [
        "hub.a",
        "hub.a.alarm",
        "hub.b",
        "hub.b.alarm",
    ]
    stack.start_hub_replica("a", seed_demo=True, database_url=database_url)
    stack.start_hub_replica("b", database_url=database_url)
    for replica in ("a", "b"):
        stack.wait_for_replica(replica, 30, path="/readyz")  # connected with its account
    await sharing_the_edges(database_url, ("a", "b"))
    # The second edge's name is chosen so that the other replica owns it.
    first_owner = owner_of(EDGE, {"a", "b"})
    second_edge = next(
        name
        for name in (f"edge-north-{n}" for n in itertools.count(1))
        if owner_of(name, {"a", "b"}) != first_owner
    )
    owners = {EDGE: first_owner, second_edge: owner_of(second_edge, {"a", "b"})}
    assert set(owners.values()) == {"a", "b"}
    buses = {EDGE: (BUTTON, tmp_path / "bus0"), second_edge: (SECOND_BUTTON, tmp_path / "bus1")}
    async with api_of(stack, "a") as client:
        moved = await client.patch(
            f"/api/v1/devices/cb100-{SECOND_BUTTON}", json={"edge_id": second_edge}
        )
        assert moved.status_code == 200, moved.text
        passwords = {}
        for edge_id in buses:  # each rewrites the files on replica a and reloads the broker
            issued = await client.post("/api/v1/edges", json={"edge_id": edge_id})
            assert issued.status_code == 201, issued.text
            assert issued.json()["broker_reloaded"] is True
            passwords[edge_id] = issued.json()["password"]
    async with contextlib.AsyncExitStack() as opened:
        bus = {
            edge_id: await opened.enter_async_context(
                SimulatedButtonBus([serial], link_path=link, retransmit_s=1.0)
            )
            for edge_id, (serial, link) in buses.items()
        }
        for edge_id, (_serial, link) in buses.items():
            stack.start_edge(
                edge_id,
                [str(link)],
                broker={"host": "127.0.0.1", "port": broker.port, "username": edge_id},
                extra_env={"EDGE__BROKER__PASSWORD": passwords[edge_id]},
            )
        for edge_id, (serial, _link) in buses.items():
            button = bus[edge_id].button(serial)
            button.press_sos()
            await wait_until(
                lambda b=button: LedState.RECEIVED in b.led_history,
                30,
                message=f"0x81 received by button {serial} behind {edge_id}",
            )
    # Each replica took its own edge's batches, and the help call of that edge.
    for edge_id, owner in owners.items():
        async with api_of(stack, owner) as client:
            assert await batches_ingested(client) > 0, f"{owner} ingested nothing of {edge_id}"
            assert (await client.get("/readyz")).status_code == 200
    # Both replicas' links under their own names, and never one thrown out for another.
    log = broker.log_text()
    for account in ("hub.a", "hub.a.alarm", "hub.b", "hub.b.alarm", EDGE, second_edge):
        assert f" as {account} " in log, f"{account} never connected:\n{log[-3000:]}"
    assert broker.takeovers() == 0, log[-3000:]
    for name, process in [*stack.replicas.items(), *stack.edges.items()]:
        assert "Traceback" not in process.log_text(), f"{name}: {process.log_text()[-3000:]}"
