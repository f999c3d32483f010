"""``POST /api/v1/registry/import``: the street office's workbook (XLSX) or CSV files.

Operators and admins. The body is the file itself (``application/vnd.openxmlformats-
officedocument.spreadsheetml.sheet`` or ``text/csv``, with ``name`` naming a CSV's sheet,
e.g. ``name=住户.csv``), or a ``multipart/form-data`` upload with one or more ``file``
parts (their file names name CSV sheets). Without ``commit=true`` it is a dry run: the
whole import runs and is rolled back. The answer is 200 with the counts (created,
updated, unchanged per sheet) and warnings, or 422 with every problem in ``errors`` as
``{"sheet", "row", "column", "message"}`` (nothing written). ``medical_notes=true`` is the
explicitly authorised path for medical notes (audited per household). Rules:
:mod:`hub.services.office_import`. The body may be up to 5 MiB
(:data:`hub.services.sheet_files.MAX_BYTES`), more than the API's default body limit.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from hub.api.deps import RuntimeDep
from hub.api.errors import InvalidBody
from hub.api.fields import Staff
from hub.services import registry
from hub.services.office_import import ImportFile, ImportReport, import_files
from hub.services.sheet_files import MAX_BYTES

router = APIRouter(prefix="/api/v1/registry", tags=["registry import"])

#: What this route needs from the per-route body limit (the API default is smaller).
BODY_LIMIT = MAX_BYTES + 64 * 1024  # the file plus a multipart envelope
_FORM_TYPES = ("multipart/form-data",)
_RAW_TYPES = (
    "text/csv",
    "text/plain",
    "application/csv",
    "application/octet-stream",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
)


class Counts(BaseModel):
    created: int
    updated: int
    unchanged: int


class ImportOutcome(BaseModel):
    dry_run: bool
    committed: bool
    files_sha256: list[str]
    sheets: list[str]
    counts: dict[str, Counts]
    warnings: list[str]


@router.post(
    "/import",
    summary="Import the office's registers (XLSX or CSV): dry run unless commit=true",
    responses={
        422: {
            "model": InvalidBody,
            "description": "every problem, each in errors with sheet, row, column and "
            "message; nothing was written",
        },
        415: {"description": "neither a spreadsheet, CSV nor a form upload"},
    },
)
async def import_registers(
    request: Request,
    principal: Staff,
    runtime: RuntimeDep,
    commit: Annotated[bool, Query(description="false (default): a dry run")] = False,
    medical_notes: Annotated[
        bool, Query(description="authorise writing 健康备注 (audited per household)")
    ] = False,
    name: Annotated[
        str, Query(max_length=200, description="the CSV's sheet, e.g. 住户.csv")
    ] = "upload",
) -> Any:
    files = await _files(request, name)
    profiles = await asyncio.to_thread(registry.known_profiles, runtime.config.profiles_dir)
    report = await import_files(
        runtime.engine,
        principal,
        files,
        profiles=profiles,
        now=runtime.clock(),
        commit=commit,
        medical_notes=medical_notes,
    )
    outcome = outcome_of(report)
    if report.problems:
        body = outcome.model_dump() | {
            "detail": f"{len(report.problems)} problems; nothing was written / "
            f"共 {len(report.problems)} 个问题，未写入任何数据",
            "errors": [
                {
                    "loc": [p.sheet, p.row, p.column],
                    "msg": p.message,
                    "type": "sheet_cell",
                    "sheet": p.sheet,
                    "row": p.row,
                    "column": p.column,
                    "message": p.message,
                }
                for p in report.problems
            ],
        }
        return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content=body)
    return outcome


def outcome_of(report: ImportReport) -> ImportOutcome:
    return ImportOutcome(
        dry_run=report.dry_run,
        committed=report.committed,
        files_sha256=report.files_sha256,
        sheets=report.sheets,
        counts={k: Counts(**vars(v)) for k, v in report.counts.items()},
        warnings=report.warnings,
    )


async def _files(request: Request, name: str) -> list[ImportFile]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in _FORM_TYPES:
        found = []
        async with request.form(max_files=20, max_fields=20) as form:
            for part in form.getlist("file"):
                if isinstance(part, UploadFile):
                    found.append(ImportFile(part.filename or name, await part.read(MAX_BYTES + 1)))
        if not found:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                detail="a form upload needs 'file' parts / 表单中缺少 file 文件",
            )
        return found
    if kind in _RAW_TYPES or not kind:
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_BYTES:
                break
        return [ImportFile(name, bytes(data))]
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        detail="send an XLSX or CSV file, or a multipart form with 'file' parts / "
        "请上传 XLSX 或 CSV 文件",
    )
