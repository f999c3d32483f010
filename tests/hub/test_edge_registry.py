"""Edge provisioning service on a real database (SQLite and PostgreSQL): shown once, stored
hashed, audited, broker files rewritten in the same transaction; a fake reloader stands in
for SIGHUP."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.config import BrokerAuthSettings, BrokerReloadSettings, EdgeBrokerAddress, HubConfig
from hub.db.schema import audit_log, edges
from hub.domain.access import Principal, Role
from hub.provisioning import (
    BrokerFilesUnwritable,
    EdgeAlreadyRegistered,
    EdgeNotFound,
    EdgeRegistry,
    InvalidEdgeId,
    edge_registry_for,
    list_edges,
)
from hub.provisioning.mosquitto_files import verify_password
from hub.provisioning.reload import ReloadOutcome

T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
OPERATOR = Principal(kind="user", name="wang", role=Role.OPERATOR)
HUB_PASSWORD = "hub-password-from-the-environment"


class FakeReloader:
    def __init__(self) -> None:
        self.calls = 0
        self.ok = True

    async def reload(self) -> ReloadOutcome:
        self.calls += 1
        return ReloadOutcome(self.ok, "sent" if self.ok else "pid file not found")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def seed_time() -> None:
    """An empty, migrated database: the only edges are the ones a test registers."""
    return None


def settings(tmp_path: Path) -> BrokerAuthSettings:
    return BrokerAuthSettings(
        password_file=tmp_path / "mosquitto" / "passwd",
        acl_file=tmp_path / "mosquitto" / "acl",
        reload=BrokerReloadSettings(command=["true"]),
    )


@pytest.fixture
def reloader() -> FakeReloader:
    return FakeReloader()


@pytest.fixture
def registry(engine: AsyncEngine, tmp_path: Path, reloader: FakeReloader) -> EdgeRegistry:
    return EdgeRegistry(
        settings(tmp_path),
        engine,
        Clock(),
        hub_username="hub",
        hub_password=HUB_PASSWORD,
        edge_broker=EdgeBrokerAddress(host="mqtt.example", port=8883),
        reloader=reloader,
    )


def password_lines(tmp_path: Path) -> dict[str, str]:
    """The accounts of the password file, without the alarm links' (issue #13), which are
    checked here to hold exactly the hash of their account."""
    text = (tmp_path / "mosquitto" / "passwd").read_text()
    lines = dict(line.split(":", 1) for line in text.splitlines())
    accounts = {name: h for name, h in lines.items() if not name.endswith(".alarm")}
    assert {n: h for n, h in lines.items() if n.endswith(".alarm")} == {
        f"{name}.alarm": h for name, h in accounts.items()
    }
    return accounts


def acl_users(tmp_path: Path) -> list[str]:
    """The ACL's users, without the alarm links' (each follows its account's block)."""
    text = (tmp_path / "mosquitto" / "acl").read_text()
    users = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("user ")]
    accounts = [u for u in users if not u.endswith(".alarm")]
    assert users == [name for account in accounts for name in (account, f"{account}.alarm")]
    return accounts


async def test_register_shows_the_password_once_and_stores_only_the_brokers_hash(
    registry: EdgeRegistry,
    engine: AsyncEngine,
    tmp_path: Path,
    reloader: FakeReloader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    issued = await registry.register(OPERATOR, "edge-a", note="3号楼")
    assert (issued.edge_id, issued.username) == ("edge-a", "edge-a")
    assert len(issued.password) >= 43 and issued.reload.ok and reloader.calls == 1
    assert (issued.broker.host, issued.broker.port, issued.broker.tls) == (
        "mqtt.example",
        8883,
        True,
    )
    assert issued.password not in repr(issued)

    async with engine.connect() as conn:
        [row] = (await conn.execute(sa.select(edges))).mappings().all()
        audit = (await conn.execute(sa.select(audit_log))).mappings().all()
    assert row["registered_at"] > T0 and row["note"] == "3号楼" and row["retired_at"] is None
    assert verify_password(issued.password, row["password_hash"])
    passwords = password_lines(tmp_path)
    assert passwords["edge-a"] == row["password_hash"]  # the file holds exactly the stored hash
    assert verify_password(HUB_PASSWORD, passwords["hub"])
    assert acl_users(tmp_path) == ["hub", "edge-a"]
    assert [(a["action"], a["actor"], a["target_id"]) for a in audit] == [
        ("edge.register", "user:wang", "edge-a")
    ]

    everything = " ".join(
        [
            caplog.text,
            (tmp_path / "mosquitto" / "passwd").read_text(),
            (tmp_path / "mosquitto" / "acl").read_text(),
            str([dict(a) for a in audit]),
            str(dict(row)),
        ]
    )
    assert issued.password not in everything and HUB_PASSWORD not in everything
    listed = await _list(engine, include_retired=False)
    assert listed == [
        {
            "edge_id": "edge-a",
            "username": "edge-a",
            "active": True,
            "registered_at": row["registered_at"],
            "rotated_at": None,
            "retired_at": None,
            "note": "3号楼",
        }
    ]


async def test_rotate_replaces_the_hash_and_retire_takes_the_edge_out_of_both_files(
    registry: EdgeRegistry, engine: AsyncEngine, tmp_path: Path
) -> None:
    first = await registry.register(OPERATOR, "edge-a")
    await registry.register(OPERATOR, "edge-b")
    rotated = await registry.rotate(OPERATOR, "edge-a")
    assert rotated.password != first.password
    stored = password_lines(tmp_path)["edge-a"]
    assert verify_password(rotated.password, stored) and not verify_password(first.password, stored)

    retired = await registry.retire(OPERATOR, "edge-a")
    assert retired.reload.ok
    assert set(password_lines(tmp_path)) == {"hub", "edge-b"}
    assert acl_users(tmp_path) == ["hub", "edge-b"]
    assert [e["edge_id"] for e in await _list(engine, include_retired=False)] == ["edge-b"]
    everything = await _list(engine, include_retired=True)
    assert [(e["edge_id"], e["active"]) for e in everything] == [
        ("edge-b", True),
        ("edge-a", False),
    ]

    with pytest.raises(EdgeNotFound):
        await registry.rotate(OPERATOR, "edge-a")
    with pytest.raises(EdgeNotFound):
        await registry.retire(OPERATOR, "edge-a")
    with pytest.raises(EdgeNotFound):
        await registry.retire(OPERATOR, "never-registered")

    again = await registry.register(OPERATOR, "edge-a")  # a retired id comes back afresh
    assert verify_password(again.password, password_lines(tmp_path)["edge-a"])
    async with engine.connect() as conn:
        actions = (await conn.execute(sa.select(audit_log.c.action))).scalars().all()
    assert actions == [
        "edge.register",
        "edge.register",
        "edge.rotate_credentials",
        "edge.retire",
        "edge.register",
    ]


async def test_refusals_change_nothing(
    registry: EdgeRegistry, engine: AsyncEngine, tmp_path: Path, reloader: FakeReloader
) -> None:
    await registry.register(OPERATOR, "edge-a")
    before = (tmp_path / "mosquitto" / "passwd").read_text()
    with pytest.raises(EdgeAlreadyRegistered):
        await registry.register(OPERATOR, "edge-a")
    with pytest.raises(InvalidEdgeId, match="hub's own broker username"):
        await registry.register(OPERATOR, "hub")
    with pytest.raises(InvalidEdgeId, match="invalid account name"):
        await registry.register(OPERATOR, "edge/a")
    for kept in ("edge-a.alarm", "hub.alarm"):  # the alarm links' accounts (issue #13)
        with pytest.raises(InvalidEdgeId, match="kept for the alarm links"):
            await registry.register(OPERATOR, kept)
    assert (tmp_path / "mosquitto" / "passwd").read_text() == before
    assert reloader.calls == 1
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(audit_log))).scalar() == 1


async def test_unwritable_files_roll_the_change_back(
    registry: EdgeRegistry, engine: AsyncEngine, tmp_path: Path, reloader: FakeReloader
) -> None:
    (tmp_path / "mosquitto").write_text("a file where the directory should be")
    with pytest.raises(BrokerFilesUnwritable, match="cannot write"):
        await registry.register(OPERATOR, "edge-a")
    assert await _list(engine, include_retired=True) == []
    assert reloader.calls == 0


async def test_a_failed_reload_still_returns_the_credentials(
    registry: EdgeRegistry, tmp_path: Path, reloader: FakeReloader
) -> None:
    reloader.ok = False
    issued = await registry.register(OPERATOR, "edge-a")
    assert not issued.reload.ok and "pid file" in issued.reload.detail
    assert verify_password(issued.password, password_lines(tmp_path)["edge-a"])


async def test_sync_rewrites_the_files_from_the_table(
    registry: EdgeRegistry, tmp_path: Path, reloader: FakeReloader
) -> None:
    await registry.register(OPERATOR, "edge-a")
    (tmp_path / "mosquitto" / "passwd").write_text("tampered:x\n")
    (tmp_path / "mosquitto" / "acl").unlink()
    assert (await registry.sync()).ok
    assert set(password_lines(tmp_path)) == {"hub", "edge-a"}
    assert acl_users(tmp_path) == ["hub", "edge-a"]


def test_config_needs_the_hubs_account_and_gives_a_default_edge_address(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    auth = settings(tmp_path).model_dump()
    base = {"api": {"token": "t" * 24}, "broker_auth": auth}
    with pytest.raises(ValueError, match=r"broker_auth needs broker\.username"):
        HubConfig.model_validate({**base, "broker": {"username": "hub"}})
    with pytest.raises(ValueError, match=r"broker\.username: 1-64"):
        HubConfig.model_validate({**base, "broker": {"username": "h:b", "password": "x"}})
    config = HubConfig.model_validate(
        {**base, "broker": {"host": "10.0.0.2", "port": 1884, "username": "hub", "password": "x"}}
    )
    registry = edge_registry_for(config, engine, Clock())
    assert registry is not None
    assert (registry.edge_broker.host, registry.edge_broker.port) == ("10.0.0.2", 1884)
    assert registry.edge_broker.tls is False
    plain = HubConfig.model_validate({"api": {"token": "t" * 24}})
    assert edge_registry_for(plain, engine, Clock()) is None


async def _list(engine: AsyncEngine, *, include_retired: bool) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        return await list_edges(conn, include_retired=include_retired)


async def test_a_broker_not_started_yet_is_a_clear_instruction_not_a_reload_failure(
    engine: AsyncEngine, tmp_path: Path, reloader: FakeReloader, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #16: the hub's first start before Mosquitto's writes the files and says what to do."""
    pid_file = tmp_path / "mosquitto" / "mosquitto.pid"
    auth = settings(tmp_path).model_copy(update={"reload": BrokerReloadSettings(pid_file=pid_file)})
    registry = EdgeRegistry(
        auth,
        engine,
        Clock(),
        hub_username="hub",
        hub_password=HUB_PASSWORD,
        edge_broker=EdgeBrokerAddress(host="mqtt.example", port=8883),
        reloader=reloader,
    )
    with caplog.at_level(logging.INFO):
        outcome = await registry.sync()
    assert not outcome.ok and reloader.calls == 0  # nothing to signal yet
    assert set(password_lines(tmp_path)) == {"hub"} and acl_users(tmp_path) == ["hub"]
    text = caplog.text
    assert "not running yet" in text and "start it now" in text and "尚未运行" in text
    assert "reload failed" not in text and HUB_PASSWORD not in text
    pid_file.write_text("1\n")  # the broker is up: a start asks it to reload again
    await registry.sync()
    assert reloader.calls == 1


def broker_files(tmp_path: Path, config_head: str) -> str:
    """Run ``python -m hub broker-files`` on a config of ``config_head`` plus the broker
    account and its files under ``tmp_path / "m"``; it must succeed. Its stderr."""
    config = tmp_path / "hub.yaml"
    config.write_text(
        config_head + "broker: {username: hub}\n"
        "broker_auth:\n"
        f"  password_file: {tmp_path / 'm' / 'passwd'}\n"
        f"  acl_file: {tmp_path / 'm' / 'acl'}\n"
        f"  reload: {{pid_file: {tmp_path / 'm' / 'mosquitto.pid'}}}\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HUB__")},
        "HUB__API__TOKEN": "t" * 24,
        "HUB__BROKER__PASSWORD": HUB_PASSWORD,
    }
    done = subprocess.run(
        [sys.executable, "-m", "hub", "broker-files", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_broker_files_writes_both_files_before_the_broker_exists(
    tmp_path: Path, unmigrated_database_url: str
) -> None:
    """``python -m hub broker-files``: the files exist before Mosquitto first starts (on a
    fresh install: the command migrates the empty database itself)."""
    stderr = broker_files(tmp_path, f"database_url: '{unmigrated_database_url}'\n")
    passwd = tmp_path / "m" / "passwd"
    assert passwd.stat().st_mode & 0o777 == 0o600
    assert verify_password(
        HUB_PASSWORD, dict(line.split(":", 1) for line in passwd.read_text().splitlines())["hub"]
    )
    assert "start Mosquitto" in stderr and HUB_PASSWORD not in stderr


def replicas_config(tmp_path: Path, replica_id: str = "hub-a") -> dict[str, object]:
    return {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'db' / 'hub.db'}",
        "broker": {"username": "hub", "password": HUB_PASSWORD},
        "broker_auth": settings(tmp_path).model_dump(mode="json"),
        "api": {"token": "t" * 24},
        "cluster": {"replica_id": replica_id, "replicas": ["hub-a", "hub-b"]},
    }


async def test_every_replica_writes_the_accounts_of_all_replicas(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Issue #14: each replica logs in as ``hub.<replica>``; whichever replica rewrites the
    files (at its start, or for an edge) writes the same accounts, so no rewrite locks
    another replica out at the broker's reload."""
    written = []
    for replica_id in ("hub-a", "hub-b"):
        config = HubConfig.model_validate(replicas_config(tmp_path, replica_id))
        assert config.process_broker().username == f"hub.{replica_id}"
        registry = edge_registry_for(config, engine, Clock())
        assert registry is not None
        await registry.write_files()
        lines = password_lines(tmp_path)
        assert set(lines) == {"hub.hub-a", "hub.hub-b"}  # and their .alarm twins, checked
        assert all(verify_password(HUB_PASSWORD, h) for h in lines.values())
        assert acl_users(tmp_path) == ["hub.hub-a", "hub.hub-b"]
        written.append((tmp_path / "mosquitto" / "acl").read_text())
    assert written[0] == written[1]


async def test_names_of_the_hub_and_its_future_replicas_are_not_edge_ids(
    engine: AsyncEngine, tmp_path: Path, reloader: FakeReloader
) -> None:
    config = HubConfig.model_validate(replicas_config(tmp_path))
    registry = edge_registry_for(config, engine, Clock())
    assert registry is not None
    for name in ("hub", "hub.hub-a", "hub.hub-c"):  # hub-c: a replica added later
        with pytest.raises(InvalidEdgeId, match="hub's own broker username"):
            await registry.register(OPERATOR, name)
    for name in ("hub.hub-a.alarm", "hub.alarm"):
        with pytest.raises(InvalidEdgeId, match="kept for the alarm links"):
            await registry.register(OPERATOR, name)
    assert await _list(engine, include_retired=True) == []


def test_replicas_with_broker_auth_must_all_be_listed(tmp_path: Path) -> None:
    """A replica that wrote only its own account would lock the others out."""
    config = replicas_config(tmp_path)
    unlisted = {**config, "cluster": {"replica_id": "hub-a"}}
    with pytest.raises(ValueError, match=r"cluster\.replicas"):
        HubConfig.model_validate(unlisted)
    stranger = {**config, "cluster": {"replica_id": "hub-c", "replicas": ["hub-a", "hub-b"]}}
    with pytest.raises(ValueError, match=r"not in cluster\.replicas"):
        HubConfig.model_validate(stranger)
    alarm = {**config, "cluster": {"replica_id": "alarm", "replicas": ["alarm"]}}
    with pytest.raises(ValueError, match="kept for alarm links"):
        HubConfig.model_validate(alarm)
    too_long = {**config, "cluster": {"replica_id": "r" * 40, "replicas": ["r" * 40]}}
    too_long["broker"] = {"username": "h" * 30, "password": HUB_PASSWORD}
    with pytest.raises(ValueError, match="at most 64"):
        HubConfig.model_validate(too_long)
    # Without broker_auth (a broker whose files are kept by hand) the list may be left out:
    # the replica still logs in with its own account, which those files must then hold.
    by_hand = {k: v for k, v in unlisted.items() if k != "broker_auth"}
    assert HubConfig.model_validate(by_hand).process_broker().username == "hub.hub-a"
    # A single hub is as before: the broker username as it is.
    single = {k: v for k, v in config.items() if k != "cluster"}
    assert HubConfig.model_validate(single).process_broker().username == "hub"


def test_broker_files_writes_every_replicas_account(tmp_path: Path) -> None:
    """``python -m hub broker-files`` (the compose stack's hub-init) with a cluster."""
    stderr = broker_files(
        tmp_path,
        f"database_url: sqlite+aiosqlite:///{tmp_path / 'hub.db'}\n"
        "cluster: {replica_id: hub-a, replicas: [hub-a, hub-b]}\n",
    )
    passwd = dict(
        line.split(":", 1) for line in (tmp_path / "m" / "passwd").read_text().splitlines()
    )
    assert sorted(passwd) == ["hub.hub-a", "hub.hub-a.alarm", "hub.hub-b", "hub.hub-b.alarm"]
    assert all(verify_password(HUB_PASSWORD, h) for h in passwd.values())
    acl = (tmp_path / "m" / "acl").read_text()
    assert "user hub.hub-a\n" in acl and "user hub.hub-b.alarm\n" in acl
    assert "user hub\n" not in acl
    assert "hub.hub-a, hub.hub-b" in stderr and HUB_PASSWORD not in stderr
