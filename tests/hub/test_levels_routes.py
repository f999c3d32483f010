"""Districts, streets, communities, shift overrides and the import route, in process (issue #16).

The same set-up as ``test_registry_routes``: the demo community (示范区 1 → 和平街道 1 →
幸福里社区 1, grids 1 and 2; worker 1 王丽 in grid 1, worker 4 周洁 the community station,
worker 5 吴刚 the street centre), the caller named by a test header.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.app import create_app
from hub.db import schema
from simulators.stack import REPO_ROOT
from tests.hub.api_as import acting_as, api_config, clients_as
from tests.hub.test_registry_routes import PRINCIPALS, T0

Clients = dict[str, httpx.AsyncClient]


@pytest.fixture
async def clients(engine: AsyncEngine) -> AsyncIterator[Clients]:
    config = api_config()
    app: FastAPI = create_app(config)
    app.state.runtime = SimpleNamespace(config=config, engine=engine, clock=lambda: T0)

    acting_as(app, PRINCIPALS)
    async with clients_as(app, PRINCIPALS) as made:
        yield made


async def actions(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        query = sa.select(schema.audit_log.c.action).order_by(schema.audit_log.c.id)
        return list((await conn.execute(query)).scalars())


async def test_the_four_levels_are_created_read_changed_and_retired(
    clients: Clients, engine: AsyncEngine
) -> None:
    op = clients["operator"]
    district = (await op.post("/api/v1/districts", json={"name": "东城区"})).json()
    street = await op.post(
        "/api/v1/streets", json={"district_id": district["id"], "name": "朝阳街道"}
    )
    assert street.status_code == 201, street.text
    community = (
        await op.post(
            "/api/v1/communities", json={"street_id": street.json()["id"], "name": "新村"}
        )
    ).json()
    grid = await op.post("/api/v1/grids", json={"community_id": community["id"], "name": "一格"})
    assert grid.status_code == 201
    again = await op.post("/api/v1/districts", json={"name": "东城区"})
    assert again.status_code == 409
    orphan = await op.post("/api/v1/streets", json={"district_id": 999, "name": "x"})
    assert orphan.status_code == 422 and orphan.json()["errors"][0]["loc"] == [
        "body",
        "district_id",
    ]

    renamed = await op.patch(f"/api/v1/communities/{community['id']}", json={"name": "新村社区"})
    assert renamed.json()["name"] == "新村社区"
    busy = await op.post(f"/api/v1/communities/{community['id']}/retire")
    assert busy.status_code == 409 and "网格" in busy.json()["detail"]  # it has a grid

    empty = (await op.post("/api/v1/districts", json={"name": "西城区"})).json()
    retired = await op.post(f"/api/v1/districts/{empty['id']}/retire")
    assert retired.status_code == 200 and retired.json()["retired_at"]
    listed = (await op.get("/api/v1/districts")).json()
    assert "西城区" not in [d["name"] for d in listed]
    assert [d["name"] for d in (await op.get("/api/v1/districts?retired=true")).json()] == [
        "西城区"
    ]
    refused = await op.post("/api/v1/streets", json={"district_id": empty["id"], "name": "y"})
    assert refused.status_code == 422  # no new street under a retired district

    assert (await clients["hotline"].get("/api/v1/communities")).status_code == 200
    assert (
        await clients["worker1"].post("/api/v1/districts", json={"name": "z"})
    ).status_code == 403
    assert {"district.create", "street.create", "community.update", "district.retire"} <= set(
        await actions(engine)
    )


async def test_streets_and_communities_show_their_escalation_contacts(clients: Clients) -> None:
    reader = clients["worker1"]
    community = (await reader.get("/api/v1/communities/1")).json()
    assert [c["name"] for c in community["contacts"]] == ["周洁"]  # the community station
    street = (await reader.get("/api/v1/streets/1")).json()
    assert [c["name"] for c in street["contacts"]] == ["吴刚"]  # the street centre


async def test_shift_overrides_are_created_listed_and_deleted(
    clients: Clients, engine: AsyncEngine
) -> None:
    op = clients["operator"]
    body = {
        "worker_id": 3,  # 孙强, assigned to both grids
        "grid_id": 1,
        "starts_at": "2025-03-03T20:00:00+08:00",
        "ends_at": "2025-03-04T08:00:00+08:00",
        "note": "王丽请假 / sick leave",
    }
    made = await op.post("/api/v1/shift-overrides", json=body)
    assert made.status_code == 201, made.text
    assert [o["id"] for o in (await op.get("/api/v1/shift-overrides?grid_id=1")).json()] == [
        made.json()["id"]
    ]
    backwards = await op.post(
        "/api/v1/shift-overrides", json=body | {"ends_at": "2025-03-03T19:00:00+08:00"}
    )
    assert backwards.status_code == 422
    stranger = await op.post("/api/v1/shift-overrides", json=body | {"worker_id": 2})
    assert stranger.status_code == 422 and "未分配" in stranger.text  # not in grid 1
    naive = await op.post("/api/v1/shift-overrides", json=body | {"starts_at": "2025-03-03T20:00"})
    assert naive.status_code == 422
    assert (await clients["worker1"].post("/api/v1/shift-overrides", json=body)).status_code == 403
    deleted = await op.delete(f"/api/v1/shift-overrides/{made.json()['id']}")
    assert deleted.status_code == 204
    assert (await op.get("/api/v1/shift-overrides?all=true")).json() == []
    assert {"shift_override.create", "shift_override.delete"} <= set(await actions(engine))


async def test_a_shift_ending_at_2359_is_refused(clients: Clients) -> None:
    shift = {"worker_id": 1, "grid_id": 1, "weekday": 0, "start_local": "00:00"}
    refused = await clients["operator"].post(
        "/api/v1/shifts", json=shift | {"end_local": "23:59", "weekday": 1}
    )
    assert refused.status_code == 422 and "00:00" in refused.json()["detail"]


async def test_the_import_route_answers_422_with_every_problem_or_the_counts(
    clients: Clients, engine: AsyncEngine
) -> None:
    op = clients["operator"]
    xlsx = (REPO_ROOT / "docs" / "registry-template.xlsx").read_bytes()
    kind = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    # The demo community exists already: the template's workers are its workers by phone.
    dry = await op.post(
        "/api/v1/registry/import?medical_notes=true",
        content=xlsx,
        headers={"content-type": kind},
    )
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] and not dry.json()["committed"]
    bad = await op.post(
        "/api/v1/registry/import?name=住户.csv&commit=true",
        content="社区,网格,地址\n幸福里社区,第九网格,1号楼\n".encode(),
        headers={"content-type": "text/csv"},
    )
    assert bad.status_code == 422
    [problem] = bad.json()["errors"]
    assert (problem["sheet"], problem["row"], problem["column"]) == ("住户", 2, "网格 (grid)")
    assert not bad.json()["committed"]
    assert "registry.import" not in await actions(engine)
    good = await op.post(
        "/api/v1/registry/import?commit=true",
        files=[("file", ("住户.csv", "社区,网格,地址\n幸福里社区,第一网格,1号楼\n".encode()))],
    )
    assert good.status_code == 200 and good.json()["counts"]["households"]["created"] == 1
    assert "registry.import" in await actions(engine)
    assert (await clients["hotline"].post("/api/v1/registry/import")).status_code == 403
