"""The worker page's live behaviour, grid scope and accessibility (issue #12, b-d).

One hub for the module; the hub-killing test runs last. Cases are opened as the hotline
would (``POST /api/v1/cases``), so no edge is needed here (``test_worker_page`` has one).
"""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import WebStack, log_in, phone, run_axe

LONG = 30_000  # ms: a generous deadline on a shared machine


def login_of_grid(web: WebStack, index: int) -> tuple[str, int, int]:
    name = sorted(web.logins, key=lambda n: web.logins[n][2])[index]
    _password, worker, grid = web.logins[name]
    return name, worker, grid


async def open_worker_page(page: Page, web: WebStack, username: str) -> None:
    await log_in(page, web, username)
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=LONG)
    await expect(page.locator("#cases-title")).to_be_visible(timeout=LONG)


async def test_a_worker_sees_nothing_of_another_grid(web_stack: WebStack, browser: Browser) -> None:
    name_a, _worker_a, grid_a = login_of_grid(web_stack, 0)
    _name_b, _worker_b, grid_b = login_of_grid(web_stack, 1)
    home_b = web_stack.household_in(grid_b)
    with web_stack.api() as client:
        address_b = client.get(f"/api/v1/households/{home_b}").json()["address"]
    before = web_stack.open_phone_case(home_b, "grid B, before the page opened")
    async with phone(browser) as page:
        await open_worker_page(page, web_stack, name_a)
        during = web_stack.open_phone_case(home_b, "grid B, while the page is open")
        mine = web_stack.open_phone_case(web_stack.household_in(grid_a), "grid A")
        # The feed is ordered: once grid A's later case is shown, grid B's would have been.
        await expect(page.locator(f"article[data-case-id='{mine}']")).to_be_visible(timeout=LONG)
        for case_id in (before, during):
            await expect(page.locator(f"[data-case-id='{case_id}']")).to_have_count(0)
        assert address_b not in await page.inner_text("body")

        # Opening grid B's case by its short link shows nothing of it either.
        await page.goto(f"{web_stack.url}/c/{during}")
        await expect(page.locator("main .error")).to_be_visible(timeout=LONG)
        assert address_b not in await page.inner_text("body")
        await expect(page.locator("#case-detail")).to_have_count(0)


async def test_no_serious_accessibility_violation(web_stack: WebStack, browser: Browser) -> None:
    name, _worker, grid = login_of_grid(web_stack, 0)
    case_id = web_stack.open_phone_case(web_stack.household_in(grid), "axe")
    async with phone(browser) as page:
        await page.goto(f"{web_stack.url}/login")
        await expect(page.locator("#login-form")).to_be_visible(timeout=LONG)
        assert await run_axe(page) == []
        await open_worker_page(page, web_stack, name)
        await expect(page.locator(f"article[data-case-id='{case_id}']")).to_be_visible(timeout=LONG)
        assert await run_axe(page) == []
        await page.locator(f"article[data-case-id='{case_id}'] a").first.click()
        await expect(page.locator("#case-detail")).to_be_visible(timeout=LONG)
        assert await run_axe(page) == []


async def test_a_revoked_session_sends_the_page_to_the_login_screen(
    web_stack: WebStack, browser: Browser
) -> None:
    name, _worker, _grid = login_of_grid(web_stack, 1)
    async with phone(browser) as page:
        await open_worker_page(page, web_stack, name)
        with web_stack.api() as client:
            [account] = [a for a in client.get("/api/v1/accounts").json() if a["username"] == name]
            disabled = client.post(f"/api/v1/accounts/{account['id']}/disable")
            assert disabled.status_code == 200, disabled.text  # and its tokens revoked
        try:
            # The open stream ends (unauthorized) and the page goes to the login screen,
            # which will lead back to the worker page.
            await page.wait_for_url(lambda url: "/login?next=%2Fworker" in url, timeout=LONG)
            await expect(page.locator("#login-form")).to_be_visible(timeout=LONG)
        finally:
            with web_stack.api() as client:
                client.post(f"/api/v1/accounts/{account['id']}/enable").raise_for_status()


async def test_page_survives_a_hub_kill_and_replays_what_it_missed(
    web_stack: WebStack, browser: Browser
) -> None:
    name, _worker, grid = login_of_grid(web_stack, 0)
    stack = web_stack.stack
    assert stack.hub is not None
    async with phone(browser) as page:
        await open_worker_page(page, web_stack, name)
        status = page.locator("#live-status")

        stack.hub.kill()  # SIGKILL, with the page open
        await expect(status).to_have_attribute("data-state", "offline", timeout=LONG)
        assert "离线" in await status.inner_text()

        # The phone stays out of reach (a lift, a basement) while the hub comes back and a
        # call comes in, so the page can only learn of it by replay after reconnecting.
        await page.context.set_offline(True)
        stack.hub.start()
        stack.wait_for_hub(60)
        missed = web_stack.open_phone_case(web_stack.household_in(grid), "while the phone was away")
        await expect(page.locator(f"[data-case-id='{missed}']")).to_have_count(0)
        await page.context.set_offline(False)

        await expect(page.locator(f"article[data-case-id='{missed}']")).to_be_visible(timeout=LONG)
        await expect(status).to_have_attribute("data-state", "back", timeout=LONG)
        assert "已恢复" in await status.inner_text()
