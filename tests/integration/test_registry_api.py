"""Acceptance: the registry API of a real ``python -m hub`` over real HTTP and MQTT.

The static API token authenticates as an admin (grid-worker scoping is covered in
process by ``tests/hub/test_registry_routes.py``). Audit rows are read from the hub's
real SQLite file.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from contract import Event, EventBatch, Lane, topics
from simulators.stack import Stack
from tests.conftest import wait_until
from tests.integration.conftest import api, query

pytestmark = pytest.mark.integration

BROKEN_CSV = (
    "device_id,profile,household_id,place,edge_id,bus,address\n"
    "cb100-81001,cb-100,1,卧室,edge-b7,/dev/ttyUSB0,81001\n"  # row 2: fine
    "cb100-81002,cb-999,1,客厅,edge-b7,/dev/ttyUSB0,81002\n"  # row 3: unknown profile
    "cb100-81003,cb-100,999,客厅,edge-b7,/dev/ttyUSB0,81003\n"  # row 4: unknown household
    "cb100-81001,cb-100,2,客厅,edge-b7,/dev/ttyUSB0,81004\n"  # row 5: duplicate of row 2
    "cb100-77626,cb-100,1,客厅,edge-b7,/dev/ttyUSB0,81005\n"  # row 6: already registered
)
GOOD_CSV = (
    "device_id,profile,household_id,place,edge_id,bus,address\n"
    "cb100-81001,cb-100,1,卧室,edge-b7,/dev/ttyUSB0,81001\n"
    "cb100-81002,cb-100,2,客厅,edge-b7,/dev/ttyUSB0,81002\n"
)


def audit(stack: Stack, action: str) -> list[tuple[Any, ...]]:
    return query(
        stack,
        "SELECT actor, target_id, before, after FROM audit_log WHERE action = ? ORDER BY id",
        action,
    )


def publish_sos(stack: Stack, edge_id: str, device_id: str, seq: int) -> None:
    event = Event(seq, device_id, "sos", Lane.ALARM, datetime.now(UTC), {"frame_seq": seq})
    batch = EventBatch(edge_id, "test-incarnation", (event,))
    topic, payload = topics.events(edge_id, Lane.ALARM), batch.encode().decode()
    subprocess.run(
        ["mosquitto_pub", "-p", str(stack.broker_port), "-q", "1", "-t", topic, "-m", payload],
        check=True,
        timeout=30,
    )


async def test_csv_with_broken_rows_imports_nothing_and_reports_each_row(stack: Stack) -> None:
    stack.start_hub()
    async with api(stack) as client:
        before = await client.get("/api/v1/devices")
        refused = await client.post(
            "/api/v1/devices/import",
            files={"file": ("devices.csv", BROKEN_CSV.encode("utf-8"), "text/csv")},
        )
        assert refused.status_code == 422, refused.text
        errors = refused.json()["errors"]
        assert [(e["row"], e["field"]) for e in errors] == [
            (3, "profile"),
            (4, "household_id"),
            (5, "device_id"),
            (6, "device_id"),
        ]
        assert all(" / " in e["message"] for e in errors)  # English / Chinese
        after = await client.get("/api/v1/devices")
        assert after.headers["x-total-count"] == before.headers["x-total-count"] == "3"
        assert audit(stack, "device.import") == []

        imported = await client.post(
            "/api/v1/devices/import",
            content=GOOD_CSV.encode("gb18030"),  # as Excel on a Chinese Windows saves it
            headers={"content-type": "text/csv"},
        )
        assert imported.status_code == 201, imported.text
        assert imported.json()["imported"] == 2
        listed = (await client.get("/api/v1/devices", params={"edge_id": "edge-b7"})).json()
        assert [(d["id"], d["place"], d["grid_id"]) for d in listed] == [
            ("cb100-81001", "卧室", 1),
            ("cb100-81002", "客厅", 1),
        ]
    [(actor, target, _, after_json)] = audit(stack, "device.import")
    assert actor == "token:api"
    assert target.startswith("csv:")
    assert json.loads(after_json)["device_ids"] == ["cb100-81001", "cb100-81002"]


async def test_a_registered_device_routes_help_calls_until_it_is_retired(stack: Stack) -> None:
    stack.start_hub()
    async with api(stack) as client:
        household = await client.post(
            "/api/v1/households",
            json={"grid_id": 2, "address": "和平新村15号楼1单元302室", "lives_alone": True},
        )
        assert household.status_code == 201, household.text
        household_id = household.json()["id"]
        resident = await client.post(
            f"/api/v1/households/{household_id}/residents",
            json={"name": "钱秀珍", "birth_year": 1941},
        )
        assert resident.status_code == 201
        device = await client.post(
            "/api/v1/devices",
            json={
                "id": "cb100-82001",
                "profile": "cb-100",
                "household_id": household_id,
                "place": "卧室床头",
                "edge_id": "edge-b15",
                "bus": "/dev/ttyUSB0",
                "address": "82001",
            },
        )
        assert device.status_code == 201, device.text

        publish_sos(stack, "edge-b15", "cb100-82001", seq=1)

        async def opened() -> list[dict[str, Any]]:
            cases = (await client.get("/api/v1/cases")).json()
            return [c for c in cases if c["household_id"] == household_id]

        [case] = await wait_until(opened, 30, message="a case for the new household")
        assert case["device_id"] == "cb100-82001"

        retired = await client.post("/api/v1/devices/cb100-82001/retire")
        assert retired.status_code == 200
        publish_sos(stack, "edge-b15", "cb100-82001", seq=2)

        async def quarantined() -> list[dict[str, Any]]:
            rows = (await client.get("/api/v1/quarantine")).json()
            return [r for r in rows if "cb100-82001" in r["reason"]]

        [row] = await wait_until(quarantined, 30, message="the retired device's SOS quarantined")
        assert "retired" in row["reason"]
    [(actor, target, before, after)] = audit(stack, "device.retire")
    assert (actor, target) == ("token:api", "cb100-82001")
    assert json.loads(before)["retired_at"] is None
    assert json.loads(after)["retired_at"] is not None


async def test_people_grids_and_duty_with_readable_errors(stack: Stack) -> None:
    stack.start_hub()
    async with api(stack) as client:
        unknown_grid = await client.post(
            "/api/v1/households", json={"grid_id": 99, "address": "某小区1号"}
        )
        assert unknown_grid.status_code == 422
        assert "grid 99 does not exist / 网格 99 不存在" in unknown_grid.json()["detail"]
        duplicate = await client.post(
            "/api/v1/households", json={"grid_id": 1, "address": "幸福里小区3号楼2单元301室"}
        )
        assert duplicate.status_code == 409

        grid = await client.post("/api/v1/grids", json={"community_id": 1, "name": "第三网格"})
        assert grid.status_code == 201
        grid_id = grid.json()["id"]
        ids = []
        for name, phone in (("冯敏", "13800000021"), ("陈亮", "13800000022")):
            worker = await client.post(
                "/api/v1/workers",
                json={"name": name, "phone": phone, "role": "grid_worker", "grid_ids": [grid_id]},
            )
            assert worker.status_code == 201, worker.text
            ids.append(worker.json()["id"])
        found = await client.get("/api/v1/workers", params={"q": "陈亮"})
        assert [w["grid_ids"] for w in found.json()] == [[grid_id]]

        shift = {"grid_id": grid_id, "weekday": 4, "start_local": "20:00", "end_local": "08:00"}
        first = await client.post("/api/v1/shifts", json={"worker_id": ids[0], **shift})
        assert first.status_code == 201, first.text
        overlapping = await client.post(
            "/api/v1/shifts",
            json={"worker_id": ids[1], **shift, "weekday": 5, "start_local": "07:00"},
        )
        assert overlapping.status_code == 422
        detail = overlapping.json()["detail"]
        assert f"overlaps shift {first.json()['id']} (Fri 20:00-08:00" in detail
        assert "周六 07:00-08:00" in detail and "时间重叠" in detail

        page = await client.get("/api/v1/households", params={"q": "幸福里", "limit": 2})
        assert page.headers["x-total-count"] == "3"
        assert len(page.json()) == 2
        detail_view = await client.get("/api/v1/households/1")
        assert detail_view.json()["medical_notes"] is None  # admins are not care staff
        moved = await client.patch(
            "/api/v1/households/1", json={"address": "幸福里小区3号楼2单元302室"}
        )
        assert moved.status_code == 200
    [(actor, target, before, after)] = audit(stack, "household.update")
    assert (actor, target) == ("token:api", "1")
    assert json.loads(before)["address"] == "幸福里小区3号楼2单元301室"
    assert json.loads(after)["address"] == "幸福里小区3号楼2单元302室"
    assert json.loads(after)["medical_notes"] == "[redacted]"
    assert audit(stack, "medical_notes.read") == []


async def test_registry_refuses_anonymous_callers(stack: Stack) -> None:
    stack.start_hub()
    async with httpx.AsyncClient(base_url=stack.hub_url, timeout=10) as anonymous:
        for path in ("/api/v1/households", "/api/v1/devices", "/api/v1/workers"):
            assert (await anonymous.get(path)).status_code == 401, path
        response = await anonymous.post(
            "/api/v1/devices/import", content=GOOD_CSV, headers={"content-type": "text/csv"}
        )
        assert response.status_code == 401
