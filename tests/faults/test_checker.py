"""The checker on hand-made histories: a clean one passes, and each rule fails on a history
that breaks it (and only that rule)."""

from __future__ import annotations

from simulators.history import CommittedEvent, ProducedFrame, dropped_counts, parse_uid
from tests.faults.checker import Verdict, check

DEV = "cb100-1"


def frame(
    seq: int, lane: str = "telemetry", sent: float | None = None, acked: float | None = -1.0
) -> ProducedFrame:
    """Frame ``seq`` first sent at ``sent`` (default: seq) and acked at ``acked``
    (default: just after it was sent; None: never)."""
    t = float(seq) if sent is None else sent
    return ProducedFrame(DEV, seq, lane, "x", t, t + 0.5 if acked == -1.0 else acked)


def row(commit_id: int, seq: int, lane: str = "telemetry", outbox_seq: int | None = None,
        device: str = DEV, incarnation: str = "inc1") -> CommittedEvent:  # fmt: skip
    return CommittedEvent(
        commit_id, device, lane, seq, "edge", incarnation, seq if outbox_seq is None else outbox_seq
    )


def only_problem(verdict: Verdict, rule: str) -> None:
    assert not verdict.ok
    assert verdict.problems and all(p.startswith(rule) for p in verdict.problems), verdict.problems


def test_a_clean_history_passes_with_its_counts() -> None:
    produced = [frame(1), frame(2, "alarm"), frame(3), frame(4, acked=None)]
    committed = [row(10, 2, "alarm"), row(11, 1), row(12, 3), row(13, 4)]
    verdict = check(produced, committed, {})
    assert verdict.ok, verdict.table()
    assert (verdict.produced, verdict.acked, verdict.committed) == (4, 3, 4)
    assert verdict.committed_distinct == 4
    assert "PASS" in verdict.table()


def test_unacked_frames_missing_at_the_hub_are_not_losses() -> None:
    verdict = check([frame(1), frame(2, "alarm", acked=None)], [row(1, 1)])
    assert verdict.ok
    assert verdict.unacked_not_committed == 1


def test_an_acked_alarm_missing_at_the_hub_fails_even_if_drops_were_counted() -> None:
    verdict = check([frame(1), frame(2, "alarm")], [row(1, 1)], {"alarm": 5, "telemetry": 5})
    assert verdict.lost_alarms == 1
    only_problem(verdict, "lost alarm")
    assert "FAIL" in verdict.table()


def test_lost_telemetry_passes_only_when_counted_as_dropped() -> None:
    produced = [frame(1), frame(2), frame(3, "normal")]
    committed = [row(1, 1)]
    uncounted = check(produced, committed)
    assert uncounted.lost == {"alarm": 0, "normal": 1, "telemetry": 1}
    assert not uncounted.ok
    assert check(produced, committed, {"telemetry": 1, "normal": 1}).ok
    short = check(produced, committed, {"telemetry": 1})
    assert short.unexplained_loss == {"alarm": 0, "normal": 1, "telemetry": 0}
    only_problem(short, "lost normal")


def test_a_frame_committed_twice_is_a_duplicate() -> None:
    verdict = check([frame(1), frame(2)], [row(1, 1), row(2, 2), row(3, 1, outbox_seq=9)])
    assert verdict.duplicates == 1
    assert verdict.committed == 3 and verdict.committed_distinct == 2
    only_problem(verdict, "duplicate")


def test_a_frame_overtaking_one_acked_before_it_was_sent_breaks_device_order() -> None:
    # Frame 1 was acked (t=1.5) before frame 2 was first sent (t=2): 2 must not commit first.
    # The edge accepted them in that order too, so edge order is broken as well.
    verdict = check([frame(1), frame(2)], [row(1, 2), row(2, 1)])
    assert verdict.device_order_violations == 1
    assert verdict.edge_order_violations == 1
    assert not verdict.ok


def test_device_order_is_checked_even_across_edge_incarnations() -> None:
    # A new outbox (another incarnation) restarts the edge's seqs: only device order applies.
    committed = [row(1, 2, incarnation="inc2", outbox_seq=1), row(2, 1, outbox_seq=50)]
    verdict = check([frame(1), frame(2)], committed)
    assert (verdict.device_order_violations, verdict.edge_order_violations) == (1, 0)
    only_problem(verdict, "device order")


def test_frames_in_flight_together_may_swap_if_the_edge_accepted_them_so() -> None:
    # Frame 2 was sent before frame 1 was acked (frame 1 was lost on the line and came back
    # as a retransmission): the edge stored 2 first, and commit order follows the edge.
    produced = [frame(1, sent=1.0, acked=5.0), frame(2, sent=2.0, acked=2.5)]
    verdict = check(produced, [row(1, 2, outbox_seq=7), row(2, 1, outbox_seq=8)])
    assert verdict.ok, verdict.table()


def test_commits_out_of_the_edges_acceptance_order_break_edge_order() -> None:
    produced = [frame(1, sent=1.0, acked=5.0), frame(2, sent=2.0, acked=2.5)]
    verdict = check(produced, [row(1, 2, outbox_seq=8), row(2, 1, outbox_seq=7)])
    assert (verdict.device_order_violations, verdict.edge_order_violations) == (0, 1)
    only_problem(verdict, "edge order")


def test_order_is_per_lane_so_an_alarm_may_overtake_telemetry() -> None:
    produced = [frame(1), frame(2), frame(3, "alarm")]
    committed = [row(1, 3, "alarm"), row(2, 1), row(3, 2)]
    assert check(produced, committed).ok


def test_order_is_per_device() -> None:
    other = ProducedFrame("cb100-2", 1, "telemetry", "x", 0.0, 0.5)
    committed = [row(1, 2), row(2, 1, device="cb100-2", outbox_seq=1), row(3, 3)]
    verdict = check([frame(2), frame(3), other], committed)
    assert verdict.ok, verdict.table()


def test_a_committed_event_nobody_produced_is_a_phantom() -> None:
    verdict = check([frame(1)], [row(1, 1), row(2, 99)])
    assert verdict.phantoms == 1
    only_problem(verdict, "phantom")


def test_drop_counters_are_read_leniently() -> None:
    assert dropped_counts({}) == {"alarm": 0, "normal": 0, "telemetry": 0}
    assert dropped_counts({"dropped": 7})["telemetry"] == 7
    assert dropped_counts({"dropped": {"normal": 2, "telemetry": 3, "bogus": 9}}) == {
        "alarm": 0,
        "normal": 2,
        "telemetry": 3,
    }
    assert dropped_counts({"dropped": True})["telemetry"] == 0


def test_event_uids_split_into_edge_incarnation_and_seq() -> None:
    assert parse_uid("edge-a:3f9c0d1e2a4b5c6d:42") == ("edge-a", "3f9c0d1e2a4b5c6d", 42)
    assert parse_uid("edge-a:3f9c:000000000042") == ("edge-a", "3f9c", 42)  # since 0020
