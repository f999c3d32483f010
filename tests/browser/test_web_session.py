"""The pages' HTTP side against a real hub (issue #12): session cookie, CSRF, CSP, short
links, and the live streams' replay, scope and revocation. No browser needed here; it
shares the browser tests' one-hub-per-module fixture."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.browser.conftest import WebStack

Event = tuple[int | None, str, dict[str, Any]]


def login(web: WebStack, username: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{web.url}/web/login",
        data={"username": username, "password": web.logins[username][0]},
        headers=headers,
        timeout=20,
    )


def session_client(web: WebStack, username: str) -> tuple[httpx.AsyncClient, str]:
    """An async client holding ``username``'s session cookie, and its CSRF token."""
    response = login(web, username)
    assert response.status_code == 200, response.text
    client = httpx.AsyncClient(base_url=web.url, cookies=response.cookies, timeout=20)
    return client, response.json()["csrf"]


async def events(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Event]:
    event_id: int | None = None
    name = ""
    async with client.stream("GET", path, headers=headers or {}, timeout=None) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                yield event_id, name, json.loads(line[6:])
                event_id, name = None, ""


async def collect(
    client: httpx.AsyncClient,
    path: str,
    until: Any,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> list[Event]:
    seen: list[Event] = []

    async def read() -> None:
        async for event in events(client, path, headers):
            seen.append(event)
            if until(event):
                return

    await asyncio.wait_for(read(), timeout)
    return seen


def first_grid(web: WebStack) -> tuple[str, int, int]:
    name = min(web.logins, key=lambda n: web.logins[n][2])
    return name, web.logins[name][1], web.logins[name][2]


def other_grid(web: WebStack) -> int:
    return max(g for _p, _w, g in web.logins.values())


def test_login_sets_a_strict_httponly_cookie_and_shows_no_token(web_stack: WebStack) -> None:
    name, worker, grid = first_grid(web_stack)
    response = login(web_stack, name)
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    token = response.cookies["hub_session"]
    assert len(token) > 20 and token not in response.text
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # served over http here; https adds it
    body = response.json()
    assert (body["role"], body["worker_id"], body["grid_ids"]) == ("worker", worker, [grid])
    assert body["csrf"] and body["csrf"] != token


def test_a_login_from_another_site_is_refused(web_stack: WebStack) -> None:
    name, _worker, _grid = first_grid(web_stack)
    assert login(web_stack, name, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert login(web_stack, name, Origin="http://evil.example").status_code == 403
    assert login(web_stack, name, Origin=web_stack.url).status_code == 200


async def test_a_cookie_session_needs_the_csrf_header_for_unsafe_requests(
    web_stack: WebStack,
) -> None:
    name, _worker, grid = first_grid(web_stack)
    case_id = web_stack.open_phone_case(web_stack.household_in(grid))
    client, csrf = session_client(web_stack, name)
    async with client:
        assert (await client.get(f"/api/v1/cases/{case_id}")).status_code == 200
        path = f"/api/v1/cases/{case_id}/acknowledge"
        refused = await client.post(path, json={})
        assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
        wrong = await client.post(path, json={}, headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403
        ok = await client.post(path, json={}, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200, ok.text
        assert (await client.get("/web/session")).json()["csrf"] == csrf


def test_pages_carry_a_csp_without_inline_script_and_short_links_redirect(
    web_stack: WebStack,
) -> None:
    with httpx.Client(base_url=web_stack.url, timeout=20) as client:
        for path in ("/login", "/worker", "/static/js/worker.js", "/api/v1/cases"):
            csp = client.get(path).headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
            assert "frame-ancestors 'none'" in csp
        assert client.get("/no-such-page").status_code == 404
        short = client.get("/c/12")
        assert (short.status_code, short.headers["location"]) == (303, "/worker?case=12")
        assert client.get("/t/5").headers["location"] == "/worker?task=5"
        assert client.get("/").headers["location"] == "/login"


async def test_logout_revokes_the_session(web_stack: WebStack) -> None:
    name, _worker, _grid = first_grid(web_stack)
    client, csrf = session_client(web_stack, name)
    async with client:
        assert (await client.post("/web/logout")).status_code == 403  # no CSRF header
        out = await client.post("/web/logout", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 200
        assert "hub_session=" in out.headers["set-cookie"]  # cleared
        stale = httpx.AsyncClient(base_url=web_stack.url, cookies=client.cookies, timeout=20)
    client2, _ = session_client(web_stack, name)  # the account itself still works
    async with stale, client2:
        assert (await stale.get("/web/session")).status_code == 401  # the old token is dead
        assert (await stale.get("/api/v1/cases")).status_code == 401
        assert (await client2.get("/web/session")).status_code == 200


async def test_a_reconnecting_stream_replays_what_it_missed_and_only_its_grids(
    web_stack: WebStack,
) -> None:
    name, worker, grid = first_grid(web_stack)
    path = f"/api/v1/workers/{worker}/stream"
    client, _csrf = session_client(web_stack, name)
    async with client:
        [(start, ready, info)] = await collect(client, path, lambda e: e[1] == "ready")
        assert ready == "ready" and start == info["last_event_id"]

        # Away: a case in another grid, then two in ours.
        theirs = web_stack.open_phone_case(web_stack.household_in(other_grid(web_stack)))
        mine = [web_stack.open_phone_case(web_stack.household_in(grid)) for _ in range(2)]

        def saw_last(event: Event) -> bool:
            return event[1] == "case" and event[2]["id"] == mine[-1]

        for headers, query in (({"Last-Event-ID": str(start)}, ""), ({}, f"?since={start}")):
            replay = await collect(client, path + query, saw_last, headers)
            assert replay[0][1] == "ready"
            cases = [data["id"] for _id, name_, data in replay if name_ == "case"]
            assert cases == mine and theirs not in cases
            notes = [data["case_id"] for _id, name_, data in replay if name_ == "notification"]
            assert mine[0] in notes
            ids = [i for i, _n, _d in replay[1:]]
            assert all(i is not None and i > start for i in ids) and ids == sorted(ids)

        # A new client (no Last-Event-ID) starts at the present: no replay.
        fresh = await collect(client, path, lambda e: e[1] == "ready")
        assert [n for _i, n, _d in fresh] == ["ready"]


async def test_the_desk_stream_is_for_the_desk_and_sees_every_grid(web_stack: WebStack) -> None:
    name, _worker, grid = first_grid(web_stack)
    client, _csrf = session_client(web_stack, name)
    async with client:
        refused = await client.get("/api/v1/stream/cases")
        assert refused.status_code == 403
    async with httpx.AsyncClient(
        base_url=web_stack.url, headers=web_stack.stack.headers(), timeout=20
    ) as desk:
        [(start, _ready, _info)] = await collect(desk, "/api/v1/stream/cases", lambda e: True)
        first = web_stack.open_phone_case(web_stack.household_in(other_grid(web_stack)))
        second = web_stack.open_phone_case(web_stack.household_in(grid))
        seen = await collect(
            desk,
            "/api/v1/stream/cases",
            lambda e: e[1] == "case" and e[2]["id"] == second,
            {"Last-Event-ID": str(start)},
        )
        assert {first, second} <= {d["id"] for _i, n, d in seen if n == "case"}
        assert not [n for _i, n, _d in seen if n == "notification"]


async def test_a_revoked_token_ends_its_stream_within_seconds(web_stack: WebStack) -> None:
    name, worker, _grid = first_grid(web_stack)
    client, csrf = session_client(web_stack, name)
    async with client:
        seen: list[str] = []
        revoked_at = 0.0

        async def read() -> None:
            nonlocal revoked_at
            async for _id, event, _data in events(client, f"/api/v1/workers/{worker}/stream"):
                seen.append(event)
                if event == "ready":
                    out = await client.post("/web/logout", headers={"X-CSRF-Token": csrf})
                    assert out.status_code == 200
                    revoked_at = time.monotonic()

        await asyncio.wait_for(read(), 60)
        ended_s = time.monotonic() - revoked_at
        print(f"\nrevoked token -> stream closed in {ended_s:.2f} s")
        assert seen == ["ready", "unauthorized"]
