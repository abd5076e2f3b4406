"""Exact percentiles, their merge across workers, and the SLO gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.errors import ConfigError
from infra.load import LoadPlan, fault_window
from loadtests.latency import Recorder
from loadtests.slo import SloFileError, check, load_slo


def _recorded(latencies_us: list[int], errors: int = 0, scenario: str = "session") -> Recorder:
    recorder = Recorder()
    for i, latency in enumerate(latencies_us):
        recorder.record(scenario, f"{scenario}.read", latency, ok=i >= errors)
    return recorder


def test_percentiles_keep_microsecond_resolution() -> None:
    # 990 requests at 40 us, 10 at 950 us: p99 is 40 us, p99.9 near 950 us. Locust's
    # millisecond rounding would call all of them "0 ms" or "1 ms".
    summary = _recorded([40] * 990 + [950] * 10).summary(seconds=1.0, workers=1)
    figures = summary["request_types"]["session.read"]
    assert figures["count"] == 1000 and figures["rps"] == 1000.0
    assert figures["p50_us"] == 40 and figures["p99_us"] == 40
    assert 945 <= figures["p999_us"] <= 955 and 945 <= figures["max_us"] <= 955
    assert summary["total"]["requests_per_s_per_worker"] == 1000.0


def test_worker_histograms_merge_exactly() -> None:
    one, two = _recorded([100] * 500, errors=5), _recorded([300] * 500)
    master = Recorder()
    master.merge(one.take())
    master.merge(two.take())
    figures = master.summary(seconds=2.0, workers=2)["request_types"]["session.read"]
    assert figures["count"] == 1000 and figures["errors"] == 5
    assert figures["p50_us"] == 100 and 299 <= figures["p99_us"] <= 301
    assert one.take()["types"] == {}  # a take empties the worker's recorder


def test_slo_gate_names_the_missed_target(tmp_path: Path) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text("default:\n  p99_ms: 0.5\nsession:\n  p50_ms: 0.01\ntotal:\n  min_rps: 2000\n")
    summary = _recorded([40] * 990 + [950] * 10).summary(seconds=1.0, workers=1)
    misses = [str(miss) for miss in check(load_slo(slo), summary)]
    assert "session.read: p50 0.040 ms, above the 0.01 ms target by 0.030 ms" in misses
    assert "total: 1000 requests/s, below the 2000 target by 1000/s" in misses
    assert not any("p99" in miss for miss in misses)  # 40 us meets 0.5 ms
    slo.write_text("default:\n  p99_ms: 5\n  max_error_ratio: 0.001\n")
    failing = _recorded([40] * 100, errors=1).summary(seconds=1.0, workers=1)
    assert [str(m) for m in check(load_slo(slo), failing)] == [
        "session.read: error ratio 1.0000%, above 0.1000%"
    ]


@pytest.mark.parametrize(
    "text",
    ["default:\n  p99: 5\n", "default:\n  p99_ms: fast\n", "- a list\n", "session: 3\n"],
)
def test_bad_slo_files_are_refused_with_the_field(tmp_path: Path, text: str) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text(text)
    with pytest.raises(SloFileError, match=str(slo)):
        load_slo(slo)


def test_load_options_are_checked_before_anything_runs(tmp_path: Path) -> None:
    plan = LoadPlan(
        tmp_path / "c.json",
        profile="everything",
        users=0,
        duration_s=100_000,
        drill="kill-master",
        drill_after_s=10,
    )
    with pytest.raises(ConfigError) as caught:
        plan.check()
    fields = {problem.field for problem in caught.value.problems}
    assert {"--profile", "--users", "--duration"} <= fields


def test_fault_window_measures_the_dip() -> None:
    timeline = [
        {
            "second": 100 + t,
            "requests": 1000 if t < 5 or t > 8 else 100,
            "errors": 3 if t == 6 else 0,
            "p50_us": 50,
            "p99_us": 200 if t < 5 else 9000,
            "max_us": 10000,
        }
        for t in range(20)
    ]
    window = fault_window(timeline, fault_at=105.2)
    assert window["baseline_requests_per_s"] == 1000.0 and window["baseline_p99_us"] == 200.0
    assert window["worst_p99_us_after_fault"] == 9000
    assert window["errors_after_fault"] == 3 and window["seconds_below_half_throughput"] == 4
