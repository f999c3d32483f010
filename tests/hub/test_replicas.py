"""Hub replicas (issue #14): which replica owns an edge, and who counts as alive.

The ownership function is pure; the membership is driven here by a fake monotonic clock
over the real ``hub_replicas`` table (SQLite, and PostgreSQL with the ``postgres`` marker).
The whole arrangement under ``kill -9`` is ``tests/faults/test_replicas.py``.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from contract.mqtt import Message
from hub.config import ClusterSettings
from hub.domain.ownership import owner_of
from hub.replicas import ReplicaSet, replica_of_status, status_name

EDGES = [f"edge-{i}" for i in range(600)]


def test_every_replica_computes_the_same_owner_and_the_edges_spread() -> None:
    replicas = {"a", "b", "c"}
    owners = Counter(owner_of(edge, replicas) for edge in EDGES)
    assert set(owners) == replicas
    assert min(owners.values()) > len(EDGES) / 3 * 0.7  # roughly even
    assert all(owner_of(e, ["c", "b", "a"]) == owner_of(e, replicas) for e in EDGES)
    assert owner_of("edge-1", []) is None


def test_when_a_replica_dies_only_its_edges_move_and_they_come_back() -> None:
    before = {edge: owner_of(edge, {"a", "b", "c"}) for edge in EDGES}
    after = {edge: owner_of(edge, {"a", "c"}) for edge in EDGES}
    moved = [edge for edge in EDGES if before[edge] != after[edge]]
    assert moved and all(before[edge] == "b" for edge in moved)
    assert {edge: owner_of(edge, {"a", "b", "c"}) for edge in EDGES} == before


def test_status_names_a_replica_of_this_hub_only() -> None:
    assert replica_of_status("hub", status_name("hub", "r1")) == "r1"
    assert replica_of_status("hub", "hub") is None
    assert replica_of_status("hub", status_name("other", "r1")) is None


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def replica(engine: AsyncEngine, name: str, clock: FakeMonotonic) -> ReplicaSet:
    settings = ClusterSettings(replica_id=name, heartbeat_s=0.5, dead_after_s=2.0)
    return ReplicaSet(engine, settings, lambda: datetime.now(UTC), clock)


def edge_message(edge_id: str) -> Message:
    return Message(f"community/v1/edge/{edge_id}/events/alarm", b"{}", 1, 1, False, 0.0)


async def beat_all(clock: FakeMonotonic, *replicas: ReplicaSet, seconds: float = 0.5) -> None:
    clock.now += seconds
    for r in replicas:
        await r.beat()


async def test_a_replica_warms_up_then_shares_and_takes_over_a_dead_ones_edges(
    engine: AsyncEngine,
) -> None:
    clock = FakeMonotonic()
    a, b = replica(engine, "a", clock), replica(engine, "b", clock)
    await beat_all(clock, a, b)
    assert not a.ready and not a.owns("edge-1")  # warming up: owns nothing yet
    for _ in range(4):
        await beat_all(clock, a, b)
    await beat_all(clock, a, b)  # the ready flags are read by the other at its next beat
    assert a.ready and b.ready
    assert a.live == b.live == frozenset({"a", "b"})
    owned_by_a = {e for e in EDGES if a.owns(e)}
    owned_by_b = {e for e in EDGES if b.owns(e)}
    assert owned_by_a and owned_by_b and not owned_by_a & owned_by_b
    assert owned_by_a | owned_by_b == set(EDGES)
    assert a.owns_message(edge_message(next(iter(owned_by_a))))

    # b is killed: its last will is heard at once, whatever its last beat did.
    a.on_death_heard("b")
    assert a.live == frozenset({"a"}) and all(a.owns(e) for e in EDGES)
    await beat_all(clock, a)
    assert a.live == frozenset({"a"})


async def test_a_silent_replica_is_counted_out_after_dead_after_s(engine: AsyncEngine) -> None:
    clock = FakeMonotonic()
    a, b = replica(engine, "a", clock), replica(engine, "b", clock)
    for _ in range(6):
        await beat_all(clock, a, b)
    assert a.live == frozenset({"a", "b"})
    for _ in range(3):
        await beat_all(clock, a)  # b stopped beating (a partition keeps its socket open)
    assert a.live == frozenset({"a", "b"})  # 1.5 s: not yet
    await beat_all(clock, a, seconds=1.0)
    assert a.live == frozenset({"a"})


async def test_a_restarted_replica_counts_again_after_its_death_was_heard(
    engine: AsyncEngine,
) -> None:
    clock = FakeMonotonic()
    a, b = replica(engine, "a", clock), replica(engine, "b", clock)
    for _ in range(6):
        await beat_all(clock, a, b)
    a.on_death_heard("b")
    await beat_all(clock, a, b)  # a last beat of the dead incarnation lands late
    assert a.live == frozenset({"a"})
    b2 = replica(engine, "b", clock)  # the same replica id, started again
    for _ in range(7):
        await beat_all(clock, a, b2)
    assert a.live == frozenset({"a", "b"})
    await b2.leave()  # a clean stop hands its edges over at the next beat
    await beat_all(clock, a)
    assert a.live == frozenset({"a"})
