"""``make screenshots``: phone (360×740) and desktop pictures of the web pages.

Starts a real system (private Mosquitto, ``python -m hub`` with the demo community), makes
the demo logins, opens two help calls as the hotline would and takes one grid worker
through the first steps, then drives Debian's chromium with Playwright over each entry
of :data:`SHOTS` and writes ``docs/screenshots/<name>.png``. The last shot is taken with
the hub stopped, to show the offline banner.

To add a page: add a :class:`Shot` per viewport with the page's path, a login of the right
role (add the account in :func:`demo_logins` or :func:`desk_logins`), the selectors that
say it has loaded (``ready``), and a ``prepare`` coroutine if the page needs a click
before the picture.
The desk board and the KPI page are shot as the hotline desk (``desk``) and an operator
(``boss``) see them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sqlite3
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

from simulators.stack import REPO_ROOT, Stack

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PHONE: ViewportSize = {"width": 360, "height": 740}
DESKTOP: ViewportSize = {"width": 1366, "height": 860}


def chromium_options() -> dict[str, Any]:
    """How to start Debian's chromium with Playwright (its own download is unreachable)."""
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    return {"executable_path": CHROMIUM, "args": args, "headless": True}


def primary_workers(db_path: Path) -> list[tuple[int, int]]:
    """(worker id, grid id) of each grid's primary worker, in grid order (from the hub's DB)."""
    db = sqlite3.connect(db_path, timeout=10)
    try:
        rows = db.execute(
            "SELECT DISTINCT worker_id, grid_id FROM shifts WHERE role = 'primary' "
            "AND grid_id IS NOT NULL ORDER BY grid_id"
        ).fetchall()
    finally:
        db.close()
    return [(int(w), int(g)) for w, g in rows]


def demo_logins(stack: Stack) -> dict[str, tuple[str, int, int]]:
    """A worker account for each grid's primary worker: username -> (password, worker, grid)."""
    logins = {}
    workers = primary_workers(stack.workdir / "hub" / "hub.db")
    with httpx.Client(base_url=stack.hub_url, headers=stack.headers(), timeout=20) as client:
        for name, (worker, grid) in zip(("wang", "zhao"), workers, strict=False):
            password = secrets.token_urlsafe(12)
            response = client.post(
                "/api/v1/accounts",
                json={
                    "username": name,
                    "role": "worker",
                    "worker_id": worker,
                    "password": password,
                },
            )
            response.raise_for_status()
            logins[name] = (password, worker, grid)
    return logins


def desk_logins(stack: Stack) -> dict[str, tuple[str, int, int]]:
    """The desk pages' accounts: ``desk`` (hotline) and ``boss`` (operator); no worker, no grid.

    Kept apart from :func:`demo_logins`, which the browser tests use as "one login per grid".
    """
    logins = {}
    with httpx.Client(base_url=stack.hub_url, headers=stack.headers(), timeout=20) as client:
        for name, role in (("desk", "hotline"), ("boss", "operator")):
            password = secrets.token_urlsafe(12)
            response = client.post(
                "/api/v1/accounts", json={"username": name, "role": role, "password": password}
            )
            response.raise_for_status()
            logins[name] = (password, 0, 0)
    return logins


@dataclass(frozen=True)
class Shot:
    name: str
    path: str
    login: str | None  # a username of demo_logins, or None for the login page itself
    viewport: ViewportSize
    prepare: Callable[[Page], Awaitable[None]] | None = None
    full_page: bool = False  # the whole page, not only the first screen
    #: what must be on the page before the picture (the worker page's by default)
    ready: tuple[str, ...] = ("#live-status[data-state='live']", "#cases-title")


async def _open_first_case(page: Page) -> None:
    await page.locator("article[data-case-id] a").first.click()
    await page.locator("#case-detail").wait_for(timeout=30_000)


async def _desk_case_and_caller(page: Page) -> None:
    """The desk with a case open in the side panel and a caller's household found."""
    await page.locator("#board-table button[data-action='handle']").first.click()
    await page.locator("#reassign-form, #note-form").first.wait_for(timeout=30_000)
    await page.fill("#household-q", "和平新村")
    await page.click("#search-submit")
    await page.locator("#household-results").wait_for(timeout=30_000)
    await page.evaluate("window.scrollTo(0, 0)")


async def _desk_board_on_a_phone(page: Page) -> None:
    await page.locator("#board").scroll_into_view_if_needed()


DESK_READY = ("#live-status[data-state='live']", "#board-table", ".health-card")
KPI_READY = ("#kpi-table", "#chart svg")
KPI_PATH = "/kpi?level=community&id=1"


async def _in_english(page: Page) -> None:
    await page.click("#lang-toggle")
    await page.locator("html[lang='en']").wait_for(timeout=30_000)


SHOTS = [
    Shot("login-phone", "/login", None, PHONE),
    Shot("login-desktop", "/login", None, DESKTOP),
    Shot("worker-phone", "/worker", "wang", PHONE),
    Shot("worker-case-phone", "/worker", "wang", PHONE, _open_first_case, full_page=True),
    Shot("worker-desktop", "/worker", "wang", DESKTOP),
    Shot("worker-phone-en", "/worker", "wang", PHONE, _in_english),
    Shot("desk-desktop", "/desk", "desk", DESKTOP, ready=DESK_READY),
    Shot("desk-case-desktop", "/desk", "desk", DESKTOP, _desk_case_and_caller, ready=DESK_READY),
    Shot("desk-phone", "/desk", "desk", PHONE, _desk_board_on_a_phone, ready=DESK_READY),
    Shot("kpi-desktop", KPI_PATH, "boss", DESKTOP, ready=KPI_READY),
    Shot("kpi-phone", KPI_PATH, "boss", PHONE, ready=KPI_READY),
]


async def log_in(page: Page, base: str, username: str, password: str, path: str) -> None:
    await page.goto(f"{base}/login?next={path}")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login-submit")
    await page.wait_for_url(lambda url: "/login" not in url, timeout=30_000)


async def take(browser: Browser, base: str, shot: Shot, logins: dict[str, Any], out: Path) -> Page:
    context = await browser.new_context(
        viewport=shot.viewport,
        device_scale_factor=2 if shot.viewport is PHONE else 1,
        is_mobile=shot.viewport is PHONE,
        has_touch=shot.viewport is PHONE,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
    )
    page = await context.new_page()
    if shot.login is None:
        await page.goto(base + shot.path)
    else:
        await log_in(page, base, shot.login, logins[shot.login][0], quote(shot.path, safe=""))
        for selector in shot.ready:
            await page.locator(selector).first.wait_for(timeout=30_000)
    if shot.prepare is not None:
        await shot.prepare(page)
    await page.screenshot(path=str(out / f"{shot.name}.png"), full_page=shot.full_page)
    print(f"wrote {out / (shot.name + '.png')}")
    return page


def stage_cases(stack: Stack, logins: dict[str, tuple[str, int, int]]) -> None:
    """Two help calls in wang's grid, as the hotline would open them; wang takes one."""
    _password, wang, grid = logins["wang"]
    with httpx.Client(base_url=stack.hub_url, headers=stack.headers(), timeout=20) as client:
        homes = [h["id"] for h in client.get("/api/v1/households").json() if h["grid_id"] == grid]

        def phone_case(household: int, note: str) -> int:
            body = {"household_id": household, "note": note, "operator": "desk"}
            response = client.post("/api/v1/cases", json=body)
            response.raise_for_status()
            return int(response.json()["case_id"])

        taken = phone_case(homes[1], "老人来电称头晕 / dizzy, called the hotline")
        acknowledge = client.post(f"/api/v1/cases/{taken}/acknowledge", json={"worker_id": wang})
        acknowledge.raise_for_status()
        phone_case(homes[0], "老人来电称摔倒在卫生间 / fell in the bathroom")


def stage_desk(stack: Stack) -> None:
    """What the desk board's pictures should show, written into the hub's database.

    The waiting call is backdated by 75 s so the picture shows the red "over 60 s" state
    (a call really opened now would be white); a low battery, a device gone offline, an
    edge with a backlog and one quarantined message fill the health panel.
    """
    db = sqlite3.connect(stack.workdir / "hub" / "hub.db", timeout=10)
    try:
        with db:
            db.execute(
                "UPDATE cases SET opened_at = datetime(opened_at, '-75 seconds') "
                "WHERE state IN ('open', 'dispatched')"
            )
            db.execute(
                "UPDATE devices SET battery_pct = 12, online = 1, last_seen = datetime('now') "
                "WHERE id = 'cb100-77627'"
            )
            db.execute(
                "UPDATE devices SET online = 0, last_seen = datetime('now', '-2 hours') "
                "WHERE id = 'cb100-77628'"
            )
            info = (
                '{"outbox_depth": 5400, "oldest_unsent_age_s": 620, "buffer_pressure": true, '
                '"fill_pct": 91, "dropped": {"telemetry": 12}}'
            )
            db.execute(
                "INSERT OR REPLACE INTO edge_status (edge_id, online, at, info) "
                "VALUES ('edge-demo', 1, datetime('now', '-1 minutes'), ?)",
                (info,),
            )
            db.execute(
                "INSERT INTO quarantine (received_at, edge_id, topic, reason, payload) VALUES "
                "(datetime('now', '-10 minutes'), 'edge-demo', 'community/edge-demo/events', "
                "'event.kind: unknown kind \"foo\" / 未知事件类型', '')"
            )
    finally:
        db.close()


async def run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screenshots-") as workdir:
        stack = Stack(Path(workdir))
        stack.start_broker()
        try:
            stack.start_hub(escalation={"grid_worker_s": 3600, "backup_worker_s": 3600})
            logins = demo_logins(stack)
            stage_cases(stack, logins)  # before the desk accounts: it wants the workers only
            logins |= desk_logins(stack)
            stage_desk(stack)
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(**chromium_options())
                page = None
                for shot in SHOTS:
                    page = await take(browser, stack.hub_url, shot, logins, out)
                    if shot.name != "worker-phone":
                        await page.context.close()
                assert page is not None
                # The worker page with the hub gone: the offline banner.
                offline = await take(browser, stack.hub_url, SHOTS[2], logins, out)
                assert stack.hub is not None
                stack.hub.kill()
                await offline.locator("#live-status[data-state='offline']").wait_for(timeout=30_000)
                await offline.screenshot(path=str(out / "worker-offline-phone.png"))
                print(f"wrote {out / 'worker-offline-phone.png'}")
                await browser.close()
        finally:
            stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.screenshots", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    asyncio.run(run(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
