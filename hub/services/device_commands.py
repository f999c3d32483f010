"""Commands people send to devices (open a door, open a compartment, write a set-point).

Why the hub checks a command against the device's profile before it goes out: an operator
who mistypes ``open_dor`` or asks for a 600 s door opening should hear so at once (422),
not see a ``rejected`` result a round trip later, and the audit log should hold only
commands that could have been executed. The profile files are the ones the edges load
(``profiles_dir``), read with the edge's own models, so hub and edge agree on what is valid.

A command is written to the ``commands`` table (state ``pending``) and to the audit log in
one transaction; it is published after the commit through the effect dispatcher, which
also resends it until the edge answers and stores the result (``hub.effects``). States:
``pending`` → ``sent`` → ``ok | device_error | timeout | rejected | expired``. Every
command gets ``deadline_at``: now plus its profile's ``deadline_s`` (issue #11); past it
the hub no longer sends it and the edge no longer executes it (``expired``).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from contract import Command
from hub.db.schema import commands, devices, households
from hub.domain.access import Principal
from hub.domain.effects import Effects
from hub.services.audit import record_audit
from hub.services.errors import FieldProblem, InvalidAct, InvalidInput, NotFound
from hub.services.records import not_found, require_grid
from profiles.errors import MappingError
from profiles.model import DeviceProfile

#: Arguments larger than this (as JSON) are refused: a command is a few values, not a file.
MAX_ARGS_CHARS = 2000
#: Besides ``code``, what a person may add to a CB-100 ``button_feedback``.
_CB100_EXTRA_ARGS = frozenset({"ref_seq", "case_id"})

_DEVICE = (
    sa.select(
        devices.c.id,
        devices.c.profile,
        devices.c.edge_id,
        devices.c.retired_at,
        sa.func.coalesce(households.c.grid_id, devices.c.grid_id).label("grid_id"),
    )
    .select_from(devices.outerjoin(households, households.c.id == devices.c.household_id))
    .where(devices.c.id == sa.bindparam("device_id"))
)


@dataclass(frozen=True, slots=True)
class DeviceTarget:
    id: str
    profile: str
    edge_id: str | None
    retired: bool
    grid_id: int | None


async def command_target(conn: AsyncConnection, viewer: Principal, device_id: str) -> DeviceTarget:
    """The device a command or a command list is about: 404 unknown or of another grid."""
    row = (await conn.execute(_DEVICE, {"device_id": device_id})).first()
    if row is None:
        raise NotFound(f"device {device_id} not found / 设备 {device_id} 不存在")
    require_grid(viewer, row.grid_id, f"device {device_id}")
    return DeviceTarget(row.id, row.profile, row.edge_id, row.retired_at is not None, row.grid_id)


def _bad(field: str, message: str) -> InvalidInput:
    return InvalidInput([FieldProblem(field, message)])


def check_command(profile: DeviceProfile, name: str, args: Mapping[str, Any]) -> None:
    """InvalidInput (422) unless ``name`` is a command of ``profile`` and ``args`` fit it."""
    known = profile.command_names()
    if name not in known:
        raise _bad(
            "name",
            f"{profile.identity.name} has no command {name!r}; known: {', '.join(known) or '-'}"
            f" / 该型号设备不支持命令 {name}",
        )
    try:
        size = len(json.dumps(args, ensure_ascii=False, allow_nan=False))
    except ValueError:
        raise _bad("args", "numbers must be finite / 数值必须为有限数") from None
    if size > MAX_ARGS_CHARS:
        raise _bad("args", f"arguments are {size} characters; at most {MAX_ARGS_CHARS} / 参数过长")
    try:
        mqtt = profile.mqtt_command(name)
        if mqtt is not None:
            mqtt.render(args, command_id="check")
            return
        if profile.modbus_command() is not None and name == "write_point":
            profile.write_request(args)
            return
    except MappingError as err:
        raise _bad("args", f"{err} / 命令参数不正确") from None
    cb100 = profile.command(name)
    if cb100 is not None:
        _check_cb100(name, sorted(cb100.codes), args)


def _check_cb100(name: str, codes: list[str], args: Mapping[str, Any]) -> None:
    unknown = sorted(set(args) - {"code"} - _CB100_EXTRA_ARGS)
    if unknown:
        raise _bad("args", f"{name}: unexpected arguments {unknown} / 存在未知参数")
    if args.get("code") not in codes:
        raise _bad("args", f"{name}: code must be one of {codes} / code 取值不正确")
    for key in _CB100_EXTRA_ARGS & set(args):
        value = args[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _bad("args", f"{name}: {key} must be a whole number ≥ 0 / {key} 须为非负整数")


async def send_command(
    conn: AsyncConnection,
    actor: Principal,
    device_id: str,
    name: str,
    args: dict[str, Any],
    profiles: Mapping[str, DeviceProfile],
    now: datetime,
) -> tuple[dict[str, Any], Effects]:
    """Check, store (pending) and audit a command; returns its row and the effect to
    dispatch after the caller's transaction commits.

    NotFound: unknown device; Forbidden: outside the actor's grids; InvalidAct (409): the
    device is retired, has no edge, or its profile is not known to the hub; InvalidInput
    (422): unknown command or arguments that do not fit it.
    """
    target = await command_target(conn, actor, device_id)
    if target.retired:
        raise InvalidAct(f"device {device_id} is retired / 设备 {device_id} 已停用")
    if target.edge_id is None:
        raise InvalidAct(
            f"device {device_id} has no edge to send the command through / 设备未关联边缘网关"
        )
    profile = profiles.get(target.profile)
    if profile is None:
        raise InvalidAct(
            f"the hub has no valid profile {target.profile!r} to check commands against / "
            f"中心平台缺少设备型号 {target.profile} 的配置"
        )
    if not all(isinstance(v, int | float | str | bool) or v is None for v in args.values()):
        raise _bad("args", "argument values must be numbers, text or true/false / 参数值类型不正确")
    if any(isinstance(v, float) and not math.isfinite(v) for v in args.values()):
        raise _bad("args", "numbers must be finite / 数值必须为有限数")
    check_command(profile, name, args)
    command_id = str(uuid.uuid4())
    row = {
        "id": command_id,
        "edge_id": target.edge_id,
        "device_id": device_id,
        "name": name,
        "args": args,
        "state": "pending",
        "created_at": now,
        "deadline_at": now + timedelta(seconds=profile.command_deadline_s(name)),
    }
    await conn.execute(sa.insert(commands).values(**row))
    await record_audit(
        conn,
        actor=actor,
        action="device.command",
        target_type="device",
        target_id=device_id,
        after={"command_id": command_id, "name": name, "args": args},
        at=now,
    )
    command = Command(command_id, device_id, name, {**args, "edge_id": target.edge_id})
    return await get_command(conn, actor, command_id), Effects(commands=[command])


_PUBLIC = (
    commands.c.id.label("command_id"),
    commands.c.device_id,
    commands.c.edge_id,
    commands.c.name,
    commands.c.args,
    commands.c.state,
    commands.c.detail,
    commands.c.case_id,
    commands.c.created_at,
    commands.c.sent_at,
    commands.c.result_at,
    commands.c.deadline_at,
)


async def get_command(conn: AsyncConnection, viewer: Principal, command_id: str) -> dict[str, Any]:
    row = (
        (await conn.execute(sa.select(*_PUBLIC).where(commands.c.id == command_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise not_found("command", command_id)
    try:
        await command_target(conn, viewer, row["device_id"])
    except NotFound as err:  # another grid's: answered as a missing command
        raise not_found("command", command_id) from err
    return dict(row)


async def list_device_commands(
    conn: AsyncConnection, viewer: Principal, device_id: str, *, limit: int, offset: int
) -> list[dict[str, Any]]:
    """A device's commands (button feedback included), newest first."""
    await command_target(conn, viewer, device_id)
    query = (
        sa.select(*_PUBLIC)
        .where(commands.c.device_id == device_id)
        .order_by(commands.c.created_at.desc(), commands.c.id)
        .limit(limit)
        .offset(offset)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]
