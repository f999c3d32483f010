"""Liveness and readiness for process supervisors and load balancers; no authentication.

``/healthz`` says the process answers. ``/readyz`` says it can do its work: 200 only when a
``SELECT 1`` on the database succeeds (within ``READY_TIMEOUT_S``) and the MQTT ingest
connection is up; otherwise 503 naming what failed, so an orchestrator stops sending
traffic to a hub that cannot store or hear anything. Neither answer carries details an
anonymous caller should not see (no error texts, no addresses).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import sqlalchemy as sa
from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.api.deps import RuntimeDep

router = APIRouter(tags=["operations"])

READY_TIMEOUT_S = 2.0


class _Connection(Protocol):
    @property
    def connected(self) -> bool: ...


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database answers and the MQTT broker is connected",
    responses={503: {"description": "database or broker unreachable (named in the body)"}},
)
async def readyz(request: Request, runtime: RuntimeDep) -> JSONResponse:
    database_ok = await _database_answers(runtime.engine)
    mqtt: _Connection | None = getattr(request.app.state, "mqtt", None)
    broker_ok = mqtt is not None and mqtt.connected
    body: dict[str, Any] = {
        "status": "ready" if database_ok and broker_ok else "not_ready",
        "database": "ok" if database_ok else "unreachable",
        "broker": "ok" if broker_ok else "disconnected",
    }
    if not (database_ok and broker_ok):
        checks = (("database", "数据库", database_ok), ("MQTT broker", "MQTT 消息代理", broker_ok))
        failed_en = " and ".join(en for en, _, ok in checks if not ok)
        failed_zh = "、".join(zh for _, zh, ok in checks if not ok)
        body["detail"] = f"not ready: {failed_en} unreachable / 未就绪：{failed_zh}不可用"
        return JSONResponse(body, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    return JSONResponse(body)


async def _database_answers(engine: AsyncEngine) -> bool:
    try:
        async with asyncio.timeout(READY_TIMEOUT_S), engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except (TimeoutError, SQLAlchemyError, OSError):
        return False
    return True
