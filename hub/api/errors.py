"""Service errors as HTTP answers, one translation for every registry route.

``NotFound`` → 404, ``Forbidden`` → 403, ``InvalidAct`` (incl. ``AlreadyExists``) → 409,
``InvalidInput`` → 422 in the app's usual shape (``detail`` text plus ``errors`` with a
``loc`` per field; CSV problems also carry ``row``, ``field`` and ``message``). A unique
constraint that fires anyway (two requests racing for one phone number) is a 409 too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
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
