"""Edge provisioning: register an edge and show its broker password once; rotate; retire.

Only admins and operators. The password is in the body of the 201 (register) or 200
(rotate) reply and nowhere else: the hub stores the Mosquitto hash, logs the edge id only,
and marks the reply ``Cache-Control: no-store``. A failed broker reload does not fail the
request (the credentials could not be shown again); the reply says so in ``warning``.
``edge_config`` is the edge's ``broker:`` section in the edge's own words (``tls_ca_file``,
not ``tls``: the edge turns TLS on by being given the CA file; issue #16).
The last reported status of edges stays at ``GET /api/v1/edges`` (intake).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, Field

from hub.api.deps import ReadConnection, Role, require_roles
from hub.domain.access import Principal
from hub.provisioning import (
    BrokerFilesUnwritable,
    EdgeAlreadyRegistered,
    EdgeNotFound,
    EdgeRegistry,
    InvalidEdgeId,
    IssuedCredentials,
    ProvisioningDisabled,
    list_edges,
)
from hub.provisioning.reload import ReloadOutcome

_staff = require_roles(Role.ADMIN, Role.OPERATOR)
Staff = Annotated[Principal, Depends(_staff)]

router = APIRouter(prefix="/api/v1/edges", tags=["edges"], dependencies=[Depends(_staff)])

EdgeIdPath = Annotated[str, Path(min_length=1, max_length=64, description="the edge id")]


def get_registry(request: Request) -> EdgeRegistry:
    registry: EdgeRegistry | None = getattr(request.app.state, "edge_registry", None)
    if registry is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(ProvisioningDisabled()))
    return registry


Registry = Annotated[EdgeRegistry, Depends(get_registry)]


class RegisterEdge(BaseModel):
    model_config = {"extra": "forbid"}

    edge_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="names the edge's MQTT topics and is its broker username",
        examples=["edge-building-7"],
    )
    note: str = Field(default="", max_length=500, description="where it is, who installed it")


class BrokerAddress(BaseModel):
    host: str
    port: int
    tls: bool = Field(
        description="true: the broker listens with TLS, so the edge sets broker.tls_ca_file "
        "(the edge has no 'tls' switch: a CA file is what turns TLS on)"
    )


class EdgeBrokerConfig(BaseModel):
    """The ``broker:`` section of the edge's YAML file, as the edge's config names it."""

    host: str
    port: int
    username: str
    tls_ca_file: str | None = Field(
        description="null: no TLS; else replace it with the path of the CA certificate "
        "that signed the broker's certificate"
    )


class EdgeCredentials(BaseModel):
    """Shown once. Put the password in the edge's environment: ``EDGE__BROKER__PASSWORD``."""

    edge_id: str
    username: str
    password: str
    broker: BrokerAddress
    edge_config: EdgeBrokerConfig = Field(
        description="put under broker: in edge.yaml; the password goes in EDGE__BROKER__PASSWORD"
    )
    broker_reloaded: bool
    warning: str | None = None


class RegisteredEdge(BaseModel):
    edge_id: str
    username: str
    active: bool
    registered_at: datetime
    rotated_at: datetime | None
    retired_at: datetime | None
    note: str


class RetiredEdgeOut(BaseModel):
    edge_id: str
    retired_at: datetime
    broker_reloaded: bool
    warning: str | None = None


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except EdgeNotFound as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from err
    except EdgeAlreadyRegistered as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from err
    except InvalidEdgeId as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(err)) from err
    except BrokerFilesUnwritable as err:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(err)) from err


_CA_PLACEHOLDER = "/etc/community-edge/ca.pem"  # where docs/operations.md puts the CA file


def _warning(outcome: ReloadOutcome) -> str | None:
    if outcome.ok:
        return None
    return (
        f"saved, but the broker was not reloaded ({outcome.detail}); reload it by hand / "
        "已保存，但消息代理未重新加载，请手动重新加载"
    )


def _credentials(issued: IssuedCredentials, response: Response) -> EdgeCredentials:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    broker = issued.broker
    return EdgeCredentials(
        edge_id=issued.edge_id,
        username=issued.username,
        password=issued.password,
        broker=BrokerAddress(host=broker.host, port=broker.port, tls=broker.tls),
        edge_config=EdgeBrokerConfig(
            host=broker.host,
            port=broker.port,
            username=issued.username,
            tls_ca_file=_CA_PLACEHOLDER if broker.tls else None,
        ),
        broker_reloaded=issued.reload.ok,
        warning=_warning(issued.reload),
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register an edge; its broker password is in this reply and never again",
)
async def register_edge(
    body: RegisterEdge, principal: Staff, registry: Registry, response: Response
) -> EdgeCredentials:
    with _translated():
        issued = await registry.register(principal, body.edge_id, body.note)
    return _credentials(issued, response)


@router.get("/registered", summary="Registered edges (never their passwords)")
async def registered_edges(
    conn: ReadConnection,
    _registry: Registry,
    include_retired: Annotated[bool, Query()] = False,
) -> list[RegisteredEdge]:
    rows = await list_edges(conn, include_retired=include_retired)
    return [RegisteredEdge.model_validate(row) for row in rows]


@router.post(
    "/{edge_id}/rotate", summary="A new broker password for an edge; the old one stops working"
)
async def rotate_edge_credentials(
    edge_id: EdgeIdPath, principal: Staff, registry: Registry, response: Response
) -> EdgeCredentials:
    with _translated():
        issued = await registry.rotate(principal, edge_id)
    return _credentials(issued, response)


@router.delete("/{edge_id}", summary="Retire an edge: it is disconnected and cannot reconnect")
async def retire_edge(edge_id: EdgeIdPath, principal: Staff, registry: Registry) -> RetiredEdgeOut:
    with _translated():
        retired = await registry.retire(principal, edge_id)
    return RetiredEdgeOut(
        edge_id=retired.edge_id,
        retired_at=retired.retired_at,
        broker_reloaded=retired.reload.ok,
        warning=_warning(retired.reload),
    )
