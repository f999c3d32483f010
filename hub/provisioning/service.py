"""Register, list, rotate and retire edges; keep the broker's files in step with the table.

An edge's broker credentials are its username (= its edge id) and a password made with
:mod:`secrets`, returned once by :meth:`EdgeRegistry.register` or :meth:`~EdgeRegistry.
rotate` and stored only as the Mosquitto hash the password file needs. Edges are machine
identities: they have no row in the accounts table and no API token.

Order of one change, chosen so that every failure leaves the broker no more open than
before: in one transaction, change the ``edges`` row, record the audit row, render both
files from the table *as this transaction sees it* and write them (password file first),
then commit; after the commit, ask the broker to reload. If writing fails, the transaction
rolls back and the caller gets an error. If the commit fails after the write, the files
hold a password nobody was shown, or lack an edge the table still has; the next change or
hub start rewrites them from the table. An ``asyncio.Lock`` orders changes within the hub,
so files are never written from a stale view.

At start the hub rewrites both files from the table (:meth:`EdgeRegistry.sync`), which
also puts its own account in: ``broker.username`` with a fresh hash of
``HUB__BROKER__PASSWORD``, never stored anywhere else. Hub replicas have an account each
(``<broker.username>.<replica_id>``, :meth:`hub.config.HubConfig.broker_accounts`), all
with that password, and every replica writes the accounts of all of them: the files are
the same whichever replica wrote them last. Edge ids ``<broker.username>`` and
``<broker.username>.<anything>`` are kept for the hub, so a replica added later never
meets an edge of its name.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.config import BrokerAuthSettings, EdgeBrokerAddress, HubConfig
from hub.db.schema import edges
from hub.domain.access import Principal
from hub.provisioning.errors import (
    BrokerFilesUnwritable,
    EdgeAlreadyRegistered,
    EdgeNotFound,
    InvalidEdgeId,
)
from hub.provisioning.mosquitto_files import (
    alarm_accounts,
    check_account_name,
    hash_password,
    is_alarm_account,
    render_acl,
    render_password_file,
    write_private_file,
)
from hub.provisioning.reload import BrokerReloader, ReloadOutcome
from hub.services.audit import record_audit

log = logging.getLogger(__name__)

_ROOT_HINT = (
    " Running as root: Mosquitto started as root drops to the 'mosquitto' user, which cannot "
    "read these 0600 files; add 'user root' to mosquitto.conf, or run the hub and the broker "
    "as one unprivileged user / 以 root 运行时请在 mosquitto.conf 中加入 'user root'，"
    "或让中心平台与 Mosquitto 以同一普通用户运行。"
)

PASSWORD_BYTES = 32  # token_urlsafe(32): 43 characters, 256 random bits


class Reloader(Protocol):
    async def reload(self) -> ReloadOutcome: ...


@dataclass(frozen=True, slots=True)
class IssuedCredentials:
    """What the operator is shown once: the only time the password exists outside an edge."""

    edge_id: str
    username: str
    password: str
    broker: EdgeBrokerAddress
    reload: ReloadOutcome

    def __repr__(self) -> str:  # keeps the password out of logs and tracebacks
        return f"IssuedCredentials(edge_id={self.edge_id!r}, password=***)"


@dataclass(frozen=True, slots=True)
class RetiredEdge:
    edge_id: str
    retired_at: datetime
    reload: ReloadOutcome


class EdgeRegistry:
    def __init__(
        self,
        settings: BrokerAuthSettings,
        engine: AsyncEngine,
        clock: Callable[[], datetime],
        *,
        hub_username: str,
        hub_password: str,
        edge_broker: EdgeBrokerAddress,
        reloader: Reloader | None = None,
        hub_accounts: Sequence[str] = (),
    ) -> None:
        """``hub_accounts``: the accounts the hub's processes log in with, one per replica
        (default: ``hub_username`` alone, a single hub), all with ``hub_password``."""
        self._settings = settings
        self._engine = engine
        self._clock = clock
        self._hub_username = check_account_name(hub_username)
        self._hub_accounts = [check_account_name(a) for a in hub_accounts or [hub_username]]
        self._hub_hash = hash_password(hub_password)
        self.edge_broker = edge_broker
        self._reloader: Reloader = reloader or BrokerReloader(settings.reload)
        self._lock = asyncio.Lock()

    # -- operator acts ------------------------------------------------------------------
    async def register(self, actor: Principal, edge_id: str, note: str = "") -> IssuedCredentials:
        """New credentials for ``edge_id``; a retired edge id is registered afresh."""
        self._check_edge_id(edge_id)
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        now = self._clock()
        async with self._lock:
            async with self._engine.begin() as conn:
                row = await _row(conn, edge_id)
                if row is not None and row["retired_at"] is None:
                    raise EdgeAlreadyRegistered(edge_id)
                values = {
                    "password_hash": hash_password(password),
                    "registered_at": now,
                    "rotated_at": None,
                    "retired_at": None,
                    "note": note,
                }
                if row is None:
                    await conn.execute(edges.insert().values(edge_id=edge_id, **values))
                else:
                    await conn.execute(edges.update().where(edges.c.edge_id == edge_id), values)
                await record_audit(
                    conn,
                    actor=actor,
                    action="edge.register",
                    target_type="edge",
                    target_id=edge_id,
                    at=now,
                    before=_public(row),
                    after={"registered_at": now.isoformat(), "note": note},
                )
                await self._write_files(conn)
            outcome = await self._reloader.reload()
        log.info("edge %s registered (broker reloaded: %s)", edge_id, outcome.ok)
        return IssuedCredentials(edge_id, edge_id, password, self.edge_broker, outcome)

    async def rotate(self, actor: Principal, edge_id: str) -> IssuedCredentials:
        """A new password for an active edge; the old one stops working on reload."""
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        now = self._clock()
        async with self._lock:
            async with self._engine.begin() as conn:
                row = await _active_row(conn, edge_id)
                await conn.execute(
                    edges.update()
                    .where(edges.c.edge_id == edge_id)
                    .values(password_hash=hash_password(password), rotated_at=now)
                )
                await record_audit(
                    conn,
                    actor=actor,
                    action="edge.rotate_credentials",
                    target_type="edge",
                    target_id=edge_id,
                    at=now,
                    before=_public(row),
                    after={"rotated_at": now.isoformat()},
                )
                await self._write_files(conn)
            outcome = await self._reloader.reload()
        log.info("edge %s credentials rotated (broker reloaded: %s)", edge_id, outcome.ok)
        return IssuedCredentials(edge_id, edge_id, password, self.edge_broker, outcome)

    async def retire(self, actor: Principal, edge_id: str) -> RetiredEdge:
        """Take the edge out of the broker's files; it is disconnected on reload."""
        now = self._clock()
        async with self._lock:
            async with self._engine.begin() as conn:
                row = await _active_row(conn, edge_id)
                await conn.execute(
                    edges.update().where(edges.c.edge_id == edge_id).values(retired_at=now)
                )
                await record_audit(
                    conn,
                    actor=actor,
                    action="edge.retire",
                    target_type="edge",
                    target_id=edge_id,
                    at=now,
                    before=_public(row),
                    after={"retired_at": now.isoformat()},
                )
                await self._write_files(conn)
            outcome = await self._reloader.reload()
        log.info("edge %s retired (broker reloaded: %s)", edge_id, outcome.ok)
        return RetiredEdge(edge_id, now, outcome)

    async def sync(self) -> ReloadOutcome:
        """Rewrite both files from the table (at hub start) and ask the broker to reload.

        A broker that is not running yet (its pid file is missing) is the normal first
        start, not a failure: the files are in place and Mosquitto reads them when it
        starts, so the hub says that, in both languages, instead of "reload failed".
        """
        async with self._lock:
            await self.write_files()
            pid_file = self._settings.reload.pid_file
            if pid_file is not None and not pid_file.exists():
                log.warning(
                    "broker password and ACL files written to %s and %s; Mosquitto is not "
                    "running yet (no pid file %s): start it now, it reads these files, and "
                    "the hub connects once it is up / 已写入消息代理的密码和访问控制文件；"
                    "Mosquitto 尚未运行（没有 pid 文件），请现在启动它，中心平台会随后连接。%s",
                    self._settings.password_file,
                    self._settings.acl_file,
                    pid_file,
                    _ROOT_HINT if os.geteuid() == 0 else "",
                )
                return ReloadOutcome(False, f"pid file {pid_file} not found: broker not started")
            return await self._reloader.reload()

    async def write_files(self) -> None:
        """Write both files from the table, without asking the broker to reload.

        ``python -m hub broker-files`` calls this before Mosquitto first starts, so the
        broker can start on them before the hub does.
        """
        async with self._engine.connect() as conn:
            await self._write_files(conn)

    # -- internals ----------------------------------------------------------------------
    def _check_edge_id(self, edge_id: str) -> None:
        try:
            check_account_name(edge_id)
        except ValueError as err:
            raise InvalidEdgeId(str(err)) from None
        if is_alarm_account(edge_id):
            raise InvalidEdgeId(
                f"{edge_id!r}: names ending in '.alarm' are kept for the alarm links' "
                "accounts / 以 .alarm 结尾的名称保留给报警链路账号"
            )
        if self._is_hubs(edge_id):
            raise InvalidEdgeId(
                f"{edge_id!r} is the hub's own broker username, or kept for its replicas' "
                f"accounts ('{self._hub_username}.<replica>') / 该名称是中心平台自身的代理账号"
                "或保留给其副本"
            )

    def _is_hubs(self, name: str) -> bool:
        """Whether ``name`` is, or may one day be, an account of the hub's processes."""
        base = self._hub_username
        return name == base or name.startswith(f"{base}.") or name in self._hub_accounts

    async def _write_files(self, conn: AsyncConnection) -> None:
        result = await conn.execute(
            sa.select(edges.c.edge_id, edges.c.password_hash)
            .where(edges.c.retired_at.is_(None))
            .order_by(edges.c.edge_id)
        )
        active = [(r.edge_id, r.password_hash) for r in result]
        # An edge row named like one of the hub's accounts (possible only by editing the
        # table, or registered before replicas had accounts) must not shadow it: it is
        # left out, loudly.
        clashing = [edge_id for edge_id, _ in active if edge_id in self._hub_accounts]
        if clashing:
            log.error("edge row %r clashes with a hub broker account; left out", clashing[0])
        active = [(e, h) for e, h in active if e not in self._hub_accounts]
        reserved = [e for e, _ in active if is_alarm_account(e)]
        if reserved:  # possible only by editing the table: it would shadow an alarm link
            log.error("edge row %r has a name kept for alarm links; left out", reserved[0])
        active = [(e, h) for e, h in active if not is_alarm_account(e)]
        hubs = [(account, self._hub_hash) for account in self._hub_accounts]
        passwords = render_password_file(alarm_accounts([*hubs, *active]))
        acl = render_acl(self._hub_accounts, [edge_id for edge_id, _ in active])
        try:
            await asyncio.to_thread(write_private_file, self._settings.password_file, passwords)
            await asyncio.to_thread(write_private_file, self._settings.acl_file, acl)
        except OSError as err:
            raise BrokerFilesUnwritable(
                f"cannot write the broker's password or ACL file: {err} / "
                "无法写入消息代理的密码或访问控制文件"
            ) from err


async def list_edges(conn: AsyncConnection, *, include_retired: bool) -> list[dict[str, Any]]:
    """Registered edges without their hashes, active first, then by id."""
    query = sa.select(
        edges.c.edge_id,
        edges.c.registered_at,
        edges.c.rotated_at,
        edges.c.retired_at,
        edges.c.note,
    ).order_by(edges.c.retired_at.is_not(None), edges.c.edge_id)
    if not include_retired:
        query = query.where(edges.c.retired_at.is_(None))
    rows = (await conn.execute(query)).mappings().all()
    return [
        {**row, "username": row["edge_id"], "active": row["retired_at"] is None} for row in rows
    ]


def edge_registry_for(
    config: HubConfig, engine: AsyncEngine, clock: Callable[[], datetime]
) -> EdgeRegistry | None:
    """The registry the configuration asks for, or None without a ``broker_auth`` section."""
    auth = config.broker_auth
    if auth is None:
        return None
    broker = config.broker
    assert broker.username is not None and broker.password is not None  # HubConfig checks
    edge_broker = auth.edge_broker or EdgeBrokerAddress(
        host=broker.host, port=broker.port, tls=broker.tls_ca_file is not None
    )
    return EdgeRegistry(
        auth,
        engine,
        clock,
        hub_username=broker.username,
        hub_password=broker.password.get_secret_value(),
        edge_broker=edge_broker,
        hub_accounts=config.broker_accounts(),
    )


async def _row(conn: AsyncConnection, edge_id: str) -> sa.RowMapping | None:
    result = await conn.execute(sa.select(edges).where(edges.c.edge_id == edge_id))
    return result.mappings().first()


async def _active_row(conn: AsyncConnection, edge_id: str) -> sa.RowMapping:
    row = await _row(conn, edge_id)
    if row is None or row["retired_at"] is not None:
        raise EdgeNotFound(edge_id)
    return row


def _public(row: sa.RowMapping | None) -> dict[str, Any] | None:
    """What the audit log may keep of a row: everything but the hash."""
    if row is None:
        return None
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in row.items()
        if key != "password_hash"
    }
