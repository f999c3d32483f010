"""Device state and history: the bulk state handler on a real SQLite file, and the read API
in process (httpx over ASGI) with grid scoping, filters, pages and readable 422s.

Demo community: grid 1 has households 1-3, grid 2 households 4-6; worker 1 serves grid 1.
Each test registers the meters it needs: meter-000000000001 in household 1 (grid 1),
meter-000000000002 in grid 2 (no household).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import Event, Lane
from hub.app import create_app
from hub.db.bulk import bulk_execute
from hub.db.schema import device_state, devices, events
from hub.domain.access import Principal, Role
from hub.handlers.device_state import DeviceStateHandler
from hub.handlers.router import DeviceEventRouter
from tests.hub.api_as import acting_as, api_config, clients_as

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
M1, M2 = "meter-000000000001", "meter-000000000002"
PRINCIPALS = {
    "admin": Principal(kind="token", name="api", role=Role.ADMIN),
    "hotline": Principal(kind="user", name="desk", role=Role.HOTLINE),
    "worker1": Principal(
        kind="user", name="wangli", role=Role.WORKER, worker_id=1, grid_ids=frozenset({1})
    ),
}


@pytest.fixture
async def meters(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(devices).values(profile="dlt645-meter"),
            [
                {"id": M1, "household_id": 1, "grid_id": None, "edge_id": "edge-1"},
                {"id": M2, "household_id": None, "grid_id": 2, "edge_id": "edge-2"},
            ],
        )


def reading(seq: int, device: str, at: datetime, **data: Any) -> Event:
    return Event(seq, device, "meter_reading", Lane.TELEMETRY, at, data)


async def store(engine: AsyncEngine, batch: Sequence[Event], now: datetime = T0) -> None:
    """What ingest does: store the events, then run the router in the same transaction."""
    router = DeviceEventRouter([DeviceStateHandler()])
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(events),
            [
                {
                    "uid": f"{e.device_id}:{e.seq}:{e.kind}",
                    "edge_id": "edge-1",
                    "device_id": e.device_id,
                    "kind": e.kind,
                    "lane": e.lane.name.lower(),
                    "occurred_at": e.occurred_at,
                    "received_at": now,
                    "data": e.data,
                }
                for e in batch
            ],
        )
        await router.on_events(conn, batch, now)


async def state_row(engine: AsyncEngine, device_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        query = sa.select(device_state).where(device_state.c.device_id == device_id)
        return dict((await conn.execute(query)).mappings().one())


# --- the handler -------------------------------------------------------------------------


@pytest.mark.usefixtures("meters")
async def test_latest_value_of_each_field_across_partial_polls_and_batches(
    engine: AsyncEngine,
) -> None:
    t = [T0 + timedelta(minutes=i) for i in range(5)]
    await store(engine, [reading(1, M1, t[0], energy_kwh=10.0, voltage_v=220.1)])
    await store(
        engine,
        [reading(2, M1, t[1], energy_kwh=10.5), reading(3, M1, t[2], voltage_v=219.0)],
    )
    row = await state_row(engine, M1)
    assert row["readings"] == {"energy_kwh": 10.5, "voltage_v": 219.0}
    assert row["reading_times"] == {
        "energy_kwh": "2025-03-03T01:01:00.000Z",
        "voltage_v": "2025-03-03T01:02:00.000Z",
    }
    assert (row["last_event_kind"], row["last_event_at"]) == ("meter_reading", t[2])
    assert row["online"] is None  # never reported either way

    # A heartbeat changes nothing here: "alive" is the devices table's last_seen (the
    # state rows are not rewritten for every heartbeat of every button: see STATELESS_KINDS).
    await store(engine, [Event(4, M1, "heartbeat", Lane.TELEMETRY, t[3], {"frame_seq": 9})])
    row = await state_row(engine, M1)
    assert (row["last_event_kind"], row["last_event_at"]) == ("meter_reading", t[2])
    assert row["readings"] == {"energy_kwh": 10.5, "voltage_v": 219.0}


@pytest.mark.usefixtures("meters")
async def test_an_older_reading_arriving_late_changes_nothing(engine: AsyncEngine) -> None:
    new, old = T0 + timedelta(minutes=10), T0
    await store(engine, [reading(1, M1, new, energy_kwh=12.0)])
    await store(engine, [reading(2, M1, old, energy_kwh=11.0, voltage_v=230.0)])
    row = await state_row(engine, M1)
    assert row["readings"] == {"energy_kwh": 12.0}
    assert (row["last_event_at"], row["readings_at"]) == (new, new)
    # Inside one batch the newest also wins, whatever the order.
    await store(
        engine,
        [
            reading(3, M1, new + timedelta(minutes=2), energy_kwh=14.0),
            reading(4, M1, new + timedelta(minutes=1), energy_kwh=13.0, voltage_v=221.0),
        ],
    )
    assert (await state_row(engine, M1))["readings"] == {"energy_kwh": 14.0, "voltage_v": 221.0}


@pytest.mark.usefixtures("meters")
async def test_online_flag_follows_the_newest_offline_or_online_report(
    engine: AsyncEngine,
) -> None:
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    offline = Event(1, M2, "device.offline", Lane.NORMAL, t1, {"reason": "3 polls failed"})
    await store(engine, [offline])
    row = await state_row(engine, M2)
    assert (row["online"], row["offline_reason"], row["online_changed_at"]) == (
        False,
        "3 polls failed",
        t1,
    )
    await store(engine, [Event(2, M2, "device.online", Lane.NORMAL, t2, {})])
    row = await state_row(engine, M2)
    assert (row["online"], row["offline_reason"]) == (True, "")
    stale = Event(3, M2, "device.offline", Lane.NORMAL, t1, {"reason": "late"})
    await store(engine, [stale])
    assert (await state_row(engine, M2))["online"] is True


async def test_one_write_per_batch_however_many_events(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"meter-{i:012d}" for i in range(100, 150)]
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(devices), [{"id": i, "profile": "dlt645-meter", "grid_id": 1} for i in ids]
        )
    writes: list[int] = []

    async def counting(conn: Any, statement: Any, rows: Sequence[Any]) -> None:
        writes.append(len(rows))
        await bulk_execute(conn, statement, rows)

    monkeypatch.setattr("hub.handlers.device_state.bulk_execute", counting)
    batch = [
        reading(n, ids[n % 50], T0 + timedelta(seconds=n), energy_kwh=float(n)) for n in range(500)
    ]
    await store(engine, batch)
    assert writes == [50]  # one statement, one row per device
    assert (await state_row(engine, ids[7]))["readings"] == {"energy_kwh": 457.0}


# --- the API -------------------------------------------------------------------------------


@pytest.fixture
def app(engine: AsyncEngine) -> FastAPI:
    config = api_config()
    app = create_app(config)
    app.state.runtime = SimpleNamespace(config=config, engine=engine, clock=lambda: T0)

    acting_as(app, PRINCIPALS)
    return app


@pytest.fixture
async def clients(app: FastAPI) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with clients_as(app, PRINCIPALS) as made:
        yield made


@pytest.fixture
async def history(engine: AsyncEngine, meters: None) -> None:
    """M1: 30 readings a minute apart, then offline; M2 (grid 2): 5 readings."""
    batch = [reading(n, M1, T0 + timedelta(minutes=n), energy_kwh=100.0 + n) for n in range(30)]
    batch.append(Event(30, M1, "device.offline", Lane.NORMAL, T0 + timedelta(minutes=30), {}))
    batch += [reading(n, M2, T0 + timedelta(minutes=n), water=1) for n in range(5)]
    await store(engine, batch)


@pytest.mark.usefixtures("history")
async def test_state_and_events_for_staff_and_the_grid_worker(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    state = await clients["worker1"].get(f"/api/v1/devices/{M1}/state")
    assert state.status_code == 200, state.text
    body = state.json()
    assert body["values"] == {"energy_kwh": 129.0}
    assert (body["online"], body["last_event_kind"]) == (False, "device.offline")
    # Other grids: the device is answered as a missing one (issue #11), nothing of theirs
    # in the list.
    for path in (
        f"/api/v1/devices/{M2}/state",
        f"/api/v1/devices/{M2}/events",
        f"/api/v1/devices/{M2}/readings",
        f"/api/v1/events?device_id={M2}",
    ):
        other = await clients["worker1"].get(path)
        missing = await clients["worker1"].get(path.replace(M2, "meter-000000000999"))
        assert other.status_code == missing.status_code == 404, path
        assert other.json() == {"detail": f"device {M2} not found / 设备 {M2} 不存在"}
        assert missing.json()["detail"] == other.json()["detail"].replace(M2, "meter-000000000999")
    seen = await clients["worker1"].get("/api/v1/events", params={"limit": 500})
    assert {e["device_id"] for e in seen.json()} == {M1}
    everything = await clients["hotline"].get("/api/v1/events", params={"limit": 500})
    assert len(everything.json()) == 36
    unknown = await clients["admin"].get("/api/v1/devices/meter-999999999999/state")
    assert unknown.status_code == 404
    never_heard = await clients["admin"].get("/api/v1/devices/cb100-77626/state")
    assert never_heard.json()["values"] == {} and never_heard.json()["online"] is None


@pytest.mark.usefixtures("history")
async def test_events_newest_first_filtered_and_paged_by_cursor(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    admin = clients["admin"]
    first = (await admin.get(f"/api/v1/devices/{M1}/events", params={"limit": 10})).json()
    assert [e["kind"] for e in first[:2]] == ["device.offline", "meter_reading"]
    ids = [e["id"] for e in first]
    assert ids == sorted(ids, reverse=True)
    second = await admin.get(
        f"/api/v1/devices/{M1}/events", params={"limit": 10, "before_id": ids[-1]}
    )
    assert [e["id"] for e in second.json()] == list(range(ids[-1] - 1, ids[-1] - 11, -1))
    by_offset = await admin.get(f"/api/v1/devices/{M1}/events", params={"limit": 10, "offset": 10})
    assert by_offset.json() == second.json()

    normal = await admin.get("/api/v1/events", params={"lane": "normal"})
    assert [e["kind"] for e in normal.json()] == ["device.offline"]
    window = await admin.get(
        "/api/v1/events",
        params={
            "device_id": M1,
            "kind": "meter_reading",
            "since": "2025-03-03T09:05:00+08:00",
            "until": "2025-03-03T01:08:00Z",
        },
    )
    assert [e["data"]["energy_kwh"] for e in window.json()] == [107.0, 106.0, 105.0]


@pytest.mark.usefixtures("meters")
async def test_one_device_is_listed_by_its_own_time_many_by_arrival(
    engine: AsyncEngine, clients: dict[str, httpx.AsyncClient]
) -> None:
    same = T0 + timedelta(minutes=5)
    await store(engine, [reading(n, M2, same, n=n) for n in range(4)])  # one instant
    await store(engine, [reading(9, M2, T0, n=9)])  # an old reading arriving late
    admin = clients["admin"]
    pages: list[int] = []
    cursor: dict[str, Any] = {}
    while True:
        page = (
            await admin.get(f"/api/v1/devices/{M2}/events", params={"limit": 2, **cursor})
        ).json()
        if not page:
            break
        pages += [e["data"]["n"] for e in page]
        cursor = {"before_id": page[-1]["id"]}
    assert pages == [3, 2, 1, 0, 9]
    arrival = (await admin.get("/api/v1/events")).json()
    assert [e["data"]["n"] for e in arrival] == [9, 3, 2, 1, 0]
    unknown = await admin.get(f"/api/v1/devices/{M2}/events", params={"before_id": 999})
    assert unknown.status_code == 422
    assert "before_id" in unknown.json()["detail"]


@pytest.mark.usefixtures("history")
async def test_readings_as_a_time_series_of_one_field(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    admin = clients["admin"]
    series = await admin.get(
        f"/api/v1/devices/{M1}/readings", params={"field": "energy_kwh", "limit": 3}
    )
    assert series.status_code == 200, series.text
    assert [(p["occurred_at"], p["value"]) for p in series.json()] == [
        ("2025-03-03T01:29:00Z", 129.0),
        ("2025-03-03T01:28:00Z", 128.0),
        ("2025-03-03T01:27:00Z", 127.0),
    ]
    whole = await admin.get(f"/api/v1/devices/{M1}/readings", params={"limit": 500})
    assert len(whole.json()) == 30  # the telemetry lane only: not the offline event
    missing = await admin.get(f"/api/v1/devices/{M1}/readings", params={"field": "voltage_v"})
    assert missing.json() == []


BAD_FILTERS: list[tuple[dict[str, Any], str]] = [
    ({"limit": 501}, "limit"),
    ({"limit": 0}, "limit"),
    ({"lane": "fast"}, "lane"),
    ({"since": "2025-03-03T09:00:00"}, "since"),  # no time zone
    ({"since": "yesterday"}, "since"),
    ({"since": "2025-03-03T02:00:00Z", "until": "2025-03-03T01:00:00Z"}, "until must be later"),
    ({"before_id": -1}, "before_id"),
    ({"kind": "DROP TABLE"}, "kind"),
    ({"device_id": "a/b"}, "device_id"),
]


@pytest.mark.usefixtures("meters")
async def test_bad_filters_are_422_naming_the_field(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    for params, says in BAD_FILTERS:
        response = await clients["admin"].get("/api/v1/events", params=params)
        assert response.status_code == 422, (params, response.text)
        assert says in response.json()["detail"], (params, response.json())
    readings = await clients["admin"].get(f"/api/v1/devices/{M1}/readings?field=a-b")
    assert readings.status_code == 422
    assert "field" in readings.json()["detail"]
