"""The full fault campaign (``make soak``, about 15 minutes on 2 cores): at least 100
``kill -9`` of the edge, hub and broker at random moments under load, a broker restart,
partitions, a cut and a slow link between edge and broker, a stalled hub, and a hub outage
long enough for a backlog of a million events in the edge's outbox, drained with more kills
on the way.
It ends with the checker's verdict and counts.

The backlog is produced honestly: three device fleets on three ptys send real CB-100
frames through the real edge (decoder, bus, outbox group commit, link acks) while the hub
is down, and every frame is in the fleets' history. Knobs: ``FAULTS_SEED``,
``FAULTS_SOAK_KILLS`` (100), ``FAULTS_SOAK_BACKLOG`` (1,000,000).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from tests.conftest import wait_until_sync
from tests.faults.conftest import Rig

pytestmark = [
    pytest.mark.faults,
    pytest.mark.soak,
    pytest.mark.skipif(
        os.environ.get("FAULTS_SOAK") != "1", reason="the full campaign runs with `make soak`"
    ),
]

TARGETS = ("edge", "hub", "broker")


class Phases:
    """Wall time of each phase, for the closing table."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, str]] = []
        self._started = time.monotonic()

    def done(self, name: str, note: str = "") -> None:
        now = time.monotonic()
        self.rows.append((name, now - self._started, note))
        self._started = now
        print(f"[soak] {name}: {self.rows[-1][1]:.0f} s {note}", flush=True)

    def table(self) -> str:
        width = max(len(name) for name, _, _ in self.rows)
        return "\n".join(f"{n:<{width}}  {s:7.0f} s  {note}" for n, s, note in self.rows)


def test_soak_campaign(rig: Rig) -> None:
    kills = int(os.environ.get("FAULTS_SOAK_KILLS", "100"))
    backlog = int(os.environ.get("FAULTS_SOAK_BACKLOG", "1000000"))
    phases = Phases()
    rig.start(
        buses=3,
        devices=200,
        status_interval_s=5,  # a status report counts a million-row outbox: not too often
        retransmit_s=1.0,
        ack_loss=0.01,
        alarm_every=500,
        normal_every=50,
    )
    phases.done("start", "broker, proxy, hub, edge with 3 buses of 200 buttons")

    # 1. kill -9 at random moments, under a steady load.
    targets = [TARGETS[i % 3] for i in range(kills)]
    rig.rng.shuffle(targets)
    rig.produce(10_000_000, rate=1000)
    for number, target in enumerate(targets, 1):
        rig.pause(0.2, 3.0)
        rig.kill(target)
        if number % 10 == 0:
            print(f"[soak] {number}/{kills} kills; {rig.describe()}", flush=True)
    rig.restart_broker()
    phases.done("kill -9 campaign", f"{kills} kills + a broker restart; {rig.describe()}")

    # 2. The network and a slow hub.
    rig.network_faults()
    rig.slow_hub()
    rig.hold()
    phases.done("partitions, cut, slow link, stalled hub", rig.describe())

    # 3. A long hub outage: the backlog piles up in the edge's outbox, then drains.
    rig.faults["hub outage (kill -9)"] += 1
    assert rig.stack.hub is not None
    rig.stack.hub.kill()
    start_depth = max(rig.outbox_depth(), 0)
    rig.produce(backlog + 50_000, rate=30_000)
    wait_until_sync(
        lambda: rig.outbox_depth() >= backlog + start_depth,
        1800,
        2.0,
        f"a backlog of {backlog:,} events in the edge outbox",
    )
    rig.hold()
    depth = rig.outbox_depth()
    phases.done("hub outage, backlog built", f"outbox depth {depth:,}")

    rig.stack.hub.start()
    rig.stack.wait_for_hub(120)

    def drained_to(fraction: float) -> Callable[[], bool]:
        return lambda: 0 <= rig.outbox_depth() <= depth * fraction

    for fraction, target in ((2 / 3, "edge"), (1 / 3, "broker")):
        wait_until_sync(drained_to(fraction), 1800, 2.0, f"the backlog down to {fraction:.0%}")
        rig.kill(target)
    wait_until_sync(drained_to(0), 1800, 2.0, "the backlog drained")
    phases.done("backlog drained", "with a kill -9 of the edge and of the broker on the way")

    rig.quiesce(600)
    verdict = rig.verdict()
    phases.done("settled and judged")
    kill_count = sum(n for name, n in rig.faults.items() if name.startswith("kill -9"))
    print(f"\n=== soak: {kill_count} kill -9, backlog {depth:,} ===")
    print(phases.table())
    print(rig.report(verdict), flush=True)
    assert kill_count >= 100 or kills < 100
    assert depth >= backlog
    assert verdict.ok, rig.report(verdict)
    assert verdict.acked == verdict.produced
