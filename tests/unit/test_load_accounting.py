"""Exact percentiles, their merge across workers, the validity gate and the SLO gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.core.errors import ConfigError
from infra.load.runner import LoadPlan, fault_window
from loadtests.recording import UNFINISHED, Recorder
from loadtests.scenarios import PROFILES, mix
from loadtests.slo import (
    EXIT_INCONCLUSIVE,
    EXIT_MISSED,
    EXIT_PASSED,
    SloFileError,
    check,
    judge,
    load_slo,
)

US = 1000  # nanoseconds


def _recorded(
    service_us: list[int], errors: int = 0, lag_us: int = 0, scenario: str = "session"
) -> Recorder:
    """Requests sent `lag_us` after their intended start, answered `service_us` later."""
    recorder = Recorder()
    kind = recorder.type_id(f"{scenario}.read", scenario)
    for i, service in enumerate(service_us):
        intended = 1_000_000_000 + i * 1000 * US
        sent = intended + lag_us * US
        recorder.record(kind, intended, sent, sent + service * US, ok=i >= errors)
    recorder.fold()
    return recorder


def test_percentiles_keep_microsecond_resolution() -> None:
    # 990 requests at 40 us, 10 at 950 us: p99 is 40 us, p99.9 near 950 us. Locust's
    # millisecond rounding would call all of them "0 ms" or "1 ms".
    summary = _recorded([40] * 990 + [950] * 10).summary(seconds=1.0, workers=1)
    figures = summary["request_types"]["session.read"]
    assert figures["count"] == 1000 and figures["rps"] == 1000.0
    assert figures["service"]["p50_us"] == 40 and figures["service"]["p99_us"] == 40
    assert 945 <= figures["service"]["p999_us"] <= 955
    assert summary["total"]["requests_per_s_per_worker"] == 1000.0


def test_response_time_counts_from_the_intended_start() -> None:
    """A generator that sent every request 500 us late: the service time does not show
    it, the response time (what the application waited) does, and so does the lag."""
    summary = _recorded([40] * 100, lag_us=500).summary(seconds=1.0, workers=1)
    figures = summary["request_types"]["session.read"]
    assert figures["service"]["p50_us"] == 40
    assert 539 <= figures["response"]["p50_us"] <= 541
    assert 499 <= summary["start_lag"]["p50_us"] <= 501


def test_worker_histograms_merge_exactly() -> None:
    one, two = _recorded([100] * 500, errors=5), _recorded([300] * 500)
    master = Recorder()
    master.merge(one.take("w1"))
    master.merge(two.take("w2"))
    figures = master.summary(seconds=2.0, workers=2)["request_types"]["session.read"]
    assert figures["count"] == 1000 and figures["errors"] == 5
    assert figures["service"]["p50_us"] == 100 and 299 <= figures["service"]["p99_us"] <= 301
    assert one.take("w1")["types"] == {}  # a take empties the worker's recorder


def test_cpu_samples_travel_with_the_worker_reports() -> None:
    worker = Recorder()
    worker.cpu = [0.4, 0.7]
    master = Recorder()
    master.merge(worker.take("w1"))
    cpu = master.summary(seconds=1.0, workers=1)["generator_cpu"]
    assert cpu == {"w1": {"max": 0.7, "mean": 0.55, "seconds": 2}}


def _slo(tmp_path: Path, text: str) -> Path:
    slo = tmp_path / "slo.yaml"
    slo.write_text(text)
    return slo


def test_slo_gate_names_the_missed_target(tmp_path: Path) -> None:
    slo = load_slo(
        _slo(
            tmp_path, "default:\n  p99_ms: 0.5\nsession:\n  p50_ms: 0.01\ntotal:\n  min_rps: 2000\n"
        )
    )
    summary = _recorded([40] * 990 + [950] * 10).summary(seconds=1.0, workers=1)
    misses = [str(miss) for miss in check(slo, summary)]
    assert "session.read: p50 0.040 ms, above the 0.01 ms target by 0.030 ms" in misses
    assert "total: 1000 requests/s, below the 2000 target by 1000/s" in misses
    assert not any("p99" in miss for miss in misses)  # 40 us meets 0.5 ms


def test_a_run_that_kept_its_schedule_is_judged(tmp_path: Path) -> None:
    slo = load_slo(_slo(tmp_path, "rate: 1000\ndefault:\n  p99_ms: 1\n"))
    kept = _recorded([40] * 1000, lag_us=100).summary(seconds=1.0, workers=1)
    assert judge(kept, slo, 1000).code == EXIT_PASSED
    slow = _recorded([2000] * 1000).summary(seconds=1.0, workers=1)
    verdict = judge(slow, slo, 1000)
    assert verdict.code == EXIT_MISSED and "p99 2.000 ms, above the 1 ms" in verdict.reasons[0]


def test_a_generator_that_fell_behind_makes_the_run_inconclusive(tmp_path: Path) -> None:
    """Never a pass or a fail: each condition of the validity gate, with its fix."""
    slo = load_slo(_slo(tmp_path, "rate: 1000\ndefault:\n  p99_ms: 50\n"))
    behind = _recorded([40] * 900).summary(seconds=1.0, workers=1)  # 900 of 1000/s
    verdict = judge(behind, slo, 1000)
    assert verdict.code == EXIT_INCONCLUSIVE and verdict.status == "inconclusive"
    assert "achieved 900 requests/s, 90.0% of the 1000" in verdict.reasons[0]
    assert "Fix: a lower --rate" in verdict.reasons[0]
    # 10% of the tightest target (50 ms) is 5 ms: a 6 ms lag is too much, 4 ms is not.
    late = _recorded([40] * 1000, lag_us=6000).summary(seconds=1.0, workers=1)
    assert "start lag p99 6.00 ms, above 5 ms" in judge(late, slo, 1000).reasons[0]
    assert judge(_recorded([40] * 1000, lag_us=4000).summary(1.0, 1), slo, 1000).code == 0
    busy = _recorded([40] * 1000).summary(seconds=1.0, workers=1)
    busy["generator_cpu"] = {"w1": {"max": 0.9, "mean": 0.8, "seconds": 5}}
    assert "worker w1 used 90% of a core (limit 65%)" in judge(busy, slo, 1000).reasons[0]


def test_capacity_runs_never_judge_percentiles(tmp_path: Path) -> None:
    slo = load_slo(_slo(tmp_path, "default:\n  p50_ms: 0.001\n  max_error_ratio: 0.001\n"))
    summary = _recorded([40] * 100).summary(seconds=1.0, workers=1)
    assert judge(summary, slo, None).status == "capacity"
    failing = _recorded([40] * 100, errors=1).summary(seconds=1.0, workers=1)
    assert judge(failing, slo, None).reasons == ["session.read: error ratio 1.0000%, above 0.1000%"]


@pytest.mark.parametrize(
    "text",
    [
        "default:\n  p99: 5\n",
        "default:\n  p99_ms: fast\n",
        "- a list\n",
        "session: 3\n",
        "rate: lots\n",
        "rate: 0\n",
    ],
)
def test_bad_slo_files_are_refused_with_the_field(tmp_path: Path, text: str) -> None:
    slo = _slo(tmp_path, text)
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
        rate=-5,
    )
    with pytest.raises(ConfigError) as caught:
        plan.check()
    fields = {problem.field for problem in caught.value.problems}
    assert {"--profile", "--users", "--duration", "--rate"} <= fields


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


def test_server_histograms_add_up_across_nodes_with_different_buckets() -> None:
    """LATENCY HISTOGRAM lists only the buckets a node has seen (cumulative): one node
    with a slow tail, one without, each read before and after the run."""
    from infra.load.server_stats import CommandStats, _histogram, difference

    def read(cumulative: dict[int, int]) -> dict[str, CommandStats]:
        reply = ["set", ["calls", max(cumulative.values()), "histogram_usec", []]]
        reply[1][3] = [x for pair in cumulative.items() for x in pair]  # type: ignore[index]
        histogram = _histogram(reply)["set"]
        return {"set": CommandStats(calls=max(cumulative.values()), usec=1, histogram=histogram)}

    before = {"a": read({1: 100, 4: 150}), "b": read({2: 10, 2048: 11})}
    after = {"a": read({1: 300, 2: 320, 4: 400}), "b": read({2: 110, 2048: 111})}
    figures = difference(before, after)["commands"]["set"]
    # a: 200 at <=1 us, 20 at <=2, 30 at <=4; b: 100 at <=2, none slower.
    assert figures["calls"] == 350
    assert figures["p50_us_at_most"] == 1  # 200 of the 350 calls took at most 1 us
    assert figures["p99_us_at_most"] == 4  # b's slow call is from before the run


def _scheduled(recorder: Recorder, workers: int, rate_per_worker: float, seconds: float) -> None:
    for worker in range(workers):
        start = 1_000_000_000 + worker * 300_000_000  # processes start a moment apart
        recorder.scheduled(
            f"w{worker}", start, start + int(seconds * 1e9), int(rate_per_worker * seconds)
        )


def test_waiting_for_a_connection_is_the_response_time_not_the_generators_lag() -> None:
    """Redis slow enough that requests queue for a free connection: the application
    waits (response time), but the generator was on time, so the gate must not say
    "inconclusive" for what is a missed target."""
    recorder = Recorder()
    kind = recorder.type_id("session.read", "session")
    for i in range(1000):
        intended = 1_000_000_000 + i * 1000 * US
        waited = 30_000 * US  # 30 ms queued behind busy connections
        sent = intended + waited + 50 * US  # the dispatcher itself was 50 us late
        recorder.record(kind, intended, sent, sent + 2000 * US, True, waited)
    recorder.fold()
    summary = recorder.summary(seconds=1.0, workers=1)
    assert 49 <= summary["start_lag"]["p99_us"] <= 51
    assert summary["request_types"]["session.read"]["response"]["p50_us"] > 32_000


def test_requests_that_never_finished_count_as_errors_and_against_completion() -> None:
    recorder = _recorded([40] * 990)
    late = recorder.type_id(UNFINISHED, "schedule")
    for i in range(10):  # the slowest 1%: still queued when the run stopped
        recorder.record(late, 1_000_000_000 + i * US, 2_000_000_000, 2_000_000_000, False)
    recorder.fold()
    _scheduled(recorder, 1, 1000, 1.0)
    total = recorder.summary(seconds=1.0, workers=1)["total"]
    assert total["unfinished"] == 10 and total["errors"] == 10
    assert total["completed_share"] == 0.99
    assert total["response"]["p999_us"] > 900_000  # the worst are not dropped


def test_the_gate_checks_every_process_kept_the_schedule_the_targets_hold_at(
    tmp_path: Path,
) -> None:
    slo = load_slo(_slo(tmp_path, "rate: 600\ndefault:\n  p99_ms: 50\n"))
    recorder = _recorded([40] * 600)
    _scheduled(recorder, 1, 300, 2.0)  # one of two processes started its schedule
    summary = recorder.summary(seconds=2.0, workers=1)
    summary["expected_workers"] = 2
    reasons = judge(summary, slo, 600).reasons
    assert any("1 of 2 worker processes kept a schedule" in r for r in reasons)
    assert any("asked for 300 requests/s, not the 600" in r for r in reasons)
    # Both kept it, 0.3 s apart: each at its own rate, the sum is the target.
    both = _recorded([40] * 1200)
    _scheduled(both, 2, 300, 2.0)
    assert both.measured_seconds() == pytest.approx(2.0)  # not the 2.3 s both spanned
    assert both.summary(both.measured_seconds(), 2)["total"]["rps"] == 600
    judged = judge(both.summary(seconds=2.3, workers=2), slo, 600)
    assert judged.code == EXIT_PASSED, judged.reasons
    # The targets hold at 600/s: a run at 300/s is not evidence for them.
    assert (
        "while the SLO file's targets hold at 600/s"
        in judge(both.summary(2.3, 2), slo, 300).reasons[-1]
    )


def test_a_target_on_something_the_run_never_measured_judges_nothing(tmp_path: Path) -> None:
    slo = load_slo(_slo(tmp_path, "sesion.read:\n  p99_ms: 5\n"))  # a typo
    reasons = judge(_recorded([40] * 1000).summary(1.0, 1), slo, 1000).reasons
    assert reasons and "'sesion.read' names no request type or scenario" in reasons[0]


def test_a_harness_failure_is_never_a_pass(tmp_path: Path) -> None:
    verdict = judge(_recorded([40] * 1000).summary(1.0, 1), None, 1000, ["a user raised"])
    assert verdict.code == EXIT_INCONCLUSIVE and verdict.reasons == ["a user raised"]


@pytest.mark.parametrize("connections", [6, 7, 10, 20])
def test_the_mixed_profile_runs_every_scenario(connections: int) -> None:
    chosen = mix("mixed", connections)
    assert len(chosen) == connections
    assert set(chosen) == set(PROFILES["mixed"])
