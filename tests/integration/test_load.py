"""Short Locust runs against every topology: exact summaries, an SLO gate that fails
and passes honestly, distributed workers merged, and latency around a failover."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.bench import bench
from infra.connection import read_connection_file
from infra.load import LoadPlan, run_load
from tests.integration.conftest import DeployFactory, Deployment

CI_SLO = Path(__file__).resolve().parents[2] / "loadtests" / "slo-ci.yaml"
RUN_S = 8


@pytest.fixture(scope="module")
def single(deploy: DeployFactory) -> Deployment:
    return deploy("single", "load")


def _plan(deployment: Deployment, out: Path, **options: Any) -> LoadPlan:
    settings: dict[str, Any] = {"users": 20, "duration_s": RUN_S, **options}
    return LoadPlan(connection_file=deployment.connection_file, out_dir=out, **settings)


def test_mixed_profile_meets_the_ci_slo_with_exact_percentiles(
    single: Deployment, tmp_path: Path
) -> None:
    result = run_load(_plan(single, tmp_path, slo_file=CI_SLO))
    assert result.exit_code == 0, result.summary.get("slo")
    summary = result.summary
    assert summary["slo"]["passed"] is True
    scenarios = {figures["scenario"] for figures in summary["request_types"].values()}
    assert {"session", "cache", "ratelimit", "leaderboard", "counters", "pubsub"} <= scenarios
    read = summary["request_types"]["session.read"]
    assert read["count"] > 100 and read["errors"] == 0
    assert (
        0 < read["p50_us"] <= read["p90_us"] <= read["p99_us"] <= read["p999_us"] <= read["max_us"]
    )
    assert summary["request_types"]["pubsub.deliver"]["count"] > 0  # fan-out measured end to end
    # Our histogram saw what Locust saw (pub/sub deliveries are ours alone).
    ours = sum(
        f["count"] for name, f in summary["request_types"].items() if name != "pubsub.deliver"
    )
    assert ours == summary["locust_requests"] > 0
    assert (tmp_path / "locust-report.html").exists() and result.timeline_file.exists()


def test_an_impossible_slo_fails_the_run_and_says_by_how_much(
    single: Deployment, tmp_path: Path
) -> None:
    impossible = tmp_path / "impossible.yaml"
    impossible.write_text("default:\n  p50_ms: 0.001\n")
    result = run_load(
        _plan(single, tmp_path / "out", slo_file=impossible, duration_s=4, profile="session")
    )
    assert result.exit_code == 1
    missed = result.summary["slo"]["missed"]
    assert missed and all("above the 0.001 ms target by" in miss for miss in missed)


def test_two_worker_processes_merge_into_one_exact_summary(
    single: Deployment, tmp_path: Path
) -> None:
    result = run_load(_plan(single, tmp_path, processes=2, profile="cache"))
    assert result.exit_code == 0
    assert result.summary["workers"] == 2
    total = result.summary["total"]
    # Every worker's histogram arrived: the merged count is Locust's own merged count.
    assert total["count"] == result.summary["locust_requests"] > 0
    assert total["requests_per_s_per_worker"] == pytest.approx(
        total["requests_per_s"] / 2, rel=0.01
    )


def test_bench_sets_the_harness_next_to_redis_benchmark(single: Deployment, tmp_path: Path) -> None:
    info = read_connection_file(
        single.connection_file,
        operator_file=single.connection_file.parent / "operator.json",
        breakglass_file=single.connection_file.parent / "breakglass.json",
    )
    result = bench(info, single.connection_file, clients=20, duration_s=4, out_dir=tmp_path)
    assert {"get", "set"} <= set(result.redis_benchmark)
    assert result.redis_benchmark["get"]["rps"] > 0
    assert result.ratios["get_throughput"] > 0 and result.ratios["set_p50"] > 0


@pytest.mark.parametrize("kind", ["sentinel", "cluster"])
def test_replicated_topologies_pass_the_ci_slo(
    deploy: DeployFactory, kind: str, tmp_path: Path
) -> None:
    deployment = deploy(kind, f"load-{kind[:3]}")
    result = run_load(_plan(deployment, tmp_path, slo_file=CI_SLO))
    assert result.exit_code == 0, result.summary.get("slo")
    assert result.summary["request_types"]["ratelimit.fcall"]["errors"] == 0  # hash tags hold


def test_latency_timeline_around_a_sentinel_failover(deploy: DeployFactory, tmp_path: Path) -> None:
    deployment = deploy("sentinel", "load-fo", sentinel={"down_after_ms": 1000})
    result = run_load(
        _plan(deployment, tmp_path, duration_s=28, drill="kill-master", drill_after_s=6),
        deployment.engine,
    )
    assert result.drill is not None and result.drill["failover"] is True
    assert result.drill["writes"]["acknowledged_lost"] == 0
    window = result.fault_window
    assert window is not None and window["baseline_requests_per_s"] > 0
    assert window["worst_p99_us_after_fault"] > window["baseline_p99_us"]  # the fault shows
    assert result.plot is not None and result.plot.stat().st_size > 10_000
