"""Hub replicas under ``kill -9`` (issue #14): two ``python -m hub`` processes on one
durable PostgreSQL and one broker, under load, one of them killed at random moments and
started again.

Judged by the checker of ``tests/faults/`` (nothing lost, nothing duplicated, per-device
order kept) and by the rig's other witnesses (``tests/faults/replica_rig.py``): no command
published twice, every escalation deadline fired once and within 1 s of it (also when the
replica that opened the case is the one killed), no notification on the worker streams
twice, every SOS in exactly one case.

The short run (``FAULTS_REPLICA_KILLS_SHORT``, 3 kills) is in ``make test``; the campaign of
at least 20 kills (``FAULTS_REPLICA_KILLS``, default 20) runs with ``make soak``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.postgres import postgres_available
from tests.faults.conftest import seed_from_env
from tests.faults.replica_rig import ReplicaRig

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(not postgres_available(), reason="PostgreSQL is not installed"),
]

#: Frames per second from the fleet; one in ALARM_EVERY is an SOS (2 a second: far more
#: than a city's), one in NORMAL_EVERY a normal-lane event. The buttons belong to the demo's
#: few households, so their cases stay open, escalate every TIER_S all through the run, and
#: take a repeat press every few seconds each (ingest and escalation meet on one case).
RATE = 600
ALARM_EVERY = 300
NORMAL_EVERY = 20


@pytest.fixture
def replica_rig(tmp_path: Path) -> Iterator[ReplicaRig]:
    seed = seed_from_env()
    print(f"replica rig seed {seed} (replay with FAULTS_SEED={seed})")
    rig = ReplicaRig(tmp_path, seed)
    try:
        yield rig
    finally:
        rig.stop()
        for name, proc in [*rig.stack.replicas.items(), *rig.stack.edges.items()]:
            text = proc.log_text()
            if "Traceback" in text:
                last = text[text.rindex("Traceback") :][:3000]
                print(f"--- {name} log (last traceback) ---\n{last}")


def campaign(rig: ReplicaRig, kills: int) -> None:
    rig.start(
        devices=40,
        retransmit_s=1.0,
        ack_loss=0.02,
        alarm_every=ALARM_EVERY,
        normal_every=NORMAL_EVERY,
    )
    rig.produce(10_000_000, rate=RATE)  # held after the kills: what was produced counts
    rig.wait_more_committed(300)
    for _ in range(kills):
        rig.pause(0.5, 3.0)
        rig.kill_replica()
    rig.wait_more_committed(300)
    rig.hold()
    rig.quiesce()
    verdict = rig.verdict()
    escalations = rig.escalations()
    twice = rig.witness.twice() if rig.witness else {}
    doubled = rig.doubled_notifications()
    stored, pressed = rig.sos_accounting()
    duplicates = rig.duplicate_open_cases()
    published = len(rig.witness.published) if rig.witness else 0
    report = "\n".join(
        [
            rig.report(verdict),
            escalations.table(),
            f"commands published  {published:,}; published twice: {len(twice)}",
            f"stream notifications written twice  {len(doubled)}",
            f"SOS events stored / presses counted by cases  {stored:,} / {pressed:,}",
            f"households with two open cases  {len(duplicates)}",
            *[f"  - {p}" for p in [*list(twice.items())[:5], *doubled[:5], *duplicates[:5]]],
        ]
    )
    print(report)
    assert verdict.ok, report
    assert verdict.acked == verdict.produced, report
    assert escalations.ok and escalations.firings > 0, report
    assert not twice, report
    assert not doubled, report
    assert stored == pressed, report
    assert not duplicates, report
    assert sum(n for name, n in rig.faults.items() if name.startswith("kill")) == kills


def test_kill_9_of_a_replica_at_random_moments(replica_rig: ReplicaRig) -> None:
    campaign(replica_rig, int(os.environ.get("FAULTS_REPLICA_KILLS_SHORT", "3")))


@pytest.mark.soak
@pytest.mark.skipif(
    os.environ.get("FAULTS_SOAK") != "1", reason="the full campaign runs with `make soak`"
)
def test_kill_9_of_a_replica_campaign(replica_rig: ReplicaRig) -> None:
    campaign(replica_rig, max(20, int(os.environ.get("FAULTS_REPLICA_KILLS", "20"))))
