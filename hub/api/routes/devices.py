"""The device registry (设备台账): register, change, move, retire, import from CSV, list.

Operators and admins register, retire and import; a grid worker may change and move
devices within their grids (e.g. a button moved from the bedroom to the bathroom); the
hotline desk reads. A ``profile`` must be one of the device profiles the edges load
(``profiles_dir`` of the hub configuration, ``device_profiles/`` by default).

``POST /devices/import`` takes a CSV file, as the request body (``text/csv``) or as the
``file`` part of a form upload. Every row is checked first; one bad row and nothing is
imported, and the 422 lists every problem as ``{"row", "field", "message"}``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from hub.api.body_limit import larger_body
from hub.api.deps import ReadConnection, RuntimeDep
from hub.api.errors import CONFLICT, FORBIDDEN, INVALID, READ_ONE, WRITE, translated, writing
from hub.api.fields import (
    PAGED,
    Bus,
    BusAddress,
    DeviceId,
    DeviceIdPath,
    EdgeId,
    FieldStaff,
    Id,
    IdQuery,
    Limit,
    Offset,
    Patch,
    Place,
    ProfileName,
    Reader,
    Search,
    Staff,
    set_total,
)
from hub.domain.device_rows import Placement
from hub.runtime import HubRuntime
from hub.services import registry
from hub.services.csv_import import MAX_BYTES, import_devices
from hub.services.records import require_grid

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


class DeviceCreate(BaseModel):
    model_config = {"extra": "forbid"}
    id: DeviceId
    profile: ProfileName
    household_id: Id | None = None
    grid_id: Id | None = Field(default=None, description="for a device in no household")
    place: Place = Field(default="", description="where in the home or compound")
    edge_id: EdgeId | None = None
    bus: Bus | None = Field(default=None, description="e.g. the serial port of the edge")
    address: BusAddress | None = Field(default=None, description="serial no., unit id, …")

    def placement(self) -> Placement:
        values = self.model_dump()
        return Placement(device_id=values.pop("id"), **values)


class DeviceUpdate(Patch):
    nullable: ClassVar[frozenset[str]] = frozenset(
        {"household_id", "grid_id", "edge_id", "bus", "address"}
    )
    profile: ProfileName | None = None
    household_id: Id | None = None
    grid_id: Id | None = None
    place: Place | None = None
    edge_id: EdgeId | None = None
    bus: Bus | None = None
    address: BusAddress | None = None


class DevicePublic(BaseModel):
    id: str
    profile: str
    household_id: int | None
    household_address: str | None
    grid_id: int | None = Field(description="the household's grid, or the device's own")
    place: str
    edge_id: str | None
    bus: str | None
    address: str | None
    online: bool
    last_seen: datetime | None
    battery_pct: int | None
    retired_at: datetime | None
    updated_at: datetime | None


class ImportResult(BaseModel):
    imported: int
    device_ids: list[str]
    file_sha256: str


_CSV_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


@router.get("", summary="List devices (active unless retired=true)", responses=PAGED | FORBIDDEN)
async def list_devices(
    principal: Reader,
    conn: ReadConnection,
    response: Response,
    edge_id: Annotated[str | None, Query(max_length=64)] = None,
    grid_id: IdQuery = None,
    household_id: IdQuery = None,
    profile: Annotated[str | None, Query(max_length=64)] = None,
    online: Annotated[bool | None, Query()] = None,
    retired: Annotated[bool, Query(description="true: retired devices only")] = False,
    q: Search = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[DevicePublic]:
    with translated():
        if grid_id is not None:
            require_grid(principal, grid_id, f"grid {grid_id}")
        rows, total = await registry.list_devices(
            conn,
            principal,
            edge_id=edge_id,
            grid_id=grid_id,
            household_id=household_id,
            profile=profile,
            online=online,
            retired=retired,
            q=q,
            limit=limit,
            offset=offset,
        )
    set_total(response, total)
    return [DevicePublic.model_validate(r) for r in rows]


@router.post(
    "/import",
    status_code=status.HTTP_201_CREATED,
    summary="Register devices from a CSV file, all rows or none",
    responses=INVALID
    | {
        400: {"description": "a form upload that cannot be parsed"},
        415: {"description": "neither text/csv nor a form upload"},
    },
    openapi_extra=_CSV_BODY | larger_body("import"),
)
async def import_csv(request: Request, principal: Staff, runtime: RuntimeDep) -> ImportResult:
    data = await _csv_bytes(request)
    profiles = await _profiles(runtime)
    async with writing(runtime) as conn:
        report = await import_devices(conn, principal, data, profiles, runtime.clock())
    return ImportResult(
        imported=report.imported, device_ids=report.device_ids, file_sha256=report.file_sha256
    )


@router.get("/{device_id}", summary="One device", responses=READ_ONE)
async def get_device(
    device_id: DeviceIdPath, principal: Reader, conn: ReadConnection
) -> DevicePublic:
    with translated():
        return DevicePublic.model_validate(await registry.get_device(conn, principal, device_id))


@router.post("", status_code=status.HTTP_201_CREATED, summary="Register a device", responses=WRITE)
async def create_device(body: DeviceCreate, principal: Staff, runtime: RuntimeDep) -> DevicePublic:
    profiles = await _profiles(runtime)
    async with writing(runtime) as conn:
        row = await registry.create_device(
            conn, principal, body.placement(), profiles, runtime.clock()
        )
    return DevicePublic.model_validate(row)


@router.patch(
    "/{device_id}",
    summary="Change or move a device (household, place, grid, edge, bus, address)",
    responses=WRITE,
)
async def update_device(
    device_id: DeviceIdPath, body: DeviceUpdate, principal: FieldStaff, runtime: RuntimeDep
) -> DevicePublic:
    profiles = await _profiles(runtime)
    async with writing(runtime) as conn:
        row = await registry.update_device(
            conn, principal, device_id, body.changes(), profiles, runtime.clock()
        )
    return DevicePublic.model_validate(row)


@router.post(
    "/{device_id}/retire",
    summary="Retire a device (its later events are quarantined)",
    responses=READ_ONE | CONFLICT,
)
async def retire_device(
    device_id: DeviceIdPath, principal: Staff, runtime: RuntimeDep
) -> DevicePublic:
    async with writing(runtime) as conn:
        row = await registry.retire_device(conn, principal, device_id, runtime.clock())
    return DevicePublic.model_validate(row)


async def _profiles(runtime: HubRuntime) -> frozenset[str]:
    return await asyncio.to_thread(registry.known_profiles, runtime.config.profiles_dir)


async def _csv_bytes(request: Request) -> bytes:
    """The CSV file from a ``text/csv`` body or a form's ``file`` part, at most MAX_BYTES+1."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        async with request.form(max_files=1, max_fields=10) as form:  # closes spooled files
            part = form.get("file")
            if isinstance(part, UploadFile):
                return await part.read(MAX_BYTES + 1)
            if isinstance(part, str):
                return part.encode()
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "file"),
                    "msg": "a form upload needs a 'file' part / 表单中缺少 file 文件",
                    "type": "missing",
                }
            ]
        )
    if kind in ("text/csv", "text/plain", "application/octet-stream", "application/csv"):
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_BYTES:
                break
        return bytes(data)
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        detail="send the file as text/csv or as the 'file' part of multipart/form-data / "
        "请以 text/csv 或表单文件上传",
    )
