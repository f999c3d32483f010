"""Field types and role sets shared by the registry routes (grids … devices).

Ids are bounded to what every backend stores (a 64-bit integer would overflow SQLite's
driver with a 500 instead of a 422); texts are stripped and bounded as their columns are;
times of a weekly shift are local wall-clock times, so a time zone on them is refused.

Names and free text refuse invisible control characters (issue #11), one validator for all
(:func:`refuse_controls`): right-to-left and other bidirectional overrides and isolates
(U+202A-202E, U+2066-2069, U+200E/200F, U+061C) make "张伟" display as someone else or hide
text in a worker's list, and the other format and control characters (zero-width spaces,
NUL, escape) have no place in a name either. Multi-line text keeps tab and line breaks.
"""

from __future__ import annotations

import unicodedata
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


_LINE_BREAKS = frozenset("\t\n\r")


def control_character(value: str, *, multi_line: bool = False) -> str | None:
    """The first invisible control or format character in ``value`` (``U+202E``), or None.

    Refused: Unicode categories Cc (controls; tab and line breaks allowed in multi-line
    text), Cf (format: every bidirectional control, zero-width characters), Cs and Co.
    """
    for char in value:
        if multi_line and char in _LINE_BREAKS:
            continue
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co"):
            return f"U+{ord(char):04X}"
    return None


def refuse_controls(value: str) -> str:
    """The shared check of names and one-line text (see the module docstring)."""
    return _refuse(value, multi_line=False)


def refuse_controls_multi_line(value: str) -> str:
    """The same check for notes: tab and line breaks are allowed."""
    return _refuse(value, multi_line=True)


def _refuse(value: str, *, multi_line: bool) -> str:
    found = control_character(value, multi_line=multi_line)
    if found is not None:
        raise PydanticCustomError(
            "control_character",
            "contains the invisible control character {char} (e.g. a right-to-left "
            "override); type the text again without it / 含有不可见控制字符 {char}"
            "（如从右到左覆盖符），请删除后重新输入",
            {"char": found},
        )
    return value


PlainText = AfterValidator(refuse_controls)
MultiLineText = AfterValidator(refuse_controls_multi_line)


def _text(max_length: int, min_length: int = 1) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)


Name = Annotated[str, _text(100), PlainText]
Address = Annotated[str, _text(200), PlainText]
Notes = Annotated[str, _text(2000, min_length=0), MultiLineText]
Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 -]{4,30}$"),
    Field(description="digits, spaces and dashes, e.g. 13800000001 or 010-12345678"),
]
Relation = Annotated[str, _text(50, min_length=0), PlainText]
BirthYear = Annotated[int, Field(ge=1880, le=2100)]
DeviceId = Annotated[
    str, StringConstraints(pattern=DEVICE_ID.pattern), Field(examples=["cb100-77626"])
]
DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID.pattern)]
EdgeId = Annotated[str, StringConstraints(pattern=EDGE_ID.pattern)]
ProfileName = Annotated[str, _text(64), PlainText]
Place = Annotated[str, _text(100, min_length=0), PlainText]
Bus = Annotated[str, _text(100), PlainText]
BusAddress = Annotated[str, _text(64), PlainText]


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
