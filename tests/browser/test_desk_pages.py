"""The hotline desk board and the care KPI page in a real browser (issue #12).

Real hub, broker, edge and a simulated button on a pty (the shell's ``web_stack``: one
hub for this module). A hotline account watches the desk board while a grid worker, on a
phone, acknowledges an SOS: the board shows the case go from dispatched to acknowledged
without a reload. Its waiting time turns amber at 30 s and red at 60 s, with words (the
page's clock is jumped ahead). The KPI page shows a call with its time to acknowledge, the
CSV link returns the same table, and axe-core finds no serious or critical violation on either page.
"""

from __future__ import annotations

import csv
import io
import secrets
from datetime import datetime
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect

from simulators.button import SimulatedButtonBus
from tests.browser.conftest import WebStack, desktop, log_in, phone, run_axe
from tests.integration.conftest import placement

EDGE = "edge-demo"
BUTTON = 77626
LONG = 30_000  # ms: the machine is shared


@pytest.fixture(scope="module")
def desk_web(web_stack: WebStack) -> WebStack:
    """The module's hub with a hotline desk and an operator account added."""
    with web_stack.api() as client:
        for username, role in (("desk", "hotline"), ("boss", "operator")):
            if username in web_stack.logins:
                continue
            password = secrets.token_urlsafe(12)
            response = client.post(
                "/api/v1/accounts",
                json={"username": username, "role": role, "password": password},
            )
            assert response.status_code == 201, response.text
            web_stack.logins[username] = (password, 0, 0)
    return web_stack


async def no_serious_violations(page: Page) -> None:
    violations = await run_axe(page)
    assert not violations, [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]]) for v in violations
    ]


async def test_desk_board_follows_a_case_acknowledged_on_the_phone(
    desk_web: WebStack, browser: Browser, tmp_path: Path
) -> None:
    _household, grid, worker = placement(desk_web.stack, f"cb100-{BUTTON}")
    username = next(n for n, (_p, w, _g) in desk_web.logins.items() if w == worker)
    link = tmp_path / "bus0"
    async with SimulatedButtonBus([BUTTON], link_path=link, retransmit_s=1.0) as bus:
        desk_web.stack.start_edge(EDGE, [str(link)])
        async with desktop(browser) as board, phone(browser) as handset:
            await board.clock.install()  # time flows; the test may jump it ahead
            await log_in(board, desk_web, "desk")
            assert board.url.endswith("/desk"), "the hotline lands on the desk board"
            await expect(board.locator("#live-status")).to_have_attribute(
                "data-state", "live", timeout=LONG
            )
            await log_in(handset, desk_web, username)
            await expect(handset.locator("#live-status")).to_have_attribute(
                "data-state", "live", timeout=LONG
            )
            await board.evaluate("window.__sameDocument = true")

            bus.button(BUTTON).press_sos()
            row = board.locator("#board-table tr[data-case-id]").first
            await expect(row).to_have_attribute("data-state", "dispatched", timeout=LONG)
            case_id = await row.get_attribute("data-case-id")
            await expect(row.locator(".holder")).to_contain_text("待接单", timeout=LONG)
            wait = row.locator(".wait")
            await expect(wait).to_contain_text("等待", timeout=LONG)  # a word, not only a colour
            assert await wait.get_attribute("data-level") in ("waiting", "amber", "red")
            await expect(row.locator(".countdown")).to_contain_text("升级", timeout=LONG)
            # The page's clock jumps ahead (no waiting in the test): amber from 30 s, red
            # from 60 s, each with words as well as a colour.
            await board.clock.fast_forward("00:35")
            await expect(wait).to_have_attribute("data-level", "amber")
            await expect(wait).to_contain_text("超30秒")
            await board.clock.fast_forward("00:30")
            await expect(wait).to_have_attribute("data-level", "red")
            await expect(wait).to_contain_text("超60秒")

            card = handset.locator(f"article[data-case-id='{case_id}']")
            await card.locator("button[data-action='acknowledge']").click()

            taken = board.locator(f"#board-table tr[data-case-id='{case_id}']")
            await expect(taken).to_have_attribute("data-state", "acknowledged", timeout=LONG)
            await expect(taken.locator(".wait")).to_have_attribute("data-level", "ok")
            await expect(taken.locator(".wait")).to_contain_text("内应答")
            assert await board.evaluate("window.__sameDocument === true"), "no reload"

            await no_serious_violations(board)
    assert grid > 0


async def test_kpi_page_shows_the_call_and_its_csv_matches(
    desk_web: WebStack, browser: Browser
) -> None:
    household = desk_web.household_in(2)
    case_id = desk_web.open_phone_case(household, "KPI 测试来电")
    worker = next(w for _p, w, g in desk_web.logins.values() if g == 2)
    with desk_web.api() as client:
        acknowledged = client.post(
            f"/api/v1/cases/{case_id}/acknowledge", json={"worker_id": worker}
        )
        assert acknowledged.status_code == 200, acknowledged.text
        case = client.get(f"/api/v1/cases/{case_id}").json()
    opened = datetime.fromisoformat(case["opened_at"])
    answered = datetime.fromisoformat(case["acknowledged_at"])
    seconds = round((answered - opened).total_seconds(), 1)
    expected = f"{seconds:.1f}".removesuffix(".0")
    today = opened.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()

    async with desktop(browser, accept_downloads=True) as page:
        target = f"/kpi?level=grid&id=2&start={today}&end={today}"
        await log_in(page, desk_web, "boss", quote(target, safe=""))
        assert page.url.endswith(target)
        call = page.locator(f"#calls-table tr[data-case-id='{case_id}']")
        await expect(call).to_be_visible(timeout=LONG)
        await expect(call.locator(".to-answer")).to_have_text(expected)
        await expect(page.locator("#kpi-table")).to_be_visible()
        await expect(page.locator("#chart svg")).to_be_visible()

        # the page's table, cell by cell, against the CSV behind the link
        keys = await page.locator("#kpi-table thead th").evaluate_all(
            "cells => cells.map(c => c.dataset.key)"
        )
        shown = await page.locator("#kpi-table tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.children].map(c => c.textContent.trim()))"
        )
        href = await page.locator("#csv-link").get_attribute("href")
        assert href is not None and "start=" + today in href
        exported = await page.request.get(desk_web.url + href)
        assert exported.status == 200
        body = await exported.body()
        assert body.startswith(b"\xef\xbb\xbf")
        rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
        header, data = rows[0], rows[1:]
        with desk_web.api() as client:
            columns = client.get("/api/v1/kpi/care", params={"level": "grid", "id": 2}).json()[
                "columns"
            ]
        assert [c["key"] for c in columns if c["on_page"]] == keys
        index = [[c["key"] for c in columns].index(k) for k in keys]
        assert len(data) == len(shown) >= 2  # the grid's total and the worker's row
        for csv_row, page_row in zip(data, shown, strict=True):
            assert [csv_row[i] for i in index] == page_row
        assert header[index[keys.index("help_calls")]] == "求助呼叫 / help calls"
        total = dict(zip(keys, shown[0], strict=True))
        assert total["answer_median_s"] == expected and int(total["help_calls"]) >= 1

        await no_serious_violations(page)
