"""Acceptance for issue #11, browser → API: each finding tried as an attacker would, against
a real ``python -m hub`` over HTTP (a private Mosquitto, the hub's own SQLite file).

Different client addresses are real ones: Linux routes all of 127.0.0.0/8 to the loopback
interface, so a client bound to 127.0.0.2 is another peer to the hub, no header needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import selectors
import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract import Event, EventBatch, Lane, topics
from simulators.stack import Stack
from tests.conftest import wait_until
from tests.integration.conftest import api, query

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-for-the-tests"
MiB = 1024 * 1024


def worker_of(stack: Stack, name: str) -> tuple[int, int]:
    [(worker, grid)] = query(
        stack,
        "SELECT w.id, wg.grid_id FROM workers w JOIN worker_grids wg ON wg.worker_id = w.id "
        "WHERE w.name = ?",
        name,
    )
    return int(worker), int(grid)


async def make_account(
    admin: httpx.AsyncClient, username: str, role: str, worker_id: int | None = None
) -> int:
    body: dict[str, Any] = {"username": username, "role": role, "password": PASSWORD}
    if worker_id is not None:
        body["worker_id"] = worker_id
    response = await admin.post("/api/v1/accounts", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def anonymous(stack: Stack, source: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client whose TCP connections come from ``source`` (a loopback address)."""
    return httpx.AsyncClient(
        base_url=stack.hub_url,
        timeout=60,
        transport=httpx.AsyncHTTPTransport(local_address=source),
        limits=httpx.Limits(max_connections=100),
    )


async def login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD, **headers: str
) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/token", data={"username": username, "password": password}, headers=headers
    )


def bearer(stack: Stack, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.hub_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def failures_of(stack: Stack, username: str) -> int:
    [(count,)] = query(stack, "SELECT count(*) FROM login_failures WHERE username = ?", username)
    return int(count)


# --- login -------------------------------------------------------------------------------


async def test_forty_concurrent_guesses_for_one_account_evaluate_at_most_the_limit(
    stack: Stack,
) -> None:
    stack.start_hub()  # defaults: 5 per account and address, 20 per address
    worker, _grid = worker_of(stack, "王丽")
    async with api(stack) as admin:
        await make_account(admin, "wang", "worker", worker)
    async with anonymous(stack, "127.0.0.2") as guesser:
        replies = await asyncio.gather(
            *(login(guesser, "wang", f"guess number {i}") for i in range(40))
        )
        statuses = Counter(r.status_code for r in replies)
        # 401 = a password was hashed and compared; 429 = throttled, 503 = refused as busy,
        # both before any hash ran
        assert set(statuses) <= {401, 429, 503}, statuses
        assert 1 <= statuses[401] <= 5, statuses
        assert statuses[429] + statuses[503] == 40 - statuses[401]
        assert failures_of(stack, "wang") == statuses[401]  # each evaluated guess, counted
        # and from there, guessing goes on only after the window, even with the password
        while (await login(guesser, "wang", f"more {uuid.uuid4()}")).status_code == 401:
            pass  # fill the limit if the gate, not the throttle, refused most of the forty
        assert (await login(guesser, "wang")).status_code == 429
        assert failures_of(stack, "wang") == 5


async def test_a_strangers_failures_do_not_lock_out_the_worker_from_another_address(
    stack: Stack,
) -> None:
    stack.start_hub()
    worker, _grid = worker_of(stack, "王丽")
    async with api(stack) as admin:
        await make_account(admin, "wang", "worker", worker)
    async with anonymous(stack, "127.0.0.2") as stranger, anonymous(stack, "127.0.0.3") as phone:
        for i in range(5):
            assert (await login(stranger, "wang", f"guess number {i}")).status_code == 401
        refused = await login(stranger, "wang")  # the stranger: locked, right password or not
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        served = await login(phone, "wang")  # the worker on their own phone: served
        assert served.status_code == 200, served.text
        assert (await login(stranger, "wang")).status_code == 429  # still counted


async def test_forwarded_for_from_an_unconfigured_peer_is_ignored(stack: Stack) -> None:
    stack.start_hub()  # no api.trusted_proxies
    worker, _grid = worker_of(stack, "王丽")
    async with api(stack) as admin:
        await make_account(admin, "wang", "worker", worker)
    async with anonymous(stack) as client:
        # one address guessing many names, each time claiming to be someone else
        for i in range(20):
            response = await login(
                client, f"name{i}", "whatever", **{"X-Forwarded-For": f"198.51.100.{i}"}
            )
            assert response.status_code == 401
        dodged = await login(client, "name99", "whatever", **{"X-Forwarded-For": "198.51.100.99"})
        assert dodged.status_code == 429  # the per-address limit holds
    async with anonymous(stack, "127.0.0.3") as phone:
        ok = await login(phone, "wang", **{"X-Forwarded-For": "203.0.113.50"})
        assert ok.status_code == 200, ok.text
    async with api(stack) as admin:
        response = await admin.get("/api/v1/audit", params={"action": "auth.login"})
        [row] = response.json()
        assert row["after"]["client"] == "127.0.0.3"  # the peer, not the header


async def test_a_configured_proxy_is_believed(stack: Stack) -> None:
    stack.start_hub(api={"trusted_proxies": ["127.0.0.2/32"]})
    worker, _grid = worker_of(stack, "王丽")
    async with api(stack) as admin:
        await make_account(admin, "wang", "worker", worker)
    async with anonymous(stack, "127.0.0.2") as proxy:
        for i in range(5):  # a stranger behind the proxy
            response = await login(
                proxy, "wang", f"guess {i}", **{"X-Forwarded-For": "1.2.3.4, 203.0.113.9"}
            )
            assert response.status_code == 401
        assert (await login(proxy, "wang", **{"X-Forwarded-For": "203.0.113.9"})).status_code == 429
        ok = await login(proxy, "wang", **{"X-Forwarded-For": "203.0.113.10"})
        assert ok.status_code == 200, ok.text  # the worker behind the same proxy


async def test_a_login_flood_is_refused_fast_while_a_real_login_is_served(stack: Stack) -> None:
    stack.start_hub()  # 2 hashes at a time, 8 waiting, 2 per address
    worker, _grid = worker_of(stack, "王丽")
    async with api(stack) as admin:
        await make_account(admin, "wang", "worker", worker)
    async with anonymous(stack, "127.0.0.2") as flood, anonymous(stack, "127.0.0.3") as phone:
        flood_replies: list[httpx.Response] = []
        real = None
        for _wave in range(5):  # until the flood has met the bound (the first wave, in practice)
            wave = [login(flood, f"user-{uuid.uuid4().hex[:8]}", "x" * 12) for _ in range(30)]
            *replies, real = await asyncio.gather(*wave, login(phone, "wang"))
            flood_replies += replies
            if any(r.status_code == 503 for r in flood_replies):
                break
        assert real is not None and real.status_code == 200, real.text if real else None
        statuses = Counter(r.status_code for r in flood_replies)
        assert set(statuses) <= {401, 429, 503}, statuses
        busy = [r for r in flood_replies if r.status_code == 503]
        assert busy, statuses  # beyond the bound: refused, not queued
        assert all(int(r.headers["retry-after"]) >= 1 for r in busy)
        assert "登录请求过多" in busy[0].json()["detail"]


# --- bodies ------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def post_huge(port: int, path: str, size: int, *, chunked: bool) -> int:
    """POST ``size`` bytes as an anonymous client; stop sending as soon as the hub answers.
    Returns the status code."""
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json"]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    chunk = b"[" + b"1," * (MiB // 2 - 1) + b"1"
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < size and not selector.select(timeout=0):
                piece = chunk[: size - sent]
                sock.sendall(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked and sent >= size:
                sock.sendall(b"0\r\n\r\n")
        reply = b""
        while b"\r\n" not in reply:
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    return int(reply.split(b" ", 2)[1])


async def test_three_huge_anonymous_posts_leave_the_hubs_memory_near_its_baseline(
    stack: Stack,
) -> None:
    stack.start_hub()
    assert stack.hub is not None and stack.hub.process is not None
    pid = stack.hub.process.pid
    async with api(stack) as admin:  # warm up the routes once
        assert (await admin.get("/api/v1/households")).status_code == 200
    before = rss_kib(pid)
    size = 150 * MiB
    statuses = [
        await asyncio.to_thread(post_huge, stack.hub_port, "/api/v1/households", size, chunked=c)
        for c in (False, True)
    ]
    statuses.append(
        await asyncio.to_thread(
            post_huge, stack.hub_port, "/api/v1/auth/token", size, chunked=False
        )
    )
    after = rss_kib(pid)
    print(
        f"hub RSS before {before / 1024:.1f} MiB, after three 150 MiB posts {after / 1024:.1f} MiB"
    )
    assert statuses == [413, 401, 413]
    assert after - before < 50 * 1024, (before, after)


async def test_a_chunked_body_over_the_limit_is_refused_for_a_signed_in_caller(
    stack: Stack,
) -> None:
    stack.start_hub(api={"body_limits": {"default_bytes": 64 * 1024}})

    async def chunks() -> Any:
        for _ in range(32):
            yield b" " * 8192

    async with api(stack) as admin:
        response = await admin.post(
            "/api/v1/grids", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert "请求体超过" in response.json()["detail"]
        # the CSV import declares a larger limit: 200 KiB pass the size check there
        csv = "id,profile\n" + "".join(f"x{n:08d},nothing\n" for n in range(10_000))
        assert 64 * 1024 < len(csv) < 6 * MiB
        imported = await admin.post(
            "/api/v1/devices/import", content=csv, headers={"Content-Type": "text/csv"}
        )
        assert imported.status_code == 422, imported.text  # read and judged, not refused


async def test_422_replies_echo_no_password_and_no_unbounded_input(stack: Stack) -> None:
    stack.start_hub()
    secret = "Tr0ub4dor&3-never-echo"
    async with api(stack) as admin:
        missing_role = await admin.post(
            "/api/v1/accounts", json={"username": "newbie", "password": secret}
        )
        assert missing_role.status_code == 422
        assert secret not in missing_role.text and "role" in missing_role.text
        huge = "名" * 200_000
        too_long = await admin.post("/api/v1/grids", json={"name": huge, "community_id": 1})
        assert too_long.status_code == 422
        assert len(too_long.content) < 8 * 1024, len(too_long.content)
    async with anonymous(stack) as client:
        form = await client.post("/api/v1/auth/token", data={"password": secret})
        assert form.status_code == 422 and secret not in form.text


# --- roles and lifecycle -----------------------------------------------------------------


@contextlib.contextmanager
def publisher(stack: Stack) -> Iterator[paho.Client]:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex}"
    )
    client.connect("127.0.0.1", stack.broker_port)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def send(stack: Stack, edge_id: str, lane: Lane, events: list[Event]) -> None:
    with publisher(stack) as client:
        batch = EventBatch(edge_id, "test-incarnation", tuple(events))
        info = client.publish(topics.events(edge_id, lane), batch.encode(), qos=1)
        info.wait_for_publish(10)
        assert info.is_published()


IDENTITIES = ("P0042", "C-7781", "张伟")


async def test_the_hotline_sees_no_door_identity_in_any_route(stack: Stack) -> None:
    stack.start_hub()
    door = "door-gate-3"
    async with api(stack) as admin:
        response = await admin.post(
            "/api/v1/devices",
            json={"id": door, "profile": "fr-door", "grid_id": 1, "edge_id": "edge-gate"},
        )
        assert response.status_code == 201, response.text
        await make_account(admin, "desk", "hotline")
        await make_account(admin, "oper", "operator")
    now = datetime.now(UTC)
    passes = [
        Event(1, door, "face_pass", Lane.NORMAL, now, {"person_id": "P0042", "similarity": 0.93}),
        Event(2, door, "card_pass", Lane.NORMAL, now, {"card_id": "C-7781"}),
    ]
    status = Event(
        3, door, "door_status", Lane.TELEMETRY, now,
        {"open": False, "last_person_id": "P0042", "person_name": "张伟", "battery_pct": 80},
    )  # fmt: skip
    await asyncio.to_thread(send, stack, "edge-gate", Lane.NORMAL, passes)
    await asyncio.to_thread(send, stack, "edge-gate", Lane.TELEMETRY, [status])
    routes = [
        "/api/v1/events",
        f"/api/v1/events?device_id={door}",
        f"/api/v1/devices/{door}/events",
        f"/api/v1/devices/{door}/state",
        f"/api/v1/devices/{door}/readings",
        f"/api/v1/devices/{door}/readings?field=last_person_id",
    ]
    async with anonymous(stack) as client:
        oper_token = (await login(client, "oper")).json()["access_token"]
        desk_token = (await login(client, "desk")).json()["access_token"]
    async with bearer(stack, oper_token) as oper, bearer(stack, desk_token) as desk:

        async def all_stored() -> bool:
            found = (await oper.get(f"/api/v1/devices/{door}/events")).json()
            return len(found) == 3

        await wait_until(all_stored, 60, message="the door's events stored")
        seen_by_operator = "".join([(await oper.get(r)).text for r in routes])
        assert all(identity in seen_by_operator for identity in IDENTITIES)  # they are there
        for route in routes:
            response = await desk.get(route)
            assert response.status_code == 200, (route, response.text)
            assert not any(i in response.text for i in IDENTITIES), (route, response.text)
        events = (await desk.get(f"/api/v1/devices/{door}/events")).json()
        by_kind = {e["kind"]: e["data"] for e in events}
        assert by_kind["face_pass"] == {"similarity": 0.93}  # what is not an identity stays
        assert (await desk.get(f"/api/v1/doors/{door}/access-log")).status_code == 403


async def test_a_deactivated_worker_loses_token_and_login_at_once(stack: Stack) -> None:
    stack.start_hub()
    _worker, grid = worker_of(stack, "王丽")
    async with api(stack) as admin:
        made = await admin.post(
            "/api/v1/workers",
            json={
                "name": "李新",
                "phone": "13912345678",
                "role": "grid_worker",
                "grid_ids": [grid],
            },
        )
        assert made.status_code == 201, made.text
        worker_id = made.json()["id"]
        account_id = await make_account(admin, "lixin", "worker", worker_id)
    async with anonymous(stack) as client:
        token = (await login(client, "lixin")).json()["access_token"]
    async with bearer(stack, token) as lixin:
        assert (await lixin.get("/api/v1/households")).status_code == 200
        async with api(stack) as admin:
            response = await admin.patch(f"/api/v1/workers/{worker_id}", json={"active": False})
            assert response.status_code == 200, response.text
            account = (await admin.get(f"/api/v1/accounts/{account_id}")).json()
            assert account["active"] is False and account["disabled_at"]
            audit = (
                await admin.get(
                    "/api/v1/audit", params={"target_type": "account", "target_id": account_id}
                )
            ).json()
            disabled = [r for r in audit if r["action"] == "account.disable"]
            assert disabled and disabled[0]["after"]["tokens_revoked"] == 1
        for path in ("/api/v1/households", "/api/v1/auth/me"):
            assert (await lixin.get(path)).status_code == 401, path
    async with anonymous(stack, "127.0.0.3") as client:
        assert (await login(client, "lixin")).status_code == 401


# --- small ones --------------------------------------------------------------------------


async def test_other_grids_ids_are_answered_as_missing_ones(stack: Stack) -> None:
    stack.start_hub()
    worker_a, grid_a = worker_of(stack, "王丽")
    _worker_b, grid_b = worker_of(stack, "赵敏")
    [(household_b,)] = query(
        stack, "SELECT id FROM households WHERE grid_id = ? ORDER BY id LIMIT 1", grid_b
    )
    async with api(stack) as admin:
        await make_account(admin, "wang", "worker", worker_a)
        case_b = (
            await admin.post("/api/v1/cases", json={"household_id": household_b, "operator": "t"})
        ).json()["case_id"]
    async with anonymous(stack) as client:
        token = (await login(client, "wang")).json()["access_token"]
    async with bearer(stack, token) as wang:
        for path, other, missing in (
            ("/api/v1/cases/{}", case_b, 999_999),
            ("/api/v1/households/{}", household_b, 999_999),
        ):
            seen = await wang.get(path.format(other))
            absent = await wang.get(path.format(missing))
            assert seen.status_code == absent.status_code == 404, (seen.text, absent.text)
            assert seen.json()["detail"] == absent.json()["detail"].replace(
                str(missing), str(other)
            )
        acted = await wang.post(f"/api/v1/cases/{case_b}/acknowledge", json={})
        assert acted.status_code == 404
        assert grid_a != grid_b


CONTROLS = ("张\u202e伟", "\u2067李\u2069明", "王\u200b丽", "赵\x00敏", "\u061c刘", "孙\u200f")


async def test_bidi_and_control_characters_are_refused_in_names(stack: Stack) -> None:
    stack.start_hub()
    [(household,)] = query(stack, "SELECT id FROM households ORDER BY id LIMIT 1")
    async with api(stack) as admin:
        for text in CONTROLS:
            for method, path, body in (
                ("POST", f"/api/v1/households/{household}/residents", {"name": text}),
                ("POST", "/api/v1/grids", {"name": text, "community_id": 1}),
                ("PATCH", f"/api/v1/households/{household}", {"notes": f"门口{text}"}),
            ):
                response = await admin.request(method, path, json=body)
                assert response.status_code == 422, (text, path, response.text)
                problem = json.dumps(response.json(), ensure_ascii=False)
                assert "control character" in problem and "控制字符" in problem
        fine = await admin.post(f"/api/v1/households/{household}/residents", json={"name": "张伟"})
        assert fine.status_code == 201, fine.text
        notes = await admin.patch(
            f"/api/v1/households/{household}", json={"notes": "钥匙在门口\n邻居 302 有备用"}
        )
        assert notes.status_code == 200, notes.text  # line breaks stay allowed in notes
