"""Every API route declares the roles that may call it (issue #4).

Walks the application's route table, with each route's whole dependency tree, and fails on
any route without a :func:`hub.api.deps.require_roles` dependency, except the short list of
routes that are public on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from hub.app import create_app
from hub.config import HubConfig
from hub.domain.access import Role

#: Public on purpose: probes for process supervisors, the login itself, the API docs.
PUBLIC = {
    "/healthz",
    "/readyz",
    "/api/v1/auth/token",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}
#: The web pages (issue #12): the login itself, and static files that hold no data (each
#: page asks ``/web/session``, which declares its roles, and goes to the login if refused).
PAGES = {
    "/web/login",
    "/",
    "/{name}",
    "/c/{case_id}",
    "/t/{task_id}",
    "/manifest.webmanifest",
    "/static",
}


@dataclass(frozen=True)
class Endpoint:
    path: str
    methods: frozenset[str]
    dependant: Dependant | None  # None: not an APIRoute (no dependencies at all)

    def __str__(self) -> str:
        return f"{'/'.join(sorted(self.methods))} {self.path}"


def endpoints(app: FastAPI) -> list[Endpoint]:
    """Every route as served, with included routers flattened (their prefixes applied)."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI with lazily included routers
    except ImportError:  # older FastAPI: app.routes is already flat
        contexts: list[object] = list(app.routes)
    else:
        contexts = list(iter_route_contexts(app.routes))
    found = []
    for context in contexts:
        original = getattr(context, "original_route", context)
        dependant = getattr(context, "dependant", None) if isinstance(original, APIRoute) else None
        path = getattr(context, "path", None)
        assert isinstance(path, str), context
        found.append(Endpoint(path, frozenset(getattr(context, "methods", None) or ()), dependant))
    return found


def declared_roles(dependant: Dependant | None) -> set[frozenset[Role]]:
    found: set[frozenset[Role]] = set()
    for dependency in dependant.dependencies if dependant is not None else ():
        roles = getattr(dependency.call, "roles", None)
        if roles is not None:
            found.add(frozenset(roles))
        found |= declared_roles(dependency)
    return found


def app_endpoints() -> list[Endpoint]:
    return endpoints(create_app(HubConfig.model_validate({"api": {"token": "x" * 24}})))


def test_every_api_route_declares_its_roles() -> None:
    routes = app_endpoints()
    assert len(routes) >= 20 and any(r.path == "/api/v1/cases/{case_id}" for r in routes)
    missing = [
        str(r) for r in routes if r.path not in PUBLIC | PAGES and not declared_roles(r.dependant)
    ]
    assert not missing, "routes without require_roles(...): " + ", ".join(missing)


def test_the_public_list_is_short_and_real() -> None:
    paths = {route.path for route in app_endpoints()}
    assert {"/healthz", "/api/v1/auth/token", "/openapi.json"} <= paths
    assert len(PUBLIC) <= 7


def test_no_person_route_admits_edges() -> None:
    """Edges are machine identities: they talk MQTT, never the people's API."""
    for route in app_endpoints():
        for roles in declared_roles(route.dependant):
            assert Role.EDGE not in roles, str(route)


def test_admin_only_and_staff_only_routes() -> None:
    expected = {
        "/api/v1/accounts": {Role.ADMIN},
        "/api/v1/accounts/{account_id}/disable": {Role.ADMIN},
        "/api/v1/audit": {Role.ADMIN, Role.OPERATOR},
        "/api/v1/quarantine": {Role.ADMIN, Role.OPERATOR},
        "/api/v1/quarantine/dropped": {Role.ADMIN, Role.OPERATOR},
    }
    checked = 0
    for route in app_endpoints():
        if route.path in expected:
            assert declared_roles(route.dependant) == {frozenset(expected[route.path])}
            checked += 1
    assert checked == 6  # two methods on /api/v1/accounts


def test_the_walk_sees_routes_inside_included_routers() -> None:
    """The check itself: an undeclared route in an included router is found."""
    from fastapi import APIRouter, Depends

    from hub.api.deps import require_roles

    inner = APIRouter(prefix="/inner")

    @inner.get("/open")
    async def undeclared() -> None:
        return None

    @inner.get("/closed", dependencies=[Depends(require_roles(Role.ADMIN))])
    async def declared() -> None:
        return None

    outer = APIRouter(prefix="/outer")
    outer.include_router(inner)
    app = FastAPI()
    app.include_router(outer)
    found = {r.path: declared_roles(r.dependant) for r in endpoints(app)}
    assert found["/outer/inner/open"] == set()
    assert found["/outer/inner/closed"] == {frozenset({Role.ADMIN})}


def test_the_task_kind_filter_knows_every_device_task_kind() -> None:
    from typing import get_args

    from hub.api.routes.intake import TaskKind
    from hub.services.tasks import DEVICE_TASK_KINDS

    assert set(get_args(TaskKind)) == DEVICE_TASK_KINDS | {"service_request"}
