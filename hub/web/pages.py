"""Page routing, static files and short links for the web pages (see :mod:`hub.web`).

Every ``static/pages/<name>.html`` is served at ``/<name>`` (no registry to edit when a page
is added); ``/`` goes to the login page, which sends each role to its home page. Static
files are served under ``/static`` with a short cache and revalidation, so a phone on a
slow link re-downloads nothing unchanged.

Short links (issue #12): ``/c/<case id>`` opens that case on the worker page and
``/t/<task id>`` that task; the chat and SMS messages carry them (:func:`case_link`),
built on the configured public address. The page asks the worker to log in first if
needed and comes back to the case afterwards.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from hub.web import session
from hub.web.security import SecurityHeaders

STATIC_DIR = Path(__file__).with_name("static")
PAGES_DIR = STATIC_DIR / "pages"
_PAGE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")

router = APIRouter(include_in_schema=False)


def case_link(base_url: str, case_id: int) -> str:
    """The short link that opens case ``case_id`` on the worker page."""
    return f"{base_url.rstrip('/')}/c/{case_id}"


def task_link(base_url: str, task_id: int) -> str:
    return f"{base_url.rstrip('/')}/t/{task_id}"


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/login", status.HTTP_303_SEE_OTHER)


@router.get("/c/{case_id}")
async def case_short_link(case_id: int = PathParam(gt=0, lt=2**63)) -> Response:
    return RedirectResponse(f"/worker?case={case_id}", status.HTTP_303_SEE_OTHER)


@router.get("/t/{task_id}")
async def task_short_link(task_id: int = PathParam(gt=0, lt=2**63)) -> Response:
    return RedirectResponse(f"/worker?task={task_id}", status.HTTP_303_SEE_OTHER)


@router.get("/manifest.webmanifest")
async def manifest() -> Response:
    return FileResponse(
        STATIC_DIR / "manifest.webmanifest",
        media_type="application/manifest+json",
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/{name}")
async def page(name: str) -> Response:
    path = PAGES_DIR / f"{name}.html"
    if not _PAGE_NAME.match(name) or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such page / 页面不存在")
    return FileResponse(path, media_type="text/html", headers={"Cache-Control": "no-cache"})


class _StaticFiles(StaticFiles):
    """Static files that a browser revalidates (ETag) instead of re-downloading."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


def install_web(app: FastAPI) -> None:
    """Mount the pages; call after every API router (the page route is a catch-all)."""
    app.add_middleware(SecurityHeaders)
    app.include_router(session.router)
    app.mount("/static", _StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
