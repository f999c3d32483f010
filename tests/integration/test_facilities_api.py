"""The facilities API (door access log, parcels) of the real hub application, in process.

The app is ``hub.app.create_app`` served through httpx's ASGI transport, on a real,
migrated SQLite file with the demo community, and callers authenticate as they do in
production: bearer tokens of real accounts (checked against the database on every
request) or the static API token (an admin). The rows are written by the real door and
parcel handlers through the device-event router, as ingest would.

Demo community: grid 1 has households 1-3 and grid worker 1, grid 2 households 4-6 and
grid worker 2. The gate and the locker stand in grid 1.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import Event, Lane
from hub.app import create_app
from hub.auth.accounts import create_account
from hub.auth.tokens import issue_token
from hub.config import ApiSettings, HubConfig
from hub.db import schema
from hub.db.engine import create_engine
from hub.db.migrate import upgrade_to_head
from hub.domain.access import Role
from hub.domain.facility_rules import FacilitySettings
from hub.handlers.facilities import DoorHandler, ParcelHandler
from hub.handlers.router import DeviceEventRouter
from hub.services.org import seed_demo_community

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
STATIC_TOKEN = "s" * 32
#: name → (role, worker id)
ACCOUNTS = {
    "operator": (Role.OPERATOR, None),
    "hotline": (Role.HOTLINE, None),
    "worker1": (Role.WORKER, 1),  # grid 1
    "worker2": (Role.WORKER, 2),  # grid 2
}


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "hub.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade_to_head(url)

    async def seed() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await seed_demo_community(conn, T0)
            for device in (
                {"id": "door-gate-3", "profile": "fr-door", "grid_id": 1, "place": "3号门"},
                {"id": "locker-1", "profile": "parcel-locker", "grid_id": 1, "place": "快递柜"},
            ):
                await conn.execute(sa.insert(schema.devices).values(edge_id="edge-demo", **device))
        await engine.dispose()

    asyncio.run(seed())
    return path


@pytest.fixture
async def engine(template_db: Path, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    copy = tmp_path / "hub.db"
    shutil.copyfile(template_db, copy)
    engine = create_engine(f"sqlite+aiosqlite:///{copy}")
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def tokens(engine: AsyncEngine) -> dict[str, str]:
    issued = {"admin": STATIC_TOKEN}
    async with engine.begin() as conn:
        for name, (role, worker_id) in ACCOUNTS.items():
            account = await create_account(
                conn, username=name, role=role, worker_id=worker_id, password_hash="-", now=T0
            )
            token = await issue_token(conn, int(account["id"]), T0, timedelta(hours=1))
            issued[name] = token.token
    return issued


@pytest.fixture
def app(engine: AsyncEngine) -> FastAPI:
    config = HubConfig(api=ApiSettings(token=SecretStr(STATIC_TOKEN)))
    app = create_app(config)  # no lifespan: only the routes, on the test's database
    app.state.runtime = SimpleNamespace(config=config, engine=engine, clock=lambda: T0)
    return app


@pytest.fixture
async def clients(
    app: FastAPI, tokens: dict[str, str]
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    transport = httpx.ASGITransport(app=app)
    made = {
        name: httpx.AsyncClient(
            transport=transport,
            base_url="http://hub",
            headers={"Authorization": f"Bearer {token}"},
        )
        for name, token in tokens.items()
    }
    made["nobody"] = httpx.AsyncClient(transport=transport, base_url="http://hub")
    try:
        yield made
    finally:
        for client in made.values():
            await client.aclose()


async def feed(engine: AsyncEngine, *events: tuple[str, str, datetime, dict[str, Any]]) -> None:
    router = DeviceEventRouter([DoorHandler(SHANGHAI), ParcelHandler(FacilitySettings())])
    batch = [
        Event(seq, device, kind, Lane.NORMAL, at, data)
        for seq, (device, kind, at, data) in enumerate(events, start=1)
    ]
    async with engine.begin() as conn:
        await router.on_events(conn, batch, T0)


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture
async def door_log(engine: AsyncEngine) -> None:
    await feed(
        engine,
        ("door-gate-3", "face_pass", minutes(0), {"person_id": "p-1", "similarity": 0.91}),
        ("door-gate-3", "card_pass", minutes(10), {"card_id": "C-7"}),
        ("door-gate-3", "face_unknown", minutes(20), {"similarity": 0.35}),
        ("door-gate-3", "face_pass", minutes(30), {"person_id": "p-2", "similarity": 0.97}),
        ("door-gate-3", "door_forced", minutes(40), {}),
    )


def iso(at: datetime) -> str:
    return at.isoformat()


async def test_access_log_filters_and_pages(
    clients: dict[str, httpx.AsyncClient], door_log: None
) -> None:
    admin = clients["admin"]
    url = "/api/v1/doors/door-gate-3/access-log"
    everything = await admin.get(url)
    assert everything.status_code == 200, everything.text
    assert everything.headers["x-total-count"] == "5"
    assert [e["kind"] for e in everything.json()] == [
        "door_forced",
        "face_pass",
        "face_unknown",
        "card_pass",
        "face_pass",
    ]
    faces = (await admin.get(url, params={"kind": "face_pass"})).json()
    assert [(e["person_id"], e["similarity"]) for e in faces] == [("p-2", 0.97), ("p-1", 0.91)]
    window = await admin.get(url, params={"since": iso(minutes(10)), "until": iso(minutes(30))})
    assert [e["kind"] for e in window.json()] == ["face_unknown", "card_pass"]
    assert window.headers["x-total-count"] == "2"
    page = await admin.get(url, params={"limit": 2, "offset": 1})
    assert [e["kind"] for e in page.json()] == ["face_pass", "face_unknown"]
    assert page.headers["x-total-count"] == "5"
    # the same instant in Shanghai time
    local_since = minutes(30).astimezone(SHANGHAI).isoformat()
    assert len((await admin.get(url, params={"since": local_since})).json()) == 2


async def test_access_log_is_for_the_doors_grid_only(
    clients: dict[str, httpx.AsyncClient], door_log: None
) -> None:
    url = "/api/v1/doors/door-gate-3/access-log"
    assert (await clients["worker1"].get(url)).status_code == 200
    assert (await clients["operator"].get(url)).status_code == 200
    other_grid = await clients["worker2"].get(url)  # answered as a missing door (issue #11)
    assert other_grid.status_code == 404
    assert other_grid.json()["detail"] == "device door-gate-3 not found / 设备 door-gate-3 不存在"
    assert (await clients["hotline"].get(url)).status_code == 403  # not their business
    assert (await clients["nobody"].get(url)).status_code == 401
    assert (await clients["admin"].get("/api/v1/doors/door-9/access-log")).status_code == 404
    naive = await clients["admin"].get(url, params={"since": "2025-03-03T09:00:00"})
    assert naive.status_code == 422
    assert (await clients["admin"].get(url, params={"kind": "sos"})).status_code == 422


@pytest.fixture
async def lockers(engine: AsyncEngine) -> None:
    def deposit(at: datetime, household: int, parcel: str, box: int) -> Any:
        data = {"compartment": box, "household_id": household, "parcel_id": parcel}
        return ("locker-1", "parcel_deposited", at, data)

    await feed(
        engine,
        deposit(minutes(0), 1, "SF-1", 1),  # grid 1
        deposit(minutes(1), 2, "SF-2", 2),  # grid 1, picked up below
        deposit(minutes(2), 4, "SF-4", 3),  # grid 2
        deposit(minutes(3), 5, "SF-5", 4),  # grid 2, overdue below
        ("locker-1", "parcel_picked_up", minutes(5), {"compartment": 2, "parcel_id": "SF-2"}),
    )
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(schema.parcels)
            .where(schema.parcels.c.parcel_id == "SF-5")
            .values(overdue_at=T0 + timedelta(hours=48))
        )


async def test_parcels_filter_by_household_state_and_locker(
    clients: dict[str, httpx.AsyncClient], lockers: None
) -> None:
    hotline = clients["hotline"]
    everything = await hotline.get("/api/v1/parcels")
    assert everything.status_code == 200, everything.text
    assert [p["parcel_id"] for p in everything.json()] == ["SF-5", "SF-4", "SF-2", "SF-1"]
    assert everything.headers["x-total-count"] == "4"
    states = {p["parcel_id"]: p["state"] for p in everything.json()}
    assert states == {"SF-1": "waiting", "SF-2": "picked_up", "SF-4": "waiting", "SF-5": "overdue"}

    async def ids(**params: Any) -> list[str]:
        answer = await hotline.get("/api/v1/parcels", params=params)
        assert answer.status_code == 200, answer.text
        return [p["parcel_id"] for p in answer.json()]

    assert await ids(state="waiting") == ["SF-4", "SF-1"]
    assert await ids(state="overdue") == ["SF-5"]
    assert await ids(state="picked_up") == ["SF-2"]
    assert await ids(household_id=4) == ["SF-4"]
    assert await ids(device_id="locker-1", limit=1, offset=1) == ["SF-4"]
    assert await ids(device_id="locker-9") == []
    first = (await hotline.get("/api/v1/parcels", params={"household_id": 1})).json()[0]
    assert (first["household_address"], first["place"], first["grid_id"]) == (
        "幸福里小区3号楼2单元301室",
        "快递柜",
        1,
    )
    bad = await hotline.get("/api/v1/parcels", params={"state": "lost"})
    assert bad.status_code == 422


async def test_grid_worker_sees_only_parcels_of_their_grids(
    clients: dict[str, httpx.AsyncClient], lockers: None
) -> None:
    worker2 = clients["worker2"]
    mine = await worker2.get("/api/v1/parcels")
    assert mine.status_code == 200
    assert [p["parcel_id"] for p in mine.json()] == ["SF-5", "SF-4"]
    assert mine.headers["x-total-count"] == "2"
    refused = await worker2.get("/api/v1/parcels", params={"household_id": 1})
    missing = await worker2.get("/api/v1/parcels", params={"household_id": 999})
    # another grid's household is answered as a missing one (issue #11)
    assert refused.status_code == missing.status_code == 404
    assert refused.json()["detail"] == missing.json()["detail"].replace("999", "1")
    worker1 = await clients["worker1"].get("/api/v1/parcels", params={"household_id": 1})
    assert [p["parcel_id"] for p in worker1.json()] == ["SF-1"]
    assert (await clients["nobody"].get("/api/v1/parcels")).status_code == 401
