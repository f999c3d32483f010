"""Field types and role sets shared by the registry routes (grids … devices).

Ids are bounded to what every backend stores (a 64-bit integer would overflow SQLite's
driver with a 500 instead of a 422); texts are stripped and bounded as their columns are;
times of a weekly shift are local wall-clock times, so a time zone on them is refused.
"""

from __future__ import annotations

from datetime import time
from typing import Annotated, Any, ClassVar, Self

from fastapi import Depends, Path, Query, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hub.api.deps import Principal, Role, require_roles
from hub.domain.device_rows import DEVICE_ID, EDGE_ID

MAX_ID = 2**31 - 1

Id = Annotated[int, Field(gt=0, le=MAX_ID)]
IdPath = Annotated[int, Path(gt=0, le=MAX_ID)]
IdQuery = Annotated[int | None, Query(gt=0, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="rows to skip")]
Search = Annotated[str | None, Query(min_length=1, max_length=100, description="contains")]


def _text(max_length: int, min_length: int = 1) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)


Name = Annotated[str, _text(100)]
Address = Annotated[str, _text(200)]
Notes = Annotated[str, _text(2000, min_length=0)]
Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 -]{4,30}$"),
    Field(description="digits, spaces and dashes, e.g. 13800000001 or 010-12345678"),
]
Relation = Annotated[str, _text(50, min_length=0)]
BirthYear = Annotated[int, Field(ge=1880, le=2100)]
DeviceId = Annotated[
    str, StringConstraints(pattern=DEVICE_ID.pattern), Field(examples=["cb100-77626"])
]
DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID.pattern)]
EdgeId = Annotated[str, StringConstraints(pattern=EDGE_ID.pattern)]
ProfileName = Annotated[str, _text(64)]
Place = Annotated[str, _text(100, min_length=0)]
Bus = Annotated[str, _text(100)]
BusAddress = Annotated[str, _text(64)]


def _wall_clock(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("a local wall-clock time without time zone, e.g. 08:00")
    return value


_CLOCK = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"
_CLOCK_SCHEMA = {"type": "string", "pattern": _CLOCK, "examples": ["08:00"]}
#: A wall-clock time in, "HH:MM" (RFC 3339 ``time`` would demand a zone offset).
LocalTime = Annotated[time, AfterValidator(_wall_clock), WithJsonSchema(_CLOCK_SCHEMA)]


def _clock_text(value: object) -> object:
    if isinstance(value, time):
        return value.strftime("%H:%M:%S" if value.second else "%H:%M")
    return value


#: A wall-clock time out, as "HH:MM" ("HH:MM:SS" when it has seconds).
ClockText = Annotated[str, BeforeValidator(_clock_text), WithJsonSchema(_CLOCK_SCHEMA)]


class Patch(BaseModel):
    """A partial update: only the fields sent change; ``null`` only where it means "none"."""

    model_config = {"extra": "forbid"}
    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null_where_required(self) -> Self:
        nulls = sorted(
            name
            for name in self.model_fields_set
            if getattr(self, name) is None and name not in self.nullable
        )
        if nulls:
            raise PydanticCustomError(
                "null_not_allowed",
                "{fields}: may not be null / 不能为空",
                {"fields": ", ".join(nulls)},
            )
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


TOTAL_HEADER = "X-Total-Count"
#: Declares the header list routes set, for the OpenAPI document.
PAGED: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            TOTAL_HEADER: {"description": "matches on all pages", "schema": {"type": "integer"}}
        }
    }
}


def set_total(response: Response, total: int) -> None:
    response.headers[TOTAL_HEADER] = str(total)


#: Who may read the registry (a grid worker only their grids), and who may change it.
Reader = Annotated[
    Principal, Depends(require_roles(Role.ADMIN, Role.OPERATOR, Role.HOTLINE, Role.WORKER))
]
Staff = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPERATOR))]
FieldStaff = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPERATOR, Role.WORKER))]
