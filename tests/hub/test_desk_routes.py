"""The desk board and KPI routes in process: roles, grid scope, audit rows, the CSV answer.

As in ``test_registry_routes.py``, who is asking is set per request by a test header.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
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
from hub.domain.effects import Effects
from hub.domain.escalation import EscalationPolicy
from hub.services.cases import CaseService
from tests.hub.api_as import acting_as, api_config, clients_as
from tests.hub.test_route_roles import app_endpoints, declared_roles

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai
PRINCIPALS = {
    "admin": Principal(kind="token", name="api", role=Role.ADMIN),
    "operator": Principal(kind="user", name="op", role=Role.OPERATOR),
    "hotline": Principal(kind="user", name="desk", role=Role.HOTLINE),
    "worker1": Principal(
        kind="user", name="wangli", role=Role.WORKER, worker_id=1, grid_ids=frozenset({1})
    ),
}


@pytest.fixture
def dispatched() -> list[Effects]:
    return []


@pytest.fixture
def app(engine: AsyncEngine, dispatched: list[Effects]) -> FastAPI:
    config = api_config()
    app = create_app(config)

    async def dispatch(effects: Effects) -> None:
        dispatched.append(effects)

    app.state.runtime = SimpleNamespace(
        config=config,
        engine=engine,
        clock=lambda: T0 + timedelta(seconds=30),
        service=CaseService(EscalationPolicy(), ZoneInfo("Asia/Shanghai")),
        effects=SimpleNamespace(dispatch=dispatch),
    )

    acting_as(app, PRINCIPALS)
    return app


@pytest.fixture
async def as_(app: FastAPI) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with clients_as(app, PRINCIPALS) as made:
        yield made


@pytest.fixture
async def case_in_grid_2(engine: AsyncEngine, app: FastAPI) -> int:
    service: CaseService = app.state.runtime.service
    event = Event(1, "cb100-77628", "sos", Lane.ALARM, T0, {})
    async with engine.begin() as conn:
        await service.on_event(conn, "edge-demo", event, T0)
        await service.acknowledge(conn, 1, 2, T0 + timedelta(seconds=12))
    return 1


async def audit_actions(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        query = sa.select(schema.audit_log.c.action, schema.audit_log.c.actor).order_by(
            schema.audit_log.c.id
        )
        return [(a, b) for a, b in await conn.execute(query)]


def test_desk_and_kpi_routes_declare_their_roles() -> None:
    desk = {Role.ADMIN, Role.OPERATOR, Role.HOTLINE}
    expected = {
        "/api/v1/desk/cases": desk,
        "/api/v1/desk/areas": desk,
        "/api/v1/desk/households": desk,
        "/api/v1/desk/health": desk,
        "/api/v1/cases/{case_id}/reassign": desk,
        "/api/v1/cases/{case_id}/notes": {Role.ADMIN, Role.OPERATOR, Role.HOTLINE, Role.WORKER},
        "/api/v1/kpi/care": {Role.ADMIN, Role.OPERATOR, Role.WORKER},
        "/api/v1/kpi/care.csv": {Role.ADMIN, Role.OPERATOR, Role.WORKER},
    }
    found = {r.path: declared_roles(r.dependant) for r in app_endpoints() if r.path in expected}
    assert found == {path: {frozenset(roles)} for path, roles in expected.items()}


async def test_the_board_is_for_the_desk(
    as_: dict[str, httpx.AsyncClient], case_in_grid_2: int
) -> None:
    for who in ("hotline", "operator", "admin"):
        answer = await as_[who].get("/api/v1/desk/cases", params={"grid_id": 2})
        assert answer.status_code == 200, answer.text
        assert [c["id"] for c in answer.json()["cases"]] == [case_in_grid_2]
    assert (await as_["hotline"].get("/api/v1/desk/cases", params={"grid_id": 1})).json()[
        "cases"
    ] == []
    for path in ("/api/v1/desk/cases", "/api/v1/desk/health", "/api/v1/desk/areas"):
        assert (await as_["worker1"].get(path)).status_code == 403
    # welfare checks are counted on the health panel for the desk, not for an admin
    for who, counted in (("hotline", True), ("operator", True), ("admin", False)):
        health = (await as_[who].get("/api/v1/desk/health")).json()
        kinds = {t["kind"] for t in health["open_tasks"]}
        assert ("welfare_check" in kinds) is counted and ("check_in_call" in kinds) is counted
    found = await as_["hotline"].get("/api/v1/desk/households", params={"q": "刘建国"})
    assert [h["id"] for h in found.json()] == [4]
    assert (
        await as_["hotline"].get("/api/v1/desk/households", params={"q": ""})
    ).status_code == 422
    areas = (await as_["hotline"].get("/api/v1/desk/areas")).json()
    assert [(a["grid_name"], a["community_name"]) for a in areas] == [
        ("第一网格", "幸福里社区"),
        ("第二网格", "幸福里社区"),
    ]


async def test_reassign_and_note_through_the_api(
    as_: dict[str, httpx.AsyncClient],
    case_in_grid_2: int,
    engine: AsyncEngine,
    dispatched: list[Effects],
) -> None:
    url = f"/api/v1/cases/{case_in_grid_2}"
    assert (await as_["worker1"].post(f"{url}/reassign", json={"worker_id": 1})).status_code == 403
    answer = await as_["hotline"].post(f"{url}/reassign", json={"worker_id": 3, "note": "赵敏没电"})
    assert answer.status_code == 200, answer.text
    assert [n.worker_id for n in dispatched[-1].notifications] == [3]
    again = await as_["hotline"].post(f"{url}/reassign", json={"worker_id": 3})
    assert again.status_code == 409 and "already with worker 3" in again.json()["detail"]
    missing = await as_["hotline"].post(f"{url}/reassign", json={"worker_id": 77})
    assert missing.status_code == 404
    assert (
        await as_["hotline"].post("/api/v1/cases/9/reassign", json={"worker_id": 3})
    ).status_code == 404
    # a note: the desk on any case, a worker only on their grids
    assert (
        await as_["hotline"].post(f"{url}/notes", json={"text": "已联系家属"})
    ).status_code == 200
    # another grid's case is answered as a missing one (issue #11: no telling which ids exist)
    assert (await as_["worker1"].post(f"{url}/notes", json={"text": "x"})).status_code == 404
    assert (await as_["hotline"].post(f"{url}/notes", json={"text": ""})).status_code == 422
    assert await audit_actions(engine) == [
        ("case.reassign", "user:desk"),
        ("case.note", "user:desk"),
    ]
    board = (await as_["operator"].get("/api/v1/desk/cases")).json()["cases"]
    assert board[0]["holder_kind"] == "waiting"
    assert [h["name"] for h in board[0]["holders"]] == ["孙强"]
    assert board[0]["assigned_worker_id"] == 3


async def test_kpi_roles_scope_and_csv(
    as_: dict[str, httpx.AsyncClient], case_in_grid_2: int
) -> None:
    params = {"start": "2025-03-03", "end": "2025-03-03"}
    assert (await as_["hotline"].get("/api/v1/kpi/care", params=params)).status_code == 403
    everything = await as_["operator"].get("/api/v1/kpi/care", params=params)
    assert everything.status_code == 200, everything.text
    body = everything.json()
    assert body["unit"] == {"level": "all", "id": None, "name": "全部 / all"}
    total = body["rows"][0]
    assert (total["row"], total["cells"]["help_calls"], total["cells"]["answer_median_s"]) == (
        "total",
        "1",
        "12",
    )
    assert body["calls"][0]["seconds_to_answer"] == "12"
    # a worker: their own grid by default, never another one
    own = (await as_["worker1"].get("/api/v1/kpi/care", params=params)).json()
    assert own["unit"]["level"] == "grid" and own["unit"]["id"] == 1
    assert own["rows"][0]["cells"]["help_calls"] == "0"
    other = await as_["worker1"].get(
        "/api/v1/kpi/care", params={**params, "level": "grid", "id": 2}
    )
    assert other.status_code == 403
    wrong = await as_["operator"].get("/api/v1/kpi/care", params={"level": "street"})
    assert wrong.status_code == 422
    backwards = await as_["operator"].get(
        "/api/v1/kpi/care", params={"start": "2025-03-04", "end": "2025-03-03"}
    )
    assert backwards.status_code == 422

    exported = await as_["operator"].get(
        "/api/v1/kpi/care.csv", params={**params, "level": "community", "id": 1}
    )
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    assert exported.headers["content-disposition"].startswith("attachment;")
    assert exported.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    page = (
        await as_["operator"].get(
            "/api/v1/kpi/care", params={**params, "level": "community", "id": 1}
        )
    ).json()
    keys = [c["key"] for c in page["columns"]]
    assert rows[0][:2] == ["层级 / level", "名称 / name"]
    assert [r[1] for r in rows[1:]] == [r["name"] for r in page["rows"]]
    for csv_row, page_row in zip(rows[1:], page["rows"], strict=True):
        assert csv_row == [page_row["cells"][k] for k in keys]
    names: dict[str, Any] = {r[1]: r for r in rows[1:]}
    assert names["第二网格"][keys.index("help_calls")] == "1"
