"""What devices said and what people told them: latest state, event and reading history,
device commands with their results (issue #3).

Every person's role reads; a grid worker only devices of their grids (403 otherwise,
also for ``/events?device_id=`` and for a command of such a device). Commands may be sent
by operators and admins, and by grid workers to devices of their grids; the hotline desk
only reads. Lists are newest first; page with ``limit`` (≤ 500) and ``offset``, or with
``before_id`` (the last id of the previous page), which stays right while new events
arrive. Times in filters need a time zone (``2025-03-03T09:00:00+08:00``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from fastapi import Path as PathParam
from pydantic import AwareDatetime, BaseModel, Field

from hub.api.deps import ReadConnection, RuntimeDep
from hub.api.errors import INVALID, READ_ONE, WRITE, translated, writing
from hub.api.fields import DeviceIdPath, FieldStaff, Limit, Offset, Reader
from hub.domain.device_rows import DEVICE_ID
from hub.services import device_commands, device_history
from hub.services.device_history import EventFilter
from hub.services.remote_config import read_profile_texts
from profiles.model import DeviceProfile

router = APIRouter(prefix="/api/v1", tags=["device data"])

KindQuery = Annotated[
    str | None, Query(pattern=r"^[a-z][a-z0-9_.]*$", max_length=64, description="event kind")
]
LaneQuery = Annotated[Literal["alarm", "normal", "telemetry"] | None, Query()]
Since = Annotated[
    AwareDatetime | None, Query(description="occurred at or after (with a time zone)")
]
Until = Annotated[AwareDatetime | None, Query(description="occurred before (with a time zone)")]
BeforeId = Annotated[
    int | None, Query(gt=0, le=2**63 - 1, description="only events stored before this id")
]
DeviceQuery = Annotated[str | None, Query(pattern=DEVICE_ID.pattern, description="device id")]
CommandIdPath = Annotated[str, PathParam(min_length=1, max_length=64)]


class DeviceStatePublic(BaseModel):
    device_id: str
    last_event_kind: str | None = Field(description="the newest event by device time")
    last_event_at: datetime | None
    values: dict[str, Any] = Field(description="latest value of each reading field")
    value_times: dict[str, str] = Field(description="when each value was read (device time)")
    online: bool | None = Field(description="null: the edge never reported either way")
    online_changed_at: datetime | None
    offline_reason: str
    updated_at: datetime | None


class EventPublic(BaseModel):
    id: int = Field(description="commit order at the hub; use as before_id for the next page")
    device_id: str
    edge_id: str
    kind: str
    lane: str
    occurred_at: datetime
    received_at: datetime
    data: dict[str, Any]


class ReadingPublic(BaseModel):
    id: int
    kind: str
    occurred_at: datetime
    data: dict[str, Any]


class ReadingPoint(BaseModel):
    id: int
    occurred_at: datetime
    value: float | int | str | bool


class CommandCreate(BaseModel):
    model_config = {"extra": "forbid"}
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64, examples=["open_door"])
    args: dict[str, Any] = Field(default_factory=dict, examples=[{"duration_s": 5}])


class CommandPublic(BaseModel):
    command_id: str
    device_id: str
    edge_id: str
    name: str
    args: dict[str, Any]
    state: Literal["pending", "sent", "ok", "device_error", "timeout", "rejected", "expired"]
    detail: str
    case_id: int | None
    created_at: datetime
    sent_at: datetime | None
    result_at: datetime | None
    deadline_at: datetime | None = Field(
        default=None, description="not executed after this; then the state is expired"
    )


@router.get(
    "/devices/{device_id}/state",
    summary="A device's latest state: last event, reading values, online",
    responses=READ_ONE,
)
async def get_state(
    device_id: DeviceIdPath, principal: Reader, conn: ReadConnection
) -> DeviceStatePublic:
    with translated():
        return DeviceStatePublic.model_validate(
            await device_history.get_state(conn, principal, device_id)
        )


@router.get(
    "/devices/{device_id}/events",
    summary="A device's events, newest first",
    responses=READ_ONE | INVALID,
)
async def device_events(
    device_id: DeviceIdPath,
    principal: Reader,
    conn: ReadConnection,
    kind: KindQuery = None,
    lane: LaneQuery = None,
    since: Since = None,
    until: Until = None,
    before_id: BeforeId = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[EventPublic]:
    f = EventFilter(device_id, kind, lane, since, until, before_id, limit, offset)
    with translated():
        rows = await device_history.list_events(conn, principal, f)
    return [EventPublic.model_validate(r) for r in rows]


@router.get(
    "/events",
    summary="Events of every device the caller may see, newest first",
    responses=READ_ONE | INVALID,
)
async def all_events(
    principal: Reader,
    conn: ReadConnection,
    device_id: DeviceQuery = None,
    kind: KindQuery = None,
    lane: LaneQuery = None,
    since: Since = None,
    until: Until = None,
    before_id: BeforeId = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[EventPublic]:
    f = EventFilter(device_id, kind, lane, since, until, before_id, limit, offset)
    with translated():
        rows = await device_history.list_events(conn, principal, f)
    return [EventPublic.model_validate(r) for r in rows]


@router.get(
    "/devices/{device_id}/readings",
    summary="A device's telemetry, newest first; with field: that value as a time series",
    responses=READ_ONE | INVALID,
)
async def readings(
    device_id: DeviceIdPath,
    principal: Reader,
    conn: ReadConnection,
    field: Annotated[
        str | None,
        Query(pattern=r"^[a-z][a-z0-9_]*$", max_length=64, description="e.g. energy_kwh"),
    ] = None,
    since: Since = None,
    until: Until = None,
    before_id: BeforeId = None,
    limit: Limit = 100,
) -> list[ReadingPoint] | list[ReadingPublic]:
    with translated():
        rows = await device_history.list_readings(
            conn,
            principal,
            device_id,
            field_name=field,
            since=since,
            until=until,
            before_id=before_id,
            limit=limit,
        )
    if field is not None:
        return [ReadingPoint.model_validate(r) for r in rows]
    return [ReadingPublic.model_validate(r) for r in rows]


@router.post(
    "/devices/{device_id}/commands",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a command to a device (checked against its profile); the result follows",
    responses=WRITE,
)
async def send_command(
    device_id: DeviceIdPath, body: CommandCreate, principal: FieldStaff, runtime: RuntimeDep
) -> CommandPublic:
    profiles = await asyncio.to_thread(_profiles, runtime.config.profiles_dir)
    async with writing(runtime) as conn:
        row, effects = await device_commands.send_command(
            conn, principal, device_id, body.name, body.args, profiles, runtime.clock()
        )
    await runtime.effects.dispatch(effects)  # publish; marks it sent
    async with runtime.engine.connect() as conn:
        with translated():
            row = await device_commands.get_command(conn, principal, row["command_id"])
    return CommandPublic.model_validate(row)


@router.get(
    "/devices/{device_id}/commands",
    summary="A device's commands with their state, newest first",
    responses=READ_ONE,
)
async def device_command_list(
    device_id: DeviceIdPath,
    principal: Reader,
    conn: ReadConnection,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[CommandPublic]:
    with translated():
        rows = await device_commands.list_device_commands(
            conn, principal, device_id, limit=limit, offset=offset
        )
    return [CommandPublic.model_validate(r) for r in rows]


@router.get(
    "/commands/{command_id}",
    summary="One command: pending, sent, ok, device_error, timeout, rejected or expired",
    responses=READ_ONE,
)
async def get_command(
    command_id: CommandIdPath, principal: Reader, conn: ReadConnection
) -> CommandPublic:
    with translated():
        return CommandPublic.model_validate(
            await device_commands.get_command(conn, principal, command_id)
        )


def _profiles(directory: Path) -> dict[str, DeviceProfile]:
    """The valid profiles of the hub's profile directory (blocking file I/O)."""
    found, _problems = read_profile_texts(directory)
    return {name: profile for name, (_text, profile) in found.items()}
