"""Pure pieces of the web pages (issue #12): short links, the CSRF token, page names."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from hub.domain.notification import (
    Notification,
    markdown_in,
    page_link,
    template_fields,
    text_in,
)
from hub.web.pages import PAGES_DIR, STATIC_DIR, case_link, task_link
from hub.web.session_cookie import csrf_for, csrf_matches

NOTE = Notification(
    case_id=12,
    worker_id=3,
    tier="grid_worker",
    kind="sos",
    resident_name="张桂英",
    address="幸福里小区3号楼2单元301室",
    grid_name="第一网格",
    household_id=1,
    occurred_at=datetime(2025, 3, 3, 1, 5, tzinfo=UTC),
    message_zh="【一键通求助】张桂英",
    message_en="SOS: 张桂英",
    ack_path="https://hub.example:8443/base/api/v1/cases/12/acknowledge",
)


def test_a_case_notification_links_to_the_case_on_the_worker_page() -> None:
    assert page_link(NOTE) == "https://hub.example:8443/base/c/12"
    assert page_link(NOTE) == case_link("https://hub.example:8443/base/", 12)


def test_a_task_notification_links_to_the_task() -> None:
    task = replace(NOTE, case_id=None, task_id=7, ack_path="http://h/api/v1/tasks/7/acknowledge")
    assert page_link(task) == "http://h/t/7" == task_link("http://h", 7)


def test_an_unknown_path_is_passed_through() -> None:
    odd = replace(NOTE, ack_path="")
    assert page_link(odd) == ""
    odd = replace(NOTE, ack_path="http://h/api/v1/cases/x/acknowledge")
    assert page_link(odd) == odd.ack_path


@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_channel_text_carries_the_short_link(language: str) -> None:
    link = "https://hub.example:8443/base/c/12"
    assert markdown_in(NOTE, language).endswith(f"]({link})")  # type: ignore[arg-type]
    assert text_in(NOTE, language).endswith(link)  # type: ignore[arg-type]
    fields = template_fields(NOTE, language, "13800000003")  # type: ignore[arg-type]
    assert fields["message"].endswith(link) and fields["link"] == link
    assert "api/v1" not in fields["message"]


def test_csrf_token_belongs_to_its_session() -> None:
    token = "a-session-token"
    assert csrf_matches(token, csrf_for(token))
    assert not csrf_matches(token, csrf_for("another-session"))
    assert not csrf_matches(token, None)
    assert not csrf_matches(token, "")
    assert csrf_for(token) != token and token not in csrf_for(token)


def test_pages_hold_no_inline_script_or_style_so_the_csp_can_forbid_them() -> None:
    pages = sorted(PAGES_DIR.glob("*.html"))
    assert {p.stem for p in pages} >= {"login", "worker"}
    for page in pages:
        html = page.read_text(encoding="utf-8")
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert 'src="/static/' in tag and 'type="module"' in tag, (page.name, tag)
        assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html), page.name  # no inline body
        assert not re.search(r"\son[a-z]+=", html), page.name  # no onclick= etc.
        assert not re.search(r"\sstyle=", html), page.name
        assert "http://" not in html and "https://" not in html, page.name  # no CDN


def test_scripts_use_no_eval_and_no_remote_address() -> None:
    for script in (STATIC_DIR / "js").glob("*.js"):
        code = script.read_text(encoding="utf-8")
        assert "eval(" not in code and "new Function" not in code, script.name
        assert not re.search(r"\.innerHTML\s*=", code), script.name  # data goes in as text
        # the SVG namespace is a name, never fetched; any other URL would be a remote load
        names_only = code.replace('"http://www.w3.org/2000/svg"', '""')
        assert not re.search(r"https?://", names_only), script.name
