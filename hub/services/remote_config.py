"""Remote configuration, hub side: build an edge's document, check it, keep it, publish it.

An operator names the serial buses of an edge; the device list comes from the hub's own
registry (``devices`` rows of that edge that are not retired) and the profile texts from
the hub's profiles directory, so what an edge runs is always what the hub knows. Before
anything is stored the document goes through the edge's own check
(``profiles.config_check``) and a round trip through the contract decoder, so the hub
never publishes a document the edge would refuse — although the edge checks again, since
the hub is not the only one who could publish on its topic.

Each version is kept (``edge_configs``) with who issued it, audited in the same
transaction, and published retained with QoS 1 after the commit. The latest version of
every edge is published again whenever the hub (re)connects to the broker, so a broker
that lost its retained messages still hands edges their configuration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contract import ContractError, topics
from contract.remote_config import DeviceSpec, EdgeConfigDocument, SerialBusSpec
from hub.db.schema import devices, edge_configs, edge_status
from hub.domain.access import Principal
from hub.services.audit import record_audit
from hub.services.errors import Conflict, ServiceError
from profiles.config_check import (
    ConfigDocumentError,
    address_from_device_id,
    check_config_document,
)
from profiles.errors import ProfileError
from profiles.loader import PROFILE_SUFFIXES, parse_profile
from profiles.model import DeviceProfile

log = logging.getLogger(__name__)

#: Where the hub reads device profiles from (relative to its working directory).
DEFAULT_PROFILES_DIR = Path("device_profiles")


class ConfigRefused(ServiceError):
    """The document would not be fit to run; ``problems`` name field and reason (API: 422)."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


class Publisher(Protocol):
    connected: bool

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool: ...


@dataclass(frozen=True, slots=True)
class IssuedConfig:
    edge_id: str
    version: int
    issued_at: datetime
    issued_by: str
    document: dict[str, Any]
    published: bool | None = None  # None: not a fresh issue, so not (re)published here


def read_profile_texts(directory: Path) -> tuple[dict[str, tuple[str, DeviceProfile]], list[str]]:
    """name → (YAML text, parsed profile) of every valid profile file in ``directory``,
    and the problems of the files that are not valid (named by file and field)."""
    found: dict[str, tuple[str, DeviceProfile]] = {}
    problems: list[str] = []
    if not directory.is_dir():
        return found, [f"{directory}: the hub's device profile directory is missing"]
    for path in sorted(p for p in directory.iterdir() if p.suffix in PROFILE_SUFFIXES):
        try:
            text = path.read_text(encoding="utf-8")
            profile = parse_profile(text, str(path))
        except (OSError, UnicodeDecodeError) as err:
            problems.append(f"{path}: cannot read device profile: {err}")
            continue
        except ProfileError as err:
            problems.append(str(err))
            continue
        found.setdefault(profile.identity.name, (text, profile))
    return found, problems


def _issued(row: sa.RowMapping, published: bool | None = None) -> IssuedConfig:
    return IssuedConfig(
        edge_id=row["edge_id"],
        version=int(row["version"]),
        issued_at=row["issued_at"],
        issued_by=row["issued_by"],
        document=row["document"],
        published=published,
    )


async def latest_config(conn: AsyncConnection, edge_id: str) -> IssuedConfig | None:
    t = edge_configs
    row = (
        (
            await conn.execute(
                sa.select(t).where(t.c.edge_id == edge_id).order_by(t.c.version.desc()).limit(1)
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _issued(row)


async def reported_config(conn: AsyncConnection, edge_id: str) -> dict[str, Any] | None:
    """What the edge last said it runs and refused (from its retained status), if anything."""
    t = edge_status
    row = (await conn.execute(sa.select(t).where(t.c.edge_id == edge_id))).mappings().first()
    if row is None:
        return None
    info = row["info"] if isinstance(row["info"], dict) else {}
    version, source, refused = (
        info.get("config_version"),
        info.get("config_source"),
        info.get("config_refused"),
    )
    return {  # an edge's status is input: only well-typed values are passed on
        "online": bool(row["online"]),
        "reported_at": row["at"],
        "config_version": version if type(version) is int else None,
        "config_source": source if isinstance(source, str) else None,
        "config_refused": refused if isinstance(refused, dict) else None,
    }


def _device_specs(
    rows: Sequence[sa.RowMapping],
    profiles: dict[str, tuple[str, DeviceProfile]],
    problems: list[str],
) -> list[DeviceSpec]:
    specs = []
    for row in rows:
        device_id, profile_name = str(row["id"]), str(row["profile"])
        known = profiles.get(profile_name)
        if known is None:
            problems.append(
                f"devices: device {device_id!r} has profile {profile_name!r}, which is not in "
                f"the hub's profiles ({', '.join(sorted(profiles)) or 'none'})"
            )
            continue
        address = row["address"] or address_from_device_id(known[1], device_id)
        if not address:
            problems.append(
                f"devices: device {device_id!r} has no address in the registry and none "
                f"follows from its id under the template {known[1].device_id!r}"
            )
            continue
        specs.append(
            DeviceSpec(
                device_id=device_id,
                profile=profile_name,
                bus=row["bus"] or None,
                address=str(address),
                household_id=row["household_id"],
            )
        )
    return specs


class RemoteConfigService:
    def __init__(
        self,
        engine: AsyncEngine,
        publisher: Publisher,
        clock: Callable[[], datetime],
        *,
        profiles_dir: Path = DEFAULT_PROFILES_DIR,
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._clock = clock
        self._profiles_dir = profiles_dir
        self._connected = asyncio.Event()

    # -- issuing ----------------------------------------------------------------------------
    async def issue(
        self, edge_id: str, buses: Sequence[SerialBusSpec], actor: Principal
    ) -> IssuedConfig:
        """Build, check, store, audit and publish the next version for ``edge_id``.

        Raises ConfigRefused (nothing stored) or Conflict (another issue won the race).
        """
        profiles, broken = await asyncio.to_thread(read_profile_texts, self._profiles_dir)
        now = self._clock()
        async with self._engine.begin() as conn:
            previous = await latest_config(conn, edge_id)
            d = devices.c
            rows = (
                (
                    await conn.execute(
                        sa.select(d.id, d.profile, d.household_id, d.bus, d.address)
                        .where(d.edge_id == edge_id, d.retired_at.is_(None))
                        .order_by(d.id)
                    )
                )
                .mappings()
                .all()
            )
            problems: list[str] = []
            specs = _device_specs(rows, profiles, problems)
            names = {b.profile for b in buses} | {s.profile for s in specs}
            document = EdgeConfigDocument(
                edge_id=edge_id,
                version=(previous.version if previous else 0) + 1,
                issued_at=now,
                serial_buses=tuple(buses),
                devices=tuple(specs),
                profiles={n: profiles[n][0] for n in sorted(names) if n in profiles},
            )
            problems.extend(self._check(document))
            if problems:
                if broken and names - profiles.keys():
                    problems.extend(f"(profile file not loaded: {p})" for p in broken)
                raise ConfigRefused(problems)
            body = document.to_obj()
            try:
                await conn.execute(
                    sa.insert(edge_configs).values(
                        edge_id=edge_id,
                        version=document.version,
                        document=body,
                        issued_at=now,
                        issued_by=actor.actor,
                    )
                )
            except sa.exc.IntegrityError:
                raise Conflict(
                    f"another configuration for {edge_id} was issued at the same time; "
                    "retry / 同时有另一份配置下发，请重试"
                ) from None
            await record_audit(
                conn,
                actor=actor,
                action="edge.config.issue",
                target_type="edge",
                target_id=edge_id,
                at=now,
                before=None if previous is None else _summary(previous.document),
                after=_summary(body),
            )
        published = self.publish(document)
        log.info(
            "configuration version %d issued to %s by %s (%s)",
            document.version,
            edge_id,
            actor.actor,
            "published" if published else "published when the broker is back",
        )
        return IssuedConfig(edge_id, document.version, now, actor.actor, body, published)

    @staticmethod
    def _check(document: EdgeConfigDocument) -> list[str]:
        try:
            check_config_document(EdgeConfigDocument.decode(document.encode()))
        except ContractError as err:
            return [str(err)]
        except ConfigDocumentError as err:
            return list(err.problems)
        return []

    # -- publishing -------------------------------------------------------------------------
    def publish(self, document: EdgeConfigDocument) -> bool:
        """Retained, QoS 1. False when the broker is not connected (see :meth:`run`)."""
        return self._publisher.publish(
            topics.config(document.edge_id), document.encode(), qos=1, retain=True
        )

    def on_connection_change(self, connected: bool) -> None:
        if connected:
            self._connected.set()

    async def republish_latest(self) -> int:
        """Publish the latest document of every edge again; returns how many went out."""
        t = edge_configs
        newest = (
            sa.select(t.c.edge_id, sa.func.max(t.c.version).label("version"))
            .group_by(t.c.edge_id)
            .subquery()
        )
        query = sa.select(t.c.document).join(
            newest, sa.and_(t.c.edge_id == newest.c.edge_id, t.c.version == newest.c.version)
        )
        async with self._engine.connect() as conn:
            bodies = (await conn.execute(query)).scalars().all()
        sent = 0
        for body in bodies:
            try:
                document = EdgeConfigDocument.from_obj(body)
            except ContractError as err:
                log.error("stored configuration not republished: %s", err)
                continue
            sent += self.publish(document)
        return sent

    async def run(self) -> None:
        """After every (re)connect to the broker, publish every edge's latest document."""
        while True:
            await self._connected.wait()
            self._connected.clear()
            try:
                sent = await self.republish_latest()
            except Exception:  # a failed round must not end the loop
                log.exception("republishing edge configurations failed")
                continue
            if sent:
                log.info("republished the configuration of %d edge(s)", sent)


def _summary(body: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of a document: version, buses, device ids (not profiles)."""
    return {
        "version": body.get("version"),
        "serial_buses": body.get("serial_buses"),
        "devices": [d.get("device_id") for d in body.get("devices", [])],
    }
