"""The hub application: FastAPI routes plus, in the lifespan, the long-lived parts.

Start-up order: database migrations → engine → MQTT ingest connection (persistent session,
manual PUBACK) → background tasks (ingest worker, escalation timer, command resend).
Shutdown cancels the tasks, disconnects MQTT and disposes the engine.

With ``cluster`` configured (issues #13, #14, ``docs/scaling.md`` "Hub replicas") this
process is one of several on one database and broker: ``role: api`` serves the API and the
live streams and takes no edge traffic; ``ingest`` and ``all`` take the messages of the
edges they own (``hub.replicas``) and run the timers; news of a committed change travels
between them through the broker (``hub.news``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from contract import ContractError, HubStatus, topics
from contract.mqtt import Message
from hub.api.body_limit import BodyLimit
from hub.api.deps import credentials_are_good
from hub.api.errors import safe_errors
from hub.api.routes import (
    accounts,
    audit,
    auth,
    cases,
    desk,
    devices,
    grids,
    health,
    households,
    intake,
    kpi,
    levels,
    registry_import,
    stream,
    workers,
)
from hub.api.routes import device_data as device_data_route
from hub.api.routes import edge_config as edge_config_route
from hub.api.routes import edges as edges_route
from hub.api.routes import facilities as facilities_route
from hub.api.routes import metrics as metrics_route
from hub.api.routes import notifications as notifications_route
from hub.api.routes import wellbeing as wellbeing_route
from hub.auth.hash_gate import HashGate
from hub.auth.login import Authenticator
from hub.auth.passwords import Passwords
from hub.auth.throttle import ThrottlePolicy
from hub.broker_links import HubBrokerLinks
from hub.config import HubConfig
from hub.db.engine import create_engine, describe_url
from hub.db.migrate import upgrade_to_head
from hub.db.write_gate import WriteGate
from hub.device_timer import DeviceTimer
from hub.domain.escalation import EscalationPolicy, Tier
from hub.effects import EffectDispatcher
from hub.escalation_timer import EscalationTimer
from hub.handlers.features import device_handlers
from hub.handlers.help_calls import HelpCallHandler
from hub.handlers.router import DeviceEventRouter
from hub.ingest import Ingest
from hub.metrics import HubMetrics
from hub.news import NEWS_TOPIC, HubNews
from hub.notify.base import Fanout, Notifier
from hub.notify.channels import http_channels
from hub.notify.stream import WorkerStreams
from hub.provisioning import edge_registry_for
from hub.replicas import ReplicaSet, replica_of_status, status_name
from hub.runtime import HubRuntime
from hub.services.cases import CaseService
from hub.services.notify_store import DeliveryLog, WorkerPhones
from hub.services.org import seed_demo_community
from hub.services.remote_config import RemoteConfigService
from hub.web.pages import install_web

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


def escalation_policy(config: HubConfig) -> EscalationPolicy:
    e = config.escalation
    seconds = {
        Tier.GRID_WORKER: e.grid_worker_s,
        Tier.BACKUP_WORKER: e.backup_worker_s,
        Tier.COMMUNITY_STATION: e.community_station_s,
        Tier.STREET_CENTRE: e.street_centre_s,
        Tier.HOTLINE_DESK: e.hotline_desk_s,
    }
    return EscalationPolicy({tier: timedelta(seconds=s) for tier, s in seconds.items()})


def authenticator(config: HubConfig) -> Authenticator:
    """Password checks, login throttling and token lifetime, as configured (issue #4)."""
    a = config.auth
    policy = ThrottlePolicy(
        max_failures=a.max_failures,
        max_failures_per_client=a.max_failures_per_client,
        max_failures_per_account=a.max_failures_per_account,
        window=timedelta(seconds=a.failure_window_s),
    )
    gate = HashGate(
        parallel=a.max_parallel_hashes,
        waiting=a.max_waiting_hashes,
        per_client=a.max_hashes_per_client,
    )
    return Authenticator(Passwords(), policy, timedelta(seconds=a.token_lifetime_s), gate=gate)


#: PostgreSQL's SQLSTATE for a character its encoding cannot hold: U+0000 in text.
NUL_IN_TEXT = "22021"


def create_app(config: HubConfig, *, seed_demo: bool = False) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(upgrade_to_head, config.database_url)
        engine = create_engine(config.database_url)
        if seed_demo:
            async with engine.begin() as conn:
                await seed_demo_community(conn, utc_now())
        service = CaseService(
            escalation_policy(config),
            ZoneInfo(config.timezone),
            dedupe_window=timedelta(seconds=config.escalation.dedupe_window_s),
            repeat_notify_interval=timedelta(seconds=config.escalation.repeat_notify_interval_s),
            ack_base_url=config.api.public_base_url,
        )

        cluster = config.cluster
        replicas = ReplicaSet(engine, cluster, utc_now) if cluster and cluster.ingests else None
        status_id = status_name(config.hub_id, cluster.replica_id) if cluster else config.hub_id
        news = HubNews(config.mqtt_client_id("news"))

        def hub_status(online: bool) -> bytes:
            return HubStatus(status_id, online, utc_now()).encode()

        def online_status() -> list[tuple[str, bytes, int, bool]]:
            if not config.ingests or (replicas is not None and not replicas.ready):
                return []  # edges must not send before somebody here takes their messages
            return [(topics.HUB_STATUS, hub_status(online=True), 1, True)]

        def on_message(message: Message) -> None:
            if message.topic == NEWS_TOPIC:
                news.on_message(message)
            elif message.topic == topics.HUB_STATUS:
                broker.ack(message)
                on_hub_status(message)
            elif replicas is not None and not replicas.owns_message(message):
                broker.ack(message)  # another replica's edge: its owner takes it
            else:
                ingest.on_message(message)

        def on_hub_status(message: Message) -> None:
            """A replica's last will: count it out, and tell the edges the hub is still
            here, so that they resend what the dead replica had not acknowledged."""
            try:
                status = HubStatus.decode(message.payload)
            except ContractError:
                return  # a cleared retained message, or not ours
            if status.online or replicas is None:
                return
            dead = replica_of_status(config.hub_id, status.hub_id)
            if dead is not None:
                replicas.on_death_heard(dead)
            for announcement in online_status():
                broker.publish(*announcement)

        streams = WorkerStreams(engine)  # the live feed's write side (issue #12)
        await streams.ensure_triggers()  # a migration rebuilding cases/tasks drops them
        await streams.prune()
        webhooks = http_channels(
            config, recorder=DeliveryLog(engine), phones=WorkerPhones(engine)
        )  # generic webhooks, WeCom, DingTalk, SMS (issue #4)
        channels: list[Notifier] = [streams, *webhooks]
        # Two links (issue #13): the alarm lane on a connection of its own, see
        # hub.broker_links; both feed on_message (news, replicas' wills, then ingest).
        broker = HubBrokerLinks(
            config.process_broker(),  # a replica logs in with its own account (issue #14)
            bulk_client_id=config.mqtt_client_id("ingest"),
            alarm_client_id=config.mqtt_client_id("alarm"),
            on_message=on_message,
            on_connection_change=lambda up: remote_config.on_connection_change(up),
            hub_status=lambda online: hub_status(online=online),
            online=online_status,
            ingests=config.ingests,
            # News between hub processes; the other replicas' last wills (hub.replicas).
            extra_subscriptions=[
                *([(NEWS_TOPIC, 0)] if cluster else []),
                *([(topics.HUB_STATUS, 1)] if replicas is not None else []),
            ],
            # A replica's sessions are clean: while it is away its edges are another's, and
            # a queue kept for it would only fill the broker (``hub.replicas``).
            persistent_session=cluster is None,
        )
        news.attach(broker)
        effects = EffectDispatcher(
            engine,
            broker,
            Fanout(channels),
            utc_now,
            retry_s=config.command_retry_s,
            profiles_dir=config.profiles_dir,
            news=news.cases_changed if cluster else None,
        )
        news.listen(effects.cases_changed.set)  # the escalation timer re-reads its deadline
        news.listen(streams.poke)  # the live streams re-read the feed's head
        router = DeviceEventRouter([HelpCallHandler(service), *device_handlers(config)])
        gate = WriteGate()  # ingest lets the API's writes in between its transactions
        if engine.dialect.name == "sqlite":  # one write lock; PostgreSQL locks rows
            gate.install(engine)
        ingest = Ingest(
            engine,
            service,
            broker,
            effects,
            utc_now,
            router,
            config.ingest,
            gate,
            accepts=replicas.owns_message if replicas is not None else None,
        )
        device_timer = DeviceTimer(engine, router, effects, utc_now, config.device_tick_s)
        timer = EscalationTimer(engine, service, effects, utc_now)
        remote_config = RemoteConfigService(  # issue #4
            engine, broker, utc_now, profiles_dir=config.profiles_dir
        )
        app.state.runtime = HubRuntime(
            config, engine, service, effects, streams, ingest, timer, utc_now
        )
        app.state.runtime.remote_config = remote_config
        app.state.mqtt = broker  # for /readyz
        # Edge provisioning (issue #4): broker password/ACL files rewritten from the table,
        # the hub's own account included, before the hub connects with that account.
        app.state.edge_registry = edge_registry_for(config, engine, utc_now)
        if app.state.edge_registry is not None:
            await app.state.edge_registry.sync()
        app.state.metrics = HubMetrics(
            ingest=ingest, channels=webhooks, streams=streams, mqtt=broker, clock=utc_now
        )
        app.state.replicas = replicas  # for /readyz
        if replicas is not None:

            def announce_online() -> None:
                for announcement in online_status():
                    broker.publish(*announcement)

            replicas.on_ready = announce_online
        await broker.start()
        tasks = []
        if config.ingests:  # issue #13: an "api" process takes no edge traffic
            tasks += [
                asyncio.create_task(ingest.run(), name="ingest"),
                asyncio.create_task(timer.run(), name="escalation-timer"),
                asyncio.create_task(effects.run_retry_loop(), name="command-resend"),
                asyncio.create_task(remote_config.run(), name="edge-config-republish"),
                asyncio.create_task(device_timer.run(), name="device-timer"),
            ]
        if replicas is not None:
            tasks.append(asyncio.create_task(replicas.run(), name="replica-heartbeat"))
        log.info(
            "hub started: database %s, broker %s:%s as %s",
            describe_url(config.database_url),
            config.broker.host,
            config.broker.port,
            config.process_broker().username or "anonymous",
        )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if replicas is not None:
                with contextlib.suppress(Exception):
                    await replicas.leave()
            await broker.stop(
                final_publish=(topics.HUB_STATUS, hub_status(online=False), 1, True)
                if config.ingests
                else None
            )
            for webhook in webhooks:
                await webhook.aclose()
            await streams.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Smart-community hub / 智慧社区中心平台",
        version="0.1.0",
        description="Help-call routing and device events for a smart community.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def readable_422(_request: Request, err: RequestValidationError) -> JSONResponse:
        # No password and no unbounded input is ever echoed back (issue #11).
        errors = safe_errors(err.errors())
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors]
        return JSONResponse(
            status_code=422,
            content={"detail": "; ".join(problems), "errors": jsonable_encoder(errors)},
        )

    @app.exception_handler(OverflowError)
    async def number_out_of_range(_request: Request, err: OverflowError) -> JSONResponse:
        # An id or number larger than the database's 64-bit integers: the client's mistake.
        return JSONResponse(
            status_code=422,
            content={"detail": f"a number is out of range / 数值超出范围: {err}", "errors": []},
        )

    @app.exception_handler(DBAPIError)
    async def driver_refused_input(request: Request, err: DBAPIError) -> JSONResponse:
        # What only PostgreSQL's driver refuses, translated once here: a number past 64
        # bits (asyncpg raises inside SQLAlchemy's DBAPIError what SQLite's driver raised as
        # OverflowError) and a NUL character in text (SQLSTATE 22021; SQLite stores it).
        # Any other database error stays a 500.
        cause: BaseException | None = err
        while cause is not None:
            if isinstance(cause, OverflowError):
                return await number_out_of_range(request, cause)
            if getattr(cause, "sqlstate", None) == NUL_IN_TEXT:
                return JSONResponse(
                    status_code=422,
                    content={
                        "detail": "text may not contain a NUL character (U+0000) / "
                        "文本中不能含有空字符 (U+0000)",
                        "errors": [],
                    },
                )
            cause = cause.__cause__
        raise err

    _declare_error_shape(app)
    # Outermost of ours: no body is read before its size and its sender are checked.
    app.add_middleware(
        BodyLimit, limits=config.api.body_limits, check_credentials=credentials_are_good
    )

    app.state.authenticator = authenticator(config)
    app.include_router(edges_route.router)  # before intake: "/edges/registered" is no edge id
    for module in (health, cases, stream, intake, auth, accounts, audit):
        app.include_router(module.router)
    for module in (grids, workers, households, devices):  # registry (issue #4)
        app.include_router(module.router)
    app.include_router(levels.router)  # districts, streets, communities (issue #16)
    app.include_router(registry_import.router)  # the office's spreadsheets (issue #16)
    app.include_router(edge_config_route.router)  # remote configuration (issue #4)
    app.include_router(metrics_route.router)
    app.include_router(notifications_route.router)
    app.include_router(facilities_route.router)  # doors, parcels (issue #3)
    app.include_router(wellbeing_route.router)  # the wellbeing watch (issue #15)
    app.include_router(device_data_route.router)  # state, history, commands (issue #3)
    app.include_router(desk.router)  # the hotline desk board (issue #12)
    app.include_router(kpi.router)  # care KPIs (issue #12)
    install_web(app)  # the web pages and their session cookie (issue #12); last: catch-all
    return app


_ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "properties": {
        "detail": {"type": "string", "title": "Detail"},
        "errors": {"type": "array", "items": {"type": "object"}, "title": "Errors"},
    },
}
_ERROR_RESPONSES = {
    "400": "Malformed request body / 请求体格式错误",
    "401": "Not authenticated / 未认证",
    "403": "Role not allowed / 无权限",
    "404": "Not found / 不存在",
    "409": "Conflicts with the current state / 与当前状态冲突",
    "413": "Request body too large / 请求体过大",
}


def _declare_error_shape(app: FastAPI) -> None:
    """Make the OpenAPI document say what errors really look like, on every operation.

    Every error this API returns is ``{"detail": "<readable, bilingual where a person
    reads it>", "errors": [...field-level problems...]}``; FastAPI's default schema
    declares ``detail`` as a list and leaves 401/403/404/409 undeclared, and clients
    generated from the schema would trust that.
    """
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["HTTPValidationError"] = {**_ERROR_SCHEMA, "title": "HTTPValidationError"}
            components["Error"] = _ERROR_SCHEMA
            ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            for path, operations in schema.get("paths", {}).items():
                if not path.startswith("/api/"):
                    continue
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    for code, text in _ERROR_RESPONSES.items():
                        responses.setdefault(code, {"description": text, "content": ref})
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
