"""Browser tests of the web pages: Debian's chromium driven by Playwright (issue #12).

Real parts, as in ``tests/integration``: a private Mosquitto, ``python -m hub`` with the
demo community on a real SQLite file (one hub per test module: ``web_stack``), real
accounts logged in through the login page. Playwright's own browser download is not
used: :func:`launch` starts ``/usr/bin/chromium`` (``--no-sandbox`` as root).

How to test a new page: ``async with phone(browser) as page`` (360×740, touch) or
``desktop(browser)``; ``await log_in(page, web_stack, "wang")``; then Playwright's
``expect`` with generous timeouts (the machine is shared; never a bare sleep).
``run_axe(page)`` returns axe-core's serious and critical violations.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from simulators.screenshots import CHROMIUM, chromium_options, demo_logins
from simulators.stack import Stack
from tests.conftest import MigratedSchema

AXE = Path(__file__).with_name("vendor") / "axe.min.js"
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1366, "height": 860}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.browser)


@dataclass
class WebStack:
    """A running hub with the demo community and one login per seeded grid worker."""

    stack: Stack
    #: username -> (password, worker id, grid id)
    logins: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    households: int = 0  # made by household_in

    @property
    def url(self) -> str:
        return self.stack.hub_url

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.stack.headers(), timeout=20)

    def household_in(self, grid_id: int) -> int:
        """A new household of the grid (registered through the API), so that a call from it
        opens a case of its own instead of joining an open one."""
        self.households += 1
        with self.api() as client:
            response = client.post(
                "/api/v1/households",
                json={"grid_id": grid_id, "address": f"测试楼{self.households}号 {grid_id}-101室"},
            )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def open_phone_case(self, household_id: int, note: str = "") -> int:
        """A hotline call opens a case (no button needed), as the desk would."""
        with self.api() as client:
            response = client.post(
                "/api/v1/cases",
                json={"household_id": household_id, "note": note, "operator": "desk-test"},
            )
        assert response.status_code == 201, response.text
        return int(response.json()["case_id"])


@pytest.fixture(scope="module")
def web_stack(
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    migrated_schema: MigratedSchema,
) -> Iterator[WebStack]:
    """One hub for a test module (starting one costs seconds on a shared machine), on a
    copy of the migrated schema (tests/conftest.py)."""
    stack = Stack(tmp_path_factory.mktemp("web"))
    migrated_schema.place(stack, request)
    stack.start_broker()
    try:
        # No escalation while a test looks: a case stays with its grid worker.
        stack.start_hub(escalation={"grid_worker_s": 3600, "backup_worker_s": 3600})
        web = WebStack(stack, demo_logins(stack))
        yield web
    finally:
        stack.stop()
        if stack.hub is not None and "Traceback" in stack.hub.log_text():
            print(f"--- hub log ---\n{stack.hub.log_text()[-4000:]}")


def launch_args() -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: run scripts/ensure-system-deps.sh (Debian chromium)")
    return chromium_options()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(**launch_args())
        try:
            yield launched
        finally:
            await launched.close()


def _watch_console(page: Page) -> None:
    def show(message: Any) -> None:
        if message.type in ("error", "warning"):
            print(f"[browser {message.type}] {message.text}")

    page.on("console", show)
    page.on("pageerror", lambda err: print(f"[page error] {err}"))


@contextlib.asynccontextmanager
async def phone(browser: Browser, **options: Any) -> AsyncIterator[Page]:
    """A cheap phone: 360×740 CSS pixels, touch, Chinese locale."""
    context = await browser.new_context(
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        **options,
    )
    page = await context.new_page()
    _watch_console(page)
    try:
        yield page
    finally:
        await context.close()


@contextlib.asynccontextmanager
async def desktop(browser: Browser, **options: Any) -> AsyncIterator[Page]:
    context = await browser.new_context(
        viewport=DESKTOP, locale="zh-CN", timezone_id="Asia/Shanghai", **options
    )
    page = await context.new_page()
    _watch_console(page)
    try:
        yield page
    finally:
        await context.close()


async def log_in(page: Page, web: WebStack, username: str, next_path: str = "") -> None:
    """Through the login page, as a person would; ends on the page the login leads to."""
    target = f"{web.url}/login" + (f"?next={next_path}" if next_path else "")
    await page.goto(target)
    await page.fill("#username", username)
    await page.fill("#password", web.logins[username][0])
    await page.click("#login-submit")
    await page.wait_for_url(lambda url: "/login" not in url, timeout=30_000)


async def run_axe(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now.

    Loaded with ``evaluate`` (the DevTools protocol), since the page's CSP rightly refuses
    an injected script tag.
    """
    await page.evaluate(AXE.read_text(encoding="utf-8"))
    result: dict[str, Any] = await page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"]
        if v.get("impact") in ("serious", "critical")
    ]
