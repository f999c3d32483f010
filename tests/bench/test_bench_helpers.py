"""The bench's own arithmetic and bookkeeping: what a misread counter or a goal left out of
the table would silently get wrong (the bench runs themselves prove the measuring)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import modbus_store, scale_out
from bench.full_edge import bus_frames_per_s, load_profiles
from bench.report import Report, Row
from bench.synthetic_edge import _devices


def test_every_goal_is_listed_with_its_rows_verdict_or_as_not_measured() -> None:
    report = Report(mode="quick", goals=[("a", "goal A"), ("b", "goal B")], goals_title="Goals")
    report.rows.append(Row("row A", "12 ms", "floor 3 ms", "≤ 50 ms", "0.24 met", goal_key="a"))
    text = report.markdown()
    assert "- goal A: 0.24 met — 12 ms (limit: floor 3 ms)" in text
    assert "- goal B: not measured in this run" in text


def test_edge_counters_sum_the_modbus_devices_and_find_polls_behind_schedule() -> None:
    info = {
        "drivers": {
            "modbus-tcp": {
                "devices": {
                    "m1": {"polls_ok": 10, "dropped": 2, "record_failed": 0,
                           "failures": {"timeout": 1}, "online": True,
                           "polls_behind_schedule": 3},
                    "m2": {"polls_ok": 5, "dropped": 0, "record_failed": 1,
                           "failures": {"timeout": 2, "link_down": 3},
                           "polls_behind_schedule": 4},
                },
                "polls_behind_schedule": 7,
            }
        }
    }  # fmt: skip
    totals, behind = modbus_store.edge_counters(info)
    assert totals == {
        "polls_ok": 15,
        "dropped": 2,
        "record_failed": 1,
        "failures timeout": 3,
        "failures link_down": 3,
    }
    assert behind == 7  # the driver's total, not the total plus its devices' counts


def test_polls_behind_schedule_are_summed_over_devices_without_a_total() -> None:
    info = {"drivers": {"tcp": {"devices": {"a": {"polls_behind_schedule": 2},
                                            "b": {"polls_behind_schedule": 5}}}}}  # fmt: skip
    assert modbus_store.edge_counters(info)[1] == 7


def test_an_edge_that_does_not_count_polls_behind_schedule_shows_n_a() -> None:
    _totals, behind = modbus_store.edge_counters({"drivers": {"x": {"devices": {}}}})
    assert behind is None
    result = modbus_store.ModbusStore(0.1, 200, 10.0, 2000.0, replies=100, stored=100)
    assert result.behind_text().startswith("n/a")
    assert result.lost == 0


def test_a_saturated_cb100_bus_carries_each_frame_and_its_link_ack() -> None:
    # 14-byte heartbeat + 13-byte link ack, 10 bits a character at 9,600 baud
    assert bus_frames_per_s() == pytest.approx(9600 / (27 * 10))


def test_city_edges_get_their_own_device_groups() -> None:
    assert _devices(700_000, range(2, 4), 2) == [
        "cb100-702000",
        "cb100-702001",
        "cb100-703000",
        "cb100-703001",
    ]


def test_replicas_can_be_forced_for_a_try(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_REPLICAS", "1")
    assert scale_out.replica_support() is None


def test_the_modbus_profile_reads_ten_registers_in_one_poll() -> None:
    profile = modbus_store.profile(0.1)
    assert [p["address"] for p in profile["points"]] == list(range(10))
    assert profile["polls"] == [
        {"points": [f"r{i}" for i in range(10)], "every_s": 0.1, "kind": "reading"}
    ]


def test_the_bench_modbus_profile_passes_the_edges_own_loader(tmp_path: Path) -> None:
    profiles = load_profiles(modbus_store.write_profiles(tmp_path, 0.1))
    assert modbus_store.PROFILE in profiles
