"""Registry routes in process, on a real SQLite file with the demo community.

Who is asking is set per request: ``authenticate`` is overridden to return the principal
named in a test header, so grid-worker scoping and read-only roles are checked at the
HTTP boundary without the accounts feature. The demo community: grid 1 has households
1-3 (devices cb100-77626 in 1 and cb100-77627 in 3), grid 2 households 4-6 (cb100-77628
in 4); worker 1 (王丽) serves grid 1, worker 2 (赵敏) grid 2.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import Event, Lane
from hub.app import create_app
from hub.db import schema
from hub.domain.access import Principal, Role
from hub.domain.escalation import EscalationPolicy
from hub.services.cases import CaseService
from hub.services.errors import UnknownDevice
from tests.hub.api_as import acting_as, api_config, clients_as

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
PRINCIPALS = {
    "admin": Principal(kind="token", name="api", role=Role.ADMIN),
    "operator": Principal(kind="user", name="op", role=Role.OPERATOR),
    "hotline": Principal(kind="user", name="desk", role=Role.HOTLINE),
    "worker1": Principal(
        kind="user", name="wangli", role=Role.WORKER, worker_id=1, grid_ids=frozenset({1})
    ),
}


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


async def audit_rows(engine: AsyncEngine, action: str) -> list[Any]:
    async with engine.connect() as conn:
        query = (
            sa.select(schema.audit_log)
            .where(schema.audit_log.c.action == action)
            .order_by(schema.audit_log.c.id)
        )
        return list(await conn.execute(query))


# --- a grid worker sees and acts only on their own grids ------------------------------


async def test_worker_lists_only_their_grids(clients: dict[str, httpx.AsyncClient]) -> None:
    worker = clients["worker1"]
    households = await worker.get("/api/v1/households")
    assert [h["id"] for h in households.json()] == [1, 2, 3]
    assert households.headers["x-total-count"] == "3"
    devices = await worker.get("/api/v1/devices")
    assert [d["id"] for d in devices.json()] == ["cb100-77626", "cb100-77627"]
    residents = await worker.get("/api/v1/residents")
    assert {r["grid_id"] for r in residents.json()} == {1}
    for path in ("/api/v1/households?grid_id=2", "/api/v1/devices?grid_id=2"):
        assert (await worker.get(path)).status_code == 403, path
    everything = await clients["operator"].get("/api/v1/households")
    assert everything.headers["x-total-count"] == "6"


async def test_worker_gets_the_answer_for_a_missing_record_on_other_grids(
    clients: dict[str, httpx.AsyncClient], engine: AsyncEngine
) -> None:
    """Issue #11: 403 versus 404 must not tell which ids exist in other grids."""
    worker = clients["worker1"]

    async def both(method: str, path: str, other: str, missing: str, **kw: Any) -> None:
        seen = await worker.request(method, path.format(other), **kw)
        absent = await worker.request(method, path.format(missing), **kw)
        assert seen.status_code == absent.status_code, (path, seen.text, absent.text)
        assert seen.json()["detail"] == absent.json()["detail"].replace(missing, other), path
        assert "网格" not in seen.text, path

    await both("GET", "/api/v1/households/{}", "4", "999")
    await both("PATCH", "/api/v1/households/{}", "4", "999", json={"notes": "x"})
    await both("POST", "/api/v1/households/{}/residents", "4", "999", json={"name": "某人"})
    await both(
        "POST",
        "/api/v1/households/{}/emergency-contacts",
        "4",
        "999",
        json={"name": "某人", "phone": "13900000000"},
    )
    await both("GET", "/api/v1/devices/{}", "cb100-77628", "cb100-99999")
    await both("PATCH", "/api/v1/devices/{}", "cb100-77628", "cb100-99999", json={"place": "客厅"})
    # naming another grid's household or grid in a body: as if it did not exist (422)
    for path, body in (
        ("/api/v1/devices/cb100-77626", {"household_id": 4}),
        ("/api/v1/devices/cb100-77626", {"household_id": 999}),
        ("/api/v1/households", {"grid_id": 2, "address": "某处"}),
        ("/api/v1/households", {"grid_id": 999, "address": "某处"}),
    ):
        method = "PATCH" if "cb100" in path else "POST"
        response = await worker.request(method, path, json=body)
        assert response.status_code == 422, (path, body, response.text)
        assert "does not exist" in response.text
    # moving their own household to another grid (a grid in a body, by the household rule)
    moved = await worker.patch("/api/v1/households/1", json={"grid_id": 2})
    assert moved.status_code == 422 and "grid 2 does not exist" in moved.text
    assert await audit_rows(engine, "household.update") == []
    assert await audit_rows(engine, "device.move") == []


async def test_worker_acts_on_their_own_grid_with_audit(
    clients: dict[str, httpx.AsyncClient], engine: AsyncEngine
) -> None:
    worker = clients["worker1"]
    moved = await worker.patch("/api/v1/devices/cb100-77626", json={"place": "卫生间"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["place"] == "卫生间"
    [row] = await audit_rows(engine, "device.update")
    assert (row.actor, row.actor_role, row.target_id) == ("user:wangli", "worker", "cb100-77626")
    assert (row.before["place"], row.after["place"]) == ("卧室床头", "卫生间")
    added = await worker.post(
        "/api/v1/households/1/residents", json={"name": "张三", "birth_year": 1938}
    )
    assert added.status_code == 201


async def test_roles_that_may_not_change_the_registry(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    worker, hotline = clients["worker1"], clients["hotline"]
    device = {"id": "cb100-50001", "profile": "cb-100", "household_id": 1}
    refused = [
        await worker.post("/api/v1/devices", json=device),
        await worker.post("/api/v1/devices/cb100-77626/retire"),
        await worker.post(
            "/api/v1/devices/import",
            content=b"device_id,profile\nx,cb-100\n",
            headers={"content-type": "text/csv"},
        ),
        await worker.post("/api/v1/grids", json={"community_id": 1, "name": "新网格"}),
        await worker.patch("/api/v1/workers/1", json={"name": "王丽丽"}),
        await worker.delete("/api/v1/shifts/1"),
        await hotline.post("/api/v1/households", json={"grid_id": 1, "address": "某处"}),
        await hotline.patch("/api/v1/households/1", json={"notes": "x"}),
        await hotline.patch("/api/v1/devices/cb100-77626", json={"place": "客厅"}),
        await hotline.post("/api/v1/households/1/residents", json={"name": "某人"}),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    for path in ("/api/v1/households", "/api/v1/devices", "/api/v1/workers", "/api/v1/grids"):
        assert (await hotline.get(path)).status_code == 200, path


# --- medical notes ---------------------------------------------------------------------


async def test_medical_notes_only_for_operators_and_the_grid_workers_and_reads_are_audited(
    clients: dict[str, httpx.AsyncClient], engine: AsyncEngine
) -> None:
    shown = {}
    for name in ("operator", "worker1", "hotline", "admin"):
        response = await clients[name].get("/api/v1/households/1")
        assert response.status_code == 200, (name, response.text)
        body = response.json()
        shown[name] = body["medical_notes"]
        assert [r["name"] for r in body["residents"]] == ["张桂英"]
        assert body["emergency_contacts"][0]["phone"] == "13900000101"
        assert body["device_ids"] == ["cb100-77626"]
    assert shown == {
        "operator": "高血压，长期服用降压药",
        "worker1": "高血压，长期服用降压药",
        "hotline": None,
        "admin": None,
    }
    reads = await audit_rows(engine, "medical_notes.read")
    assert [(r.actor, r.target_type, r.target_id) for r in reads] == [
        ("user:op", "household", "1"),
        ("user:wangli", "household", "1"),
    ]
    listed = (await clients["operator"].get("/api/v1/households")).json()
    assert all("medical_notes" not in h for h in listed)


async def test_medical_notes_are_written_only_by_those_who_may_read_them_and_never_audited(
    clients: dict[str, httpx.AsyncClient], engine: AsyncEngine
) -> None:
    refused = await clients["admin"].patch("/api/v1/households/1", json={"medical_notes": "x"})
    assert refused.status_code == 403
    changed = await clients["worker1"].patch(
        "/api/v1/households/1", json={"medical_notes": "高血压，糖尿病", "lives_alone": False}
    )
    assert changed.status_code == 200
    assert "medical_notes" not in changed.json()
    [row] = await audit_rows(engine, "household.update")
    assert row.before["medical_notes"] == row.after["medical_notes"] == "[redacted]"
    assert (row.before["lives_alone"], row.after["lives_alone"]) == (True, False)


# --- validation, duplicates, search, pagination ----------------------------------------


async def test_readable_422_and_409(clients: dict[str, httpx.AsyncClient]) -> None:
    op = clients["operator"]
    unknown_grid = await op.post("/api/v1/households", json={"grid_id": 99, "address": "某处"})
    assert unknown_grid.status_code == 422
    assert unknown_grid.json()["detail"] == "body.grid_id: grid 99 does not exist / 网格 99 不存在"
    assert unknown_grid.json()["errors"][0]["loc"] == ["body", "grid_id"]
    duplicate_address = await op.post(
        "/api/v1/households", json={"grid_id": 1, "address": "幸福里小区3号楼2单元301室"}
    )
    assert duplicate_address.status_code == 409
    duplicate_phone = await op.post(
        "/api/v1/workers", json={"name": "某人", "phone": "13800000001", "role": "grid_worker"}
    )
    assert duplicate_phone.status_code == 409
    assert "13800000001" in duplicate_phone.json()["detail"]
    duplicate_device = await op.post(
        "/api/v1/devices", json={"id": "cb100-77626", "profile": "cb-100", "household_id": 2}
    )
    assert duplicate_device.status_code == 409
    bad_phone = await op.post(
        "/api/v1/workers", json={"name": "某人", "phone": "call me", "role": "grid_worker"}
    )
    assert bad_phone.status_code == 422
    assert "phone" in bad_phone.json()["detail"]
    null_name = await op.patch("/api/v1/workers/1", json={"name": None})
    assert null_name.status_code == 422
    assert "name: may not be null" in null_name.json()["detail"]
    desk_without_community = await op.post(
        "/api/v1/workers",
        json={"name": "某人", "phone": "13800000077", "role": "community_station"},
    )
    assert desk_without_community.status_code == 422
    assert "community_id" in desk_without_community.json()["detail"]


async def test_search_and_pagination(clients: dict[str, httpx.AsyncClient]) -> None:
    op = clients["operator"]
    page = await op.get("/api/v1/households", params={"q": "和平新村", "limit": 2, "offset": 1})
    assert page.headers["x-total-count"] == "3"
    assert [h["id"] for h in page.json()] == [5, 6]
    by_resident = await op.get("/api/v1/households", params={"q": "王秀兰"})
    assert [h["id"] for h in by_resident.json()] == [2]
    literal = await op.get("/api/v1/households", params={"q": "%"})
    assert literal.json() == []  # % is searched for, not a wildcard
    workers = await op.get("/api/v1/workers", params={"q": "1380000000", "limit": 2})
    assert workers.headers["x-total-count"] == "6"
    assert len(workers.json()) == 2
    by_name = await op.get("/api/v1/workers", params={"q": "赵敏"})
    assert [w["id"] for w in by_name.json()] == [2]
    assert (await op.get("/api/v1/residents", params={"q": "13900"})).json() == []


async def test_grids_and_worker_assignments(
    clients: dict[str, httpx.AsyncClient], engine: AsyncEngine
) -> None:
    op = clients["operator"]
    grid = await op.post("/api/v1/grids", json={"community_id": 1, "name": "第三网格"})
    assert grid.status_code == 201
    grid_id = grid.json()["id"]
    worker = await op.post(
        "/api/v1/workers",
        json={"name": "钱芳", "phone": "13800000010", "role": "grid_worker", "grid_ids": [grid_id]},
    )
    assert worker.status_code == 201
    worker_id = worker.json()["id"]
    backup = await op.patch(f"/api/v1/grids/{grid_id}", json={"backup_worker_id": 3})
    assert backup.json()["worker_ids"] == sorted([worker_id, 3])  # the backup is assigned
    listed = await op.get("/api/v1/workers", params={"grid_id": grid_id})
    assert {w["id"] for w in listed.json()} == {worker_id, 3}
    unknown = await op.patch(f"/api/v1/workers/{worker_id}", json={"grid_ids": [grid_id, 77]})
    assert unknown.status_code == 422
    assert "grid 77 does not exist" in unknown.json()["detail"]
    not_grid_worker = await op.patch(f"/api/v1/grids/{grid_id}", json={"backup_worker_id": 4})
    assert not_grid_worker.status_code == 422
    [row] = await audit_rows(engine, "worker.create")
    assert row.after["grid_ids"] == [grid_id]


async def test_residents_and_contacts_change_with_audit(
    clients: dict[str, httpx.AsyncClient], engine: AsyncEngine
) -> None:
    op = clients["operator"]
    moved = await op.patch("/api/v1/residents/1", json={"household_id": 2, "phone": "13700000001"})
    assert (moved.json()["household_id"], moved.json()["phone"]) == (2, "13700000001")
    nowhere = await op.patch("/api/v1/residents/1", json={"household_id": 999})
    assert nowhere.status_code == 422
    assert "household 999 not found" in nowhere.json()["detail"]
    contact = await op.post(
        "/api/v1/households/2/emergency-contacts",
        json={"name": "李强", "relation": "孙子", "phone": "13900000200"},
    )
    assert contact.status_code == 201
    contact_id = contact.json()["id"]
    assert (
        await op.patch(f"/api/v1/emergency-contacts/{contact_id}", json={"phone": "13900000201"})
    ).json()["phone"] == "13900000201"
    assert (await op.delete(f"/api/v1/emergency-contacts/{contact_id}")).status_code == 204
    assert (await op.delete("/api/v1/residents/1")).status_code == 204
    assert (await op.delete("/api/v1/residents/1")).status_code == 404
    [deleted] = await audit_rows(engine, "resident.delete")
    assert deleted.before["name"] == "张桂英"
    assert deleted.after is None
    [changed] = await audit_rows(engine, "emergency_contact.update")
    assert (changed.before["phone"], changed.after["phone"]) == ("13900000200", "13900000201")


async def test_moving_a_household_moves_its_devices(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    op = clients["operator"]
    assert (await op.patch("/api/v1/households/4", json={"grid_id": 1})).status_code == 200
    assert (await op.get("/api/v1/devices/cb100-77628")).json()["grid_id"] == 1
    worker_sees = [d["id"] for d in (await clients["worker1"].get("/api/v1/devices")).json()]
    assert "cb100-77628" in worker_sees


# --- duty shifts -------------------------------------------------------------------------


async def test_overlapping_shifts_of_one_role_in_one_grid_are_refused_naming_both(
    clients: dict[str, httpx.AsyncClient], engine: AsyncEngine
) -> None:
    op = clients["operator"]
    grid_id = (await op.post("/api/v1/grids", json={"community_id": 1, "name": "第三网格"})).json()[
        "id"
    ]
    for phone in ("13800000011", "13800000012"):
        await op.post(
            "/api/v1/workers",
            json={"name": "某人", "phone": phone, "role": "grid_worker", "grid_ids": [grid_id]},
        )
    ids = [w["id"] for w in (await op.get("/api/v1/workers", params={"grid_id": grid_id})).json()]
    day = {"grid_id": grid_id, "weekday": 0, "start_local": "08:00", "end_local": "20:00"}
    first = await op.post("/api/v1/shifts", json={"worker_id": ids[0], **day})
    assert first.status_code == 201, first.text
    night = {**day, "start_local": "19:00", "end_local": "07:00"}
    clash = await op.post("/api/v1/shifts", json={"worker_id": ids[1], **night})
    assert clash.status_code == 422
    detail = clash.json()["detail"]
    assert f"shift {first.json()['id']} (Mon 08:00-20:00, grid {grid_id}, primary" in detail
    assert "the new shift (Mon 19:00-07:00" in detail
    assert "时间重叠" in detail
    backup = await op.post("/api/v1/shifts", json={"worker_id": ids[1], **night, "role": "backup"})
    assert backup.status_code == 201
    moved = await op.patch(f"/api/v1/shifts/{backup.json()['id']}", json={"role": "primary"})
    assert moved.status_code == 422
    assert (await op.delete(f"/api/v1/shifts/{first.json()['id']}")).status_code == 204
    assert (
        await op.patch(f"/api/v1/shifts/{backup.json()['id']}", json={"role": "primary"})
    ).status_code == 200
    assert [r.action for r in await audit_rows(engine, "shift.delete")] == ["shift.delete"]


async def test_a_roster_is_replaced_whole_or_not_at_all(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    op = clients["operator"]
    before = (await op.get("/api/v1/grids/1/shifts")).json()
    assert len(before) == 7  # the demo's 24-hour shifts of worker 1
    week = [
        {"worker_id": 1, "weekday": d, "start_local": "08:00", "end_local": "20:00"}
        for d in range(7)
    ]
    clashing = [*week, {"worker_id": 3, "weekday": 6, "start_local": "19:00", "end_local": "09:00"}]
    refused = await op.put("/api/v1/grids/1/shifts", json={"shifts": clashing})
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert "shifts[0] (Mon 08:00-20:00, grid 1, primary, worker 1) overlaps shifts[7]" in detail
    assert "shifts[7] (Sun 19:00-09:00, grid 1, primary, worker 3)" in detail  # into Monday
    assert detail.count("overlaps") == 1  # a shift's first clash only
    pasted_over_and_over = await op.put("/api/v1/grids/1/shifts", json={"shifts": week * 28})
    assert pasted_over_and_over.status_code == 422
    errors = pasted_over_and_over.json()["errors"]
    assert len(errors) == 51  # 50 problems and "and 139 more"
    assert errors[-1]["msg"] == "and 139 more / 另有 139 个问题"
    assert (await op.get("/api/v1/grids/1/shifts")).json() == before
    unassigned = await op.put(
        "/api/v1/grids/1/shifts", json={"shifts": [{**week[0], "worker_id": 2}]}
    )
    assert unassigned.status_code == 422
    assert "worker 2 is not assigned to grid 1" in unassigned.json()["detail"]
    replaced = await op.put("/api/v1/grids/1/shifts", json={"shifts": week})
    assert replaced.status_code == 200
    assert [(s["weekday"], s["start_local"]) for s in replaced.json()] == [
        (d, "08:00") for d in range(7)
    ]
    aware = await op.post(
        "/api/v1/shifts",
        json={"worker_id": 1, "grid_id": 1, "weekday": 0, "start_local": "21:00+08:00",
              "end_local": "22:00"},
    )  # fmt: skip
    assert aware.status_code == 422


async def test_a_worker_with_shifts_in_a_grid_keeps_it(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    response = await clients["operator"].patch("/api/v1/workers/1", json={"grid_ids": []})
    assert response.status_code == 422
    assert "has shift 1 in grid 1" in response.json()["detail"]


# --- devices ---------------------------------------------------------------------------


async def test_device_lifecycle_register_move_retire(
    clients: dict[str, httpx.AsyncClient], engine: AsyncEngine
) -> None:
    op = clients["operator"]
    created = await op.post(
        "/api/v1/devices",
        json={
            "id": "cb100-60001",
            "profile": "cb-100",
            "household_id": 2,
            "place": "卧室",
            "edge_id": "edge-demo",
            "bus": "/dev/ttyUSB0",
            "address": "60001",
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["grid_id"] == 1
    moved = await op.patch(
        "/api/v1/devices/cb100-60001", json={"household_id": 5, "edge_id": "edge-b"}
    )
    assert (moved.json()["household_id"], moved.json()["grid_id"]) == (5, 2)
    out = await op.patch("/api/v1/devices/cb100-60001", json={"household_id": None})
    assert (out.json()["household_id"], out.json()["grid_id"]) == (None, 2)  # stays in grid 2
    [move, _] = await audit_rows(engine, "device.move")
    assert (move.before["household_id"], move.after["household_id"]) == (2, 5)
    assert (move.before["edge_id"], move.after["edge_id"]) == ("edge-demo", "edge-b")
    retired = await op.post("/api/v1/devices/cb100-60001/retire")
    assert retired.status_code == 200
    assert retired.json()["retired_at"] is not None
    assert (await op.post("/api/v1/devices/cb100-60001/retire")).status_code == 409
    assert (await op.patch("/api/v1/devices/cb100-60001", json={"place": "x"})).status_code == 409
    active = [d["id"] for d in (await op.get("/api/v1/devices")).json()]
    assert "cb100-60001" not in active
    gone = (await op.get("/api/v1/devices", params={"retired": "true"})).json()
    assert [d["id"] for d in gone] == ["cb100-60001"]
    again = await op.post(
        "/api/v1/devices", json={"id": "cb100-60001", "profile": "cb-100", "household_id": 2}
    )
    assert again.status_code == 409
    unknown_profile = await op.post(
        "/api/v1/devices", json={"id": "x-1", "profile": "cb-999", "grid_id": 1}
    )
    assert unknown_profile.status_code == 422
    assert "unknown device profile 'cb-999'" in unknown_profile.json()["detail"]


async def test_device_list_filters(clients: dict[str, httpx.AsyncClient]) -> None:
    op = clients["operator"]

    async def ids(**params: Any) -> list[str]:
        return [d["id"] for d in (await op.get("/api/v1/devices", params=params)).json()]

    assert await ids(grid_id=2) == ["cb100-77628"]
    assert await ids(edge_id="edge-demo", profile="cb-100") == [
        "cb100-77626",
        "cb100-77627",
        "cb100-77628",
    ]
    assert await ids(edge_id="edge-other") == []
    assert await ids(online="true") == []
    assert await ids(q="客厅") == ["cb100-77627"]
    assert await ids(q="和平新村8号楼") == ["cb100-77628"]  # the household's address
    assert await ids(household_id=1) == ["cb100-77626"]


async def test_a_retired_device_is_unknown_to_ingest(
    clients: dict[str, httpx.AsyncClient], engine: AsyncEngine
) -> None:
    assert (await clients["operator"].post("/api/v1/devices/cb100-77626/retire")).status_code == 200
    service = CaseService(EscalationPolicy(), ZoneInfo("Asia/Shanghai"))
    sos = Event(seq=1, device_id="cb100-77626", kind="sos", lane=Lane.ALARM, occurred_at=T0)
    async with engine.begin() as conn:
        with pytest.raises(UnknownDevice, match="not registered"):
            await service.on_event(conn, "edge-demo", sos, T0)


async def test_csv_import_as_body_and_as_form_upload(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    op = clients["operator"]
    as_body = await op.post(
        "/api/v1/devices/import",
        content=b"device_id,profile,household_id\ncb100-70001,cb-100,1\n",
        headers={"content-type": "text/csv; charset=utf-8"},
    )
    assert as_body.status_code == 201, as_body.text
    assert as_body.json()["imported"] == 1
    as_form = await op.post(
        "/api/v1/devices/import",
        files={
            "file": ("devices.csv", b"device_id,profile,grid_id\ngate-1,cb-100,2\n", "text/csv")
        },
    )
    assert as_form.status_code == 201, as_form.text
    assert as_form.json()["device_ids"] == ["gate-1"]
    bad = await op.post(
        "/api/v1/devices/import",
        files={"file": ("d.csv", b"device_id,profile,grid_id\ngate-2,cb-100,9\ngate-3,x,1\n")},
    )
    assert bad.status_code == 422
    assert [(e["row"], e["field"]) for e in bad.json()["errors"]] == [
        (2, "grid_id"),
        (3, "profile"),
    ]
    assert "message" in bad.json()["errors"][0]
    wrong_type = await op.post("/api/v1/devices/import", json={"device_id": "x"})
    assert wrong_type.status_code == 415
    no_file = await op.post("/api/v1/devices/import", files={"other": ("a.csv", b"x")})
    assert no_file.status_code == 422


async def test_a_nul_character_in_a_search_is_never_a_server_error(
    clients: dict[str, httpx.AsyncClient], db_backend: str
) -> None:
    """SQLite stores and matches U+0000; PostgreSQL's text cannot hold it, and the hub
    answers 422 there (hub/app.py) instead of a 500 (found by the OpenAPI fuzz test)."""
    response = await clients["operator"].get("/api/v1/devices", params={"q": "a\x00b"})
    assert response.status_code == (422 if db_backend == "postgres" else 200), response.text
    if db_backend == "postgres":
        assert "U+0000" in response.json()["detail"]
