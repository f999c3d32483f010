"""Uplink rules on a real outbox file and a fake publisher: alarms first, window, acks,
go-back-N on reconnect and on an overdue ack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from contract import Ack, EventBatch, Lane
from edge.outbox import Outbox
from edge.uplink import Uplink, UplinkSettings
from tests.conftest import wait_until


@dataclass
class FakePublisher:
    connected: bool = True
    sent: list[tuple[str, EventBatch]] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        if not self.connected:
            return False
        self.sent.append((topic, EventBatch.decode(payload)))
        return True


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    async with Outbox(tmp_path / "o.db", group_commit_s=0.01) as box:
        yield box


# The tests above the alarm link's own leave out the alarm's head start (they do not ack
# alarms); it has a test of its own at the end.


async def fill(outbox: Outbox, telemetry: int, alarms: int) -> None:
    await asyncio.gather(
        *(
            outbox.record(f"d{i % 7}", "heartbeat", Lane.TELEMETRY, {"i": i})
            for i in range(telemetry)
        )
    )
    for i in range(alarms):
        await outbox.record(f"b{i}", "sos", Lane.ALARM, {"i": i})


async def start(uplink: Uplink) -> asyncio.Task[None]:
    uplink.on_hub_status(online=True)
    return asyncio.create_task(uplink.run())


async def test_alarms_go_first_and_window_bounds_telemetry(outbox: Outbox) -> None:
    await fill(outbox, 1000, 3)
    pub = FakePublisher()
    uplink = Uplink(
        outbox, pub, "e1", UplinkSettings(batch_size=100, window=2, alarm_head_start_s=0)
    )
    task = await start(uplink)
    try:
        await wait_until(lambda: len(pub.sent) >= 3)
        assert pub.sent[0][0].endswith("/events/alarm")
        assert [e.kind for e in pub.sent[0][1].events] == ["sos"] * 3
        await asyncio.sleep(0)  # let the loop settle: no ack, so the window holds
        tele = [b for t, b in pub.sent if t.endswith("/telemetry")]
        assert len(tele) == 2
        # acking the first telemetry batch opens the window for exactly one more
        await uplink.on_ack(Ack("e1", outbox.incarnation, tuple(e.seq for e in tele[0].events)))
        await wait_until(lambda: len([1 for t, _ in pub.sent if t.endswith("/telemetry")]) == 3)
        await wait_until(lambda: _telemetry_depth(outbox, 900))
    finally:
        task.cancel()


async def test_order_within_lane_and_no_gaps(outbox: Outbox) -> None:
    await fill(outbox, 250, 0)
    pub = FakePublisher()
    uplink = Uplink(
        outbox, pub, "e1", UplinkSettings(batch_size=40, window=3, alarm_head_start_s=0)
    )
    task = await start(uplink)
    try:
        answered = 0
        while len({e.seq for _, b in pub.sent for e in b.events}) < 250:
            await wait_until(lambda n=answered: len(pub.sent) > n)
            for _, b in pub.sent[answered:]:
                await uplink.on_ack(Ack("e1", outbox.incarnation, tuple(e.seq for e in b.events)))
            answered = len(pub.sent)
        await wait_until(lambda: _telemetry_depth(outbox, 0))
        seqs = [e.seq for _, b in pub.sent for e in b.events]
        assert seqs == sorted(seqs) and len(set(seqs)) == 250
    finally:
        task.cancel()


async def test_reconnect_resends_unacknowledged(outbox: Outbox) -> None:
    await fill(outbox, 10, 1)
    pub = FakePublisher()
    uplink = Uplink(outbox, pub, "e1", UplinkSettings(batch_size=100, alarm_head_start_s=0))
    task = await start(uplink)
    try:
        await wait_until(lambda: len(pub.sent) == 2)
        pub.connected = False
        uplink.on_connection_change(False)
        pub.connected = True
        uplink.on_connection_change(True)
        uplink.wake()
        assert len(pub.sent) == 2  # connected, but the hub's status is not known yet
        uplink.on_hub_status(online=True)  # the retained hub status arrives
        await wait_until(lambda: len(pub.sent) == 4)
        assert [t.rsplit("/", 1)[1] for t, _ in pub.sent] == [
            "alarm",
            "telemetry",
            "alarm",
            "telemetry",
        ]
        assert uplink.stats["rewinds"] == 2
    finally:
        task.cancel()


async def test_overdue_ack_triggers_resend(outbox: Outbox) -> None:
    await fill(outbox, 0, 1)
    now = [0.0]
    pub = FakePublisher()
    uplink = Uplink(
        outbox,
        pub,
        "e1",
        UplinkSettings(ack_timeout_s=0.2, alarm_head_start_s=0),
        monotonic=lambda: now[0],
    )
    task = await start(uplink)
    try:
        await wait_until(lambda: len(pub.sent) == 1)
        now[0] = 1.0
        uplink.wake()
        await wait_until(lambda: len(pub.sent) == 2)
        assert pub.sent[0][1].events == pub.sent[1][1].events
    finally:
        task.cancel()


async def test_foreign_ack_is_ignored(outbox: Outbox) -> None:
    await fill(outbox, 0, 1)
    pub = FakePublisher()
    uplink = Uplink(outbox, pub, "e1", UplinkSettings(alarm_head_start_s=0))
    task = await start(uplink)
    try:
        await wait_until(lambda: len(pub.sent) == 1)
        seqs = tuple(e.seq for e in pub.sent[0][1].events)
        await uplink.on_ack(Ack("e1", "another-incarnation", seqs))
        await uplink.on_ack(Ack("e2", outbox.incarnation, seqs))
        assert (await outbox.depth())["alarm"] == 1
    finally:
        task.cancel()


async def test_nothing_is_sent_while_the_hub_is_offline(outbox: Outbox) -> None:
    await fill(outbox, 5, 1)
    pub = FakePublisher()
    uplink = Uplink(outbox, pub, "e1", UplinkSettings(alarm_head_start_s=0))
    task = asyncio.create_task(uplink.run())
    try:
        uplink.wake()
        await asyncio.sleep(0.05)  # give a wrongly eager uplink the chance to send
        assert pub.sent == []
        uplink.on_hub_status(online=True)
        await wait_until(lambda: len(pub.sent) == 2)
        assert pub.sent[0][0].endswith("/alarm")
        uplink.on_hub_status(online=False)
        uplink.on_hub_status(online=True)  # the hub came back: resend, alarms first
        await wait_until(lambda: len(pub.sent) == 4)
        assert pub.sent[2][0].endswith("/alarm")
    finally:
        task.cancel()


async def _telemetry_depth(outbox: Outbox, want: int) -> bool:
    return (await outbox.depth())["telemetry"] == want


async def test_batches_name_the_seq_they_follow_and_a_gap_rewinds_the_lane_once(
    outbox: Outbox,
) -> None:
    await fill(outbox, 30, 0)
    pub = FakePublisher()
    clock = [100.0]
    uplink = Uplink(
        outbox,
        pub,
        "e1",
        UplinkSettings(batch_size=10, window=3, gap_holdoff_s=1.0, alarm_head_start_s=0),
        monotonic=lambda: clock[0],
    )
    task = await start(uplink)
    try:
        await wait_until(lambda: len(pub.sent) == 3)
        first = [b for _, b in pub.sent]
        assert [b.follows for b in first] == [0, first[0].events[-1].seq, first[1].events[-1].seq]
        # the hub lacks the first batch (the broker lost it): it refuses the second and third
        clock[0] += 2.0  # well after the rewind the hub's coming online made
        gap = Ack("e1", outbox.incarnation, (), gap=Lane.TELEMETRY)
        await uplink.on_ack(gap)
        await wait_until(lambda: len(pub.sent) == 6)
        resent = [b for _, b in pub.sent[3:]]
        assert resent[0].follows == 0 and resent[0].events == first[0].events
        await uplink.on_ack(gap)  # the refusal of the third batch: within the hold-off
        await asyncio.sleep(0)
        assert len(pub.sent) == 6 and uplink.stats["gaps"] == 2
        assert uplink.stats["rewinds"] == 1
        clock[0] += 2.0  # later refusals are news: the resend was lost too
        await uplink.on_ack(gap)
        await wait_until(lambda: len(pub.sent) == 9)
        assert pub.sent[6][1].follows == 0
    finally:
        task.cancel()


async def test_alarms_take_their_own_link_ask_for_acks_there_and_get_a_head_start(
    outbox: Outbox,
) -> None:
    """Issue #13: the alarm link; telemetry waits for the alarm's ack; the bulk link is the
    fallback, with acks on the bulk topic."""
    await fill(outbox, 300, 2)
    bulk, alarm_link = FakePublisher(), FakePublisher()
    settings = UplinkSettings(batch_size=100, alarm_head_start_s=30)
    uplink = Uplink(outbox, bulk, "e1", settings, alarm_publisher=alarm_link)
    uplink.on_hub_status(online=True, alarm_link=True)
    task = await start(uplink)
    try:
        await wait_until(lambda: alarm_link.sent, message="alarms on the alarm link")
        [(topic, batch)] = alarm_link.sent
        assert topic.endswith("/events/alarm") and batch.lane_acks
        assert [e.kind for e in batch.events] == ["sos", "sos"]
        await asyncio.sleep(0.05)
        assert bulk.sent == []  # the head start: telemetry waits for the alarm's ack
        await uplink.on_ack(Ack("e1", outbox.incarnation, tuple(e.seq for e in batch.events)))
        await wait_until(lambda: len(bulk.sent) >= 3, message="telemetry after the ack")
        assert all(t.endswith("/events/telemetry") for t, _ in bulk.sent)

        # The alarm link goes down: the next alarm takes the bulk link, acked there.
        alarm_link.connected = False
        uplink.on_connection_change(False, alarm_link=True)
        await outbox.record("b9", "sos", Lane.ALARM, {})
        await wait_until(
            lambda: any(t.endswith("/events/alarm") for t, _ in bulk.sent), message="fallback"
        )
        fallback = next(b for t, b in bulk.sent if t.endswith("/events/alarm"))
        assert not fallback.lane_acks and "b9" in [e.device_id for e in fallback.events]
    finally:
        task.cancel()
