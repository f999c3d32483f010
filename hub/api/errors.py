"""Service errors as HTTP answers, one translation for every registry route.

``NotFound`` → 404, ``Forbidden`` → 403, ``InvalidAct`` (incl. ``AlreadyExists``) → 409,
``InvalidInput`` → 422 in the app's usual shape (``detail`` text plus ``errors`` with a
``loc`` per field; CSV problems also carry ``row``, ``field`` and ``message``). A unique
constraint that fires anyway (two requests racing for one phone number) is a 409 too.

A 422 names what was wrong without handing the input back whole (issue #11): the value of
a secret field (a password, a token) is never repeated, and every other echoed value, name
and message is cut to a bounded size (:func:`safe_errors`), so a 1 MiB field cannot come
back as a 1 MiB error.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from fastapi import HTTPException, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.runtime import HubRuntime
from hub.services.errors import FieldProblem, Forbidden, InvalidAct, InvalidInput, NotFound


class ErrorBody(BaseModel):
    detail: str


class InvalidBody(BaseModel):
    detail: str
    errors: list[dict[str, Any]]


def _described(text: str, model: type[BaseModel] = ErrorBody) -> dict[str, Any]:
    return {"model": model, "description": text}


FORBIDDEN: dict[int | str, dict[str, Any]] = {403: _described("outside the caller's grids")}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _described("no such record")}
CONFLICT: dict[int | str, dict[str, Any]] = {409: _described("duplicate, or not possible now")}
INVALID: dict[int | str, dict[str, Any]] = {
    422: _described("values that name nothing or break a rule", InvalidBody)
}
READ_ONE = FORBIDDEN | NOT_FOUND
WRITE = FORBIDDEN | NOT_FOUND | CONFLICT | INVALID


#: Field names whose values an error reply never repeats.
SECRET_NAMES = re.compile(r"pass|secret|token|key|credential|authorization", re.IGNORECASE)
TEXT_LIMIT = 120  # characters of one echoed string
ITEMS_LIMIT = 10  # entries of one echoed list or object
DEPTH_LIMIT = 3  # levels of nesting echoed
REDACTED = "[redacted]"


def _cut(text: str, limit: int = TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + f"…(+{len(text) - limit})"


def bounded(value: Any, depth: int = 0) -> Any:
    """``value`` made safe to echo: secret keys redacted, strings cut, collections capped."""
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, bytes):
        return _cut(value.decode(errors="replace"))
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= DEPTH_LIMIT:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())
        out = {
            _cut(str(k), 64): REDACTED if SECRET_NAMES.search(str(k)) else bounded(v, depth + 1)
            for k, v in items[:ITEMS_LIMIT]
        }
        if len(items) > ITEMS_LIMIT:
            out["…"] = f"{len(items) - ITEMS_LIMIT} more"
        return out
    if isinstance(value, list | tuple | set | frozenset):
        seq = list(value)
        shown = [bounded(v, depth + 1) for v in seq[:ITEMS_LIMIT]]
        return shown + ([f"… {len(seq) - ITEMS_LIMIT} more"] if len(seq) > ITEMS_LIMIT else [])
    return _cut(str(value))


def safe_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors fit to send back: no secret's value, nothing unbounded."""
    safe: list[dict[str, Any]] = []
    for error in list(errors)[:100]:
        entry = dict(error)
        loc = [_cut(str(part), 64) if isinstance(part, str) else part for part in entry["loc"]]
        entry["loc"] = loc
        entry["msg"] = _cut(str(entry.get("msg", "")), 500)
        if "input" in entry:
            secret = any(isinstance(part, str) and SECRET_NAMES.search(part) for part in loc)
            entry["input"] = REDACTED if secret else bounded(entry["input"])
        if "ctx" in entry:
            entry["ctx"] = bounded(entry["ctx"])
        entry.pop("url", None)
        safe.append(entry)
    return safe


def problem_entry(problem: FieldProblem) -> dict[str, Any]:
    if problem.row is None:
        return {"loc": ("body", problem.field), "msg": problem.message, "type": "value_error"}
    return {
        "loc": (f"row {problem.row}", problem.field),
        "msg": problem.message,
        "type": "csv_row",
        "row": problem.row,
        "field": problem.field,
        "message": problem.message,
    }


@contextmanager
def translated() -> Iterator[None]:
    """Raise the HTTP answer for a service error raised inside the block."""
    try:
        yield
    except NotFound as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from err
    except Forbidden as err:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(err)) from err
    except InvalidAct as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from err
    except InvalidInput as err:
        raise RequestValidationError([problem_entry(p) for p in err.problems]) from err
    except IntegrityError as err:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail="the change conflicts with a record written meanwhile; reload and retry / "
            "与刚写入的记录冲突，请刷新后重试",
        ) from err


@asynccontextmanager
async def writing(runtime: HubRuntime) -> AsyncIterator[AsyncConnection]:
    """A write transaction whose service errors become HTTP answers (after rollback)."""
    with translated():
        async with runtime.engine.begin() as conn:
            yield conn
