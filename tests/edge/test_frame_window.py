"""The CB-100 replay rule (edge.frame_window): what is caught, and what is never refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.frame_window import RESTART_BELOW, WIDTH, SeqWindow, Verdict, accept, classify


def _run(seqs: list[int]) -> SeqWindow:
    window: SeqWindow | None = None
    for seq in seqs:
        window = accept(window, seq)
    assert window is not None
    return window


def test_a_device_heard_for_the_first_time_is_new() -> None:
    assert classify(None, 500) is Verdict.NEW


def test_a_recorded_frame_played_back_is_a_replay() -> None:
    window = _run(list(range(100, 140)))
    assert window.classify(139) is Verdict.REPLAY  # the last one
    assert window.classify(120) is Verdict.REPLAY  # one further back
    assert window.classify(140) is Verdict.NEW  # the next one


def test_a_late_frame_never_recorded_is_new_once() -> None:
    window = _run([100, 101, 103, 104])
    assert window.classify(102) is Verdict.NEW
    window = window.accept(102)
    assert window.classify(102) is Verdict.REPLAY
    assert window.top == 104


def test_the_wrap_from_65535_to_0_is_one_step_ahead() -> None:
    window = _run([65533, 65534, 65535])
    assert window.classify(0) is Verdict.NEW
    window = window.accept(0)
    assert (window.top, window.classify(1)) == (0, Verdict.NEW)
    # frames from before the wrap are still remembered
    assert window.classify(65535) is Verdict.REPLAY
    assert window.classify(65534) is Verdict.REPLAY


def test_replays_across_the_wrap_are_caught() -> None:
    window = _run([(65500 + i) % 65536 for i in range(80)])  # 65500 … 65535, 0 … 43
    assert window.top == 43
    for seq in (65500, 65535, 20, 43):
        assert window.classify(seq) is Verdict.REPLAY, seq
    assert window.classify(0) is Verdict.RESTART  # below the restart mark: taken
    assert window.classify(44) is Verdict.NEW


def test_a_button_that_restarts_at_zero_is_taken_even_while_its_old_seqs_are_remembered() -> None:
    window = _run(list(range(0, 40)))  # 0 … 39 recorded: 0 is inside the window
    assert window.classify(0) is Verdict.RESTART
    window = window.accept(0)
    assert (window.top, window.seen) == (0, 1)
    for seq in range(1, 40):  # the new run reuses the old run's seqs: all new
        assert window.classify(seq) is Verdict.NEW, seq
        window = window.accept(seq)


def test_a_frame_far_behind_is_a_restart_not_a_refusal() -> None:
    window = _run(list(range(5000, 5000 + WIDTH)))
    assert window.classify(5000 - 1) is Verdict.RESTART
    assert window.classify(4000) is Verdict.RESTART
    assert window.classify(5000) is Verdict.REPLAY  # still inside the window
    assert window.classify(5000 + WIDTH) is Verdict.NEW


def test_seqs_below_the_restart_mark_are_never_refused() -> None:
    window = _run(list(range(RESTART_BELOW + 10)))
    for seq in range(RESTART_BELOW):
        assert window.classify(seq) is Verdict.RESTART
    assert window.classify(RESTART_BELOW) is Verdict.REPLAY


@pytest.mark.parametrize("text", ["", "x", "70000:1", "5:" + "f" * (WIDTH // 4 + 1), "-1:0"])
def test_stored_text_that_is_not_ours_is_refused(text: str) -> None:
    with pytest.raises(ValueError):  # any ValueError: the outbox logs it and starts afresh
        SeqWindow.from_text(text)


@given(seqs=st.lists(st.integers(0, 65535), min_size=1, max_size=60))
def test_text_round_trip(seqs: list[int]) -> None:
    window = _run(seqs)
    assert SeqWindow.from_text(window.to_text()) == window


@given(start=st.integers(0, 65535), length=st.integers(1, 600), pick=st.integers(0, 10_000))
def test_a_counting_button_is_never_refused_and_its_recent_frames_are_caught(
    start: int, length: int, pick: int
) -> None:
    """A button counts up from any start (wrapping at 65536, which is a step ahead, never a
    restart): every frame is taken, and afterwards each of its last WIDTH frames, replayed,
    is caught unless its seq is below the restart mark."""
    window: SeqWindow | None = None
    seqs = [(start + i) % 65536 for i in range(length)]
    for seq in seqs:
        assert classify(window, seq) is not Verdict.REPLAY, seq
        window = accept(window, seq)
    assert window is not None
    recent = seqs[-WIDTH:]
    replayed = recent[pick % len(recent)]
    expected = Verdict.RESTART if replayed < RESTART_BELOW else Verdict.REPLAY
    assert window.classify(replayed) is expected


def test_what_a_restart_gives_up_the_documented_limit() -> None:
    """docs/security.md, "Not caught": a frame taken as a restart starts the window again,
    so frames recorded before it are no longer recognised."""
    window = _run(list(range(1000, 1010)))
    assert window.classify(1005) is Verdict.REPLAY
    window = window.accept(3)  # a replayed seq 3, or a real restart: cannot be told apart
    assert window.classify(1005) is Verdict.NEW
