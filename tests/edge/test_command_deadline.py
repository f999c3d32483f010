"""When the edge stops executing a hub command (issue #11): the time to live measured from
receipt, the absolute deadline by the edge's clock with a tolerance, and clock skew."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge.command_deadline import on_receipt

HUB_NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def _deadline(ttl_s: float, *, edge_clock_ahead_s: float, waited_s: float = 0.0, now: float = 0):
    mono = [100.0]
    deadline = HUB_NOW + timedelta(seconds=ttl_s)
    received_wall = HUB_NOW.timestamp() + waited_s + edge_clock_ahead_s
    made = on_receipt(
        deadline,
        ttl_s,
        received_mono=100.0,
        received_wall=received_wall,
        tolerance_s=2.0,
        clock=lambda: mono[0],
    )
    return made, mono


def test_in_time_with_clocks_in_step_it_runs_for_its_ttl_from_receipt() -> None:
    made, mono = _deadline(10, edge_clock_ahead_s=0)
    assert not made.expired()
    mono[0] += 9.9
    assert not made.expired()
    mono[0] += 0.2
    assert made.expired()
    assert "time to live 10 s" in made.detail("before the bus write")


def test_a_command_that_waited_in_the_broker_past_its_deadline_expires_on_arrival() -> None:
    made, _ = _deadline(10, edge_clock_ahead_s=0, waited_s=300)
    assert made.expired()
    detail = made.detail("on arrival at the edge")
    assert "288.0 s past its deadline" in detail and "edge's clock" in detail


def test_an_edge_clock_behind_cannot_stretch_the_ttl() -> None:
    made, mono = _deadline(10, edge_clock_ahead_s=-3600)
    mono[0] += 10.1
    assert made.expired()


def test_an_edge_clock_ahead_beyond_the_tolerance_expires_early_never_late() -> None:
    made, mono = _deadline(10, edge_clock_ahead_s=5)  # 3 s beyond the 2 s tolerance
    assert not made.expired()
    mono[0] += 7.1
    assert made.expired()
    ahead, _ = _deadline(10, edge_clock_ahead_s=20)
    assert ahead.expired()


def test_skew_within_the_tolerance_changes_nothing() -> None:
    made, mono = _deadline(10, edge_clock_ahead_s=1.5)
    mono[0] += 9.9
    assert not made.expired()
