"""Remote configuration, hub side, on a real SQLite file with the demo community: the
document is built from the registry, checked, stored, audited and published retained."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contract import topics
from contract.remote_config import EdgeConfigDocument, SerialBusSpec
from hub.db import schema
from hub.domain.access import Principal, Role
from hub.services.remote_config import ConfigRefused, RemoteConfigService, latest_config
from profiles.config_check import check_config_document

T0 = datetime(2026, 3, 3, 1, 0, tzinfo=UTC)
EDGE = "edge-demo"
PROFILES = Path(__file__).resolve().parents[2] / "device_profiles"
ADMIN = Principal(kind="token", name="api", role=Role.ADMIN)
BUS0 = SerialBusSpec("/dev/ttyUSB0", "cb-100")
BUS1 = SerialBusSpec("/dev/ttyUSB1", "cb-100")


@dataclass
class FakeBroker:
    connected: bool = True
    sent: list[tuple[str, bytes, int, bool]] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        if not self.connected:
            return False
        self.sent.append((topic, payload, qos, retain))
        return True


@pytest.fixture
def seed_time() -> datetime:
    return T0


def service(
    engine: AsyncEngine, broker: FakeBroker, profiles: Path = PROFILES
) -> RemoteConfigService:
    return RemoteConfigService(engine, broker, lambda: T0, profiles_dir=profiles)


async def test_issue_builds_checks_stores_audits_and_publishes(engine: AsyncEngine) -> None:
    broker = FakeBroker()
    remote = service(engine, broker)
    issued = await remote.issue(EDGE, [BUS0, BUS1], ADMIN)
    assert (issued.version, issued.published, issued.issued_by) == (1, True, "token:api")
    [(topic, payload, qos, retain)] = broker.sent
    assert (topic, qos, retain) == (topics.config(EDGE), 1, True)
    document = EdgeConfigDocument.decode(payload)
    assert check_config_document(document).version == 1
    assert [d.device_id for d in document.devices] == ["cb100-77626", "cb100-77627", "cb100-77628"]
    assert {d.bus for d in document.devices} == {None}  # the demo registry places none
    assert set(document.profiles) == {"cb-100"}

    second = await remote.issue(EDGE, [BUS0], ADMIN)
    assert second.version == 2
    async with engine.connect() as conn:
        latest = await latest_config(conn, EDGE)
        audit = (
            await conn.execute(
                sa.select(schema.audit_log.c.action, schema.audit_log.c.before).where(
                    schema.audit_log.c.target_id == EDGE
                )
            )
        ).all()
    assert latest is not None and latest.version == 2
    assert [a for a, _ in audit] == ["edge.config.issue", "edge.config.issue"]
    assert audit[1][1]["version"] == 1


async def test_the_registry_places_devices_and_retired_ones_are_left_out(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        d = schema.devices.c
        await conn.execute(
            sa.update(schema.devices).where(d.id == "cb100-77626").values(bus=BUS1.port)
        )
        await conn.execute(
            sa.update(schema.devices).where(d.id == "cb100-77628").values(retired_at=T0)
        )
    issued = await service(engine, FakeBroker()).issue(EDGE, [BUS0, BUS1], ADMIN)
    devices = {d["device_id"]: d["bus"] for d in issued.document["devices"]}
    assert devices == {"cb100-77626": BUS1.port, "cb100-77627": None}


async def test_a_document_unfit_to_run_is_refused_and_nothing_is_kept(
    engine: AsyncEngine,
) -> None:
    broker = FakeBroker()
    remote = service(engine, broker)
    with pytest.raises(ConfigRefused) as err:
        await remote.issue(EDGE, [SerialBusSpec("/dev/ttyUSB0", "cb-999")], ADMIN)
    assert any(
        p.startswith("config.serial_buses[0].profile: unknown profile 'cb-999'")
        for p in err.value.problems
    )
    # the demo devices (profile cb-100) could not be heard on a cb-999 bus either
    assert any("no serial bus runs profile 'cb-100'" in p for p in err.value.problems)
    with pytest.raises(ConfigRefused, match=r"config\.serial_buses\[1\]\.port: duplicate port"):
        await remote.issue(EDGE, [BUS0, BUS0], ADMIN)
    assert broker.sent == []
    async with engine.connect() as conn:
        assert await latest_config(conn, EDGE) is None


async def test_a_broken_profile_file_is_named_when_its_profile_is_missing(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "cb-100.yaml").write_text("identity: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigRefused) as err:
        await service(engine, FakeBroker(), profiles).issue(EDGE, [BUS0], ADMIN)
    assert any("cb-100.yaml: line 2" in p for p in err.value.problems)


async def test_issued_while_the_broker_is_down_goes_out_on_reconnect(
    engine: AsyncEngine,
) -> None:
    broker = FakeBroker(connected=False)
    remote = service(engine, broker)
    assert (await remote.issue(EDGE, [BUS0], ADMIN)).published is False
    await remote.issue(EDGE, [BUS0, BUS1], ADMIN)
    broker.connected = True
    assert await remote.republish_latest() == 1
    [(_, payload, _, retain)] = broker.sent
    assert retain and EdgeConfigDocument.decode(payload).version == 2
