"""Remote configuration of an edge: push a new one, see what the edge runs or refused.

``PUT /api/v1/edges/{edge_id}/config`` takes the serial buses; the device list comes from
the registry and the profiles from the hub's profiles directory (see
:mod:`hub.services.remote_config`). A document that would not be fit to run is refused
here with 422 and every problem named; a good one is stored, audited and published
retained to the edge, which checks it again and reports in its status whether it runs it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import BaseModel, Field

from contract.remote_config import SerialBusSpec
from hub.api.deps import Principal, ReadConnection, Role, RuntimeDep, require_roles
from hub.runtime import HubRuntime
from hub.services.errors import Conflict
from hub.services.remote_config import (
    ConfigRefused,
    IssuedConfig,
    RemoteConfigService,
    latest_config,
    reported_config,
)

router = APIRouter(prefix="/api/v1/edges", tags=["remote configuration"])

Staff = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPERATOR))]
EdgeId = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="edge id")
]


class SerialBusIn(BaseModel):
    model_config = {"extra": "forbid"}

    port: str = Field(
        min_length=1, max_length=200, pattern=r"^\S+$", description="e.g. /dev/ttyUSB0"
    )
    profile: str = Field(min_length=1, max_length=64, description="device profile, e.g. cb-100")


class EdgeConfigIn(BaseModel):
    """The buses the edge should drive; devices and profiles are filled in by the hub."""

    model_config = {"extra": "forbid"}

    serial_buses: list[SerialBusIn] = Field(max_length=64)


class IssuedConfigOut(BaseModel):
    edge_id: str
    version: int
    issued_at: datetime
    issued_by: str
    published: bool | None = Field(
        default=None,
        description="false: the broker is down; it is published when the hub reconnects",
    )
    document: dict[str, Any]


class RunningConfigOut(BaseModel):
    """What the edge last reported in its status."""

    online: bool
    reported_at: datetime
    config_version: int | None = Field(
        default=None, description="version it runs; 0: its own YAML file"
    )
    config_source: str | None = None
    config_refused: dict[str, Any] | None = Field(
        default=None, description="the last document it refused: version and reason"
    )


class EdgeConfigOut(BaseModel):
    edge_id: str
    latest: IssuedConfigOut | None = Field(description="the newest version issued by the hub")
    running: RunningConfigOut | None = Field(description="what the edge reports")


def _service(runtime: HubRuntime) -> RemoteConfigService:
    if runtime.remote_config is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="remote configuration is not running / 远程配置服务未运行",
        )
    return runtime.remote_config


def _out(issued: IssuedConfig) -> IssuedConfigOut:
    return IssuedConfigOut(
        edge_id=issued.edge_id,
        version=issued.version,
        issued_at=issued.issued_at,
        issued_by=issued.issued_by,
        published=issued.published,
        document=issued.document,
    )


@router.put(
    "/{edge_id}/config",
    summary="Issue a new configuration to an edge (下发边缘网关配置)",
    responses={
        409: {"description": "Another configuration was issued at the same time"},
        422: {"description": "The configuration would not be fit to run; every problem named"},
        503: {"description": "Remote configuration is not running in this hub process"},
    },
)
async def put_config(
    edge_id: EdgeId, body: EdgeConfigIn, runtime: RuntimeDep, principal: Staff
) -> IssuedConfigOut:
    service = _service(runtime)
    buses = [SerialBusSpec(port=b.port, profile=b.profile) for b in body.serial_buses]
    try:
        issued = await service.issue(edge_id, buses, principal)
    except ConfigRefused as err:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            detail="configuration refused / 配置未通过校验: " + "; ".join(err.problems),
        ) from None
    except Conflict as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from None
    return _out(issued)


@router.get(
    "/{edge_id}/config",
    summary="The latest configuration issued to an edge, and what the edge runs or refused",
    responses={404: {"description": "No configuration issued and no status from this edge"}},
)
async def get_config(edge_id: EdgeId, conn: ReadConnection, _principal: Staff) -> EdgeConfigOut:
    latest = await latest_config(conn, edge_id)
    running = await reported_config(conn, edge_id)
    if latest is None and running is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"edge {edge_id} has no configuration and has never reported / "
            f"边缘网关 {edge_id} 没有配置，也从未上报状态",
        )
    return EdgeConfigOut(
        edge_id=edge_id,
        latest=None if latest is None else _out(latest),
        running=None if running is None else RunningConfigOut(**running),
    )
