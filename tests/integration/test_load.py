"""Short load runs against every topology: capacity runs with exact summaries, SLO runs
that pass, miss and are inconclusive with their own exit codes, workers merged,
Redis's own view next to the client's, and latency around a failover."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import pytest

from infra.core.connection import read_connection_file
from infra.load.bench import bench
from infra.load.runner import LoadPlan, run_load
from infra.operations.deploy import down
from loadtests.slo import EXIT_INCONCLUSIVE, EXIT_MISSED, EXIT_PASSED
from tests.integration.conftest import DeployFactory, Deployment

CI_SLO = Path(__file__).resolve().parents[2] / "loadtests" / "slo-ci.yaml"
RUN_S = 6


@pytest.fixture(scope="module")
def single(deploy: DeployFactory) -> Deployment:
    return deploy("single", "load")


def _plan(deployment: Deployment, out: Path, **options: Any) -> LoadPlan:
    settings: dict[str, Any] = {"users": 10, "duration_s": RUN_S, **options}
    return LoadPlan(connection_file=deployment.connection_file, out_dir=out, **settings)


def test_a_capacity_run_counts_every_request_exactly(single: Deployment, tmp_path: Path) -> None:
    result = run_load(_plan(single, tmp_path, users=20))
    assert result.exit_code == EXIT_PASSED  # a capacity run is never judged on latency
    summary = result.summary
    assert summary["mode"] == "capacity" and summary["verdict"]["status"] == "capacity"
    scenarios = {figures["scenario"] for figures in summary["request_types"].values()}
    assert {"session", "cache", "ratelimit", "leaderboard", "counters", "pubsub"} <= scenarios
    read = summary["request_types"]["session.read"]
    assert read["count"] > 100 and read["errors"] == 0
    service = read["service"]
    assert 0 < service["p50_us"] <= service["p90_us"] <= service["p99_us"] <= service["max_us"]
    assert summary["request_types"]["pubsub.deliver"]["count"] > 0  # fan-out, end to end
    # Our records saw what Locust saw (pub/sub deliveries are ours alone).
    ours = sum(
        f["count"] for name, f in summary["request_types"].items() if name != "pubsub.deliver"
    )
    assert ours == summary["locust_requests"] > 0
    # Redis's own view of the same run, read as the operator: the same commands.
    server = summary["server"]["commands"]
    assert server["hgetall"]["calls"] >= read["count"]  # setup reads are not timed requests
    assert 0 < server["hgetall"]["usec_per_call"] < service["p50_us"]
    assert (tmp_path / "locust-report.html").exists() and result.timeline_file.exists()


def _passes_the_ci_slo(deployment: Deployment, out: Path) -> None:
    result = run_load(_plan(deployment, out, slo_file=CI_SLO, rate=400))
    verdict = result.summary["verdict"]
    assert result.notes == []  # the run waited for the deployment to settle
    assert result.exit_code == EXIT_PASSED, verdict
    assert verdict["status"] == "passed" and result.summary["mode"] == "slo"
    total = result.summary["total"]
    assert total["rps"] >= 0.99 * 400 and total["errors"] == 0
    # Every request is timed from its intended start and from its send.
    assert total["response"]["p50_us"] >= total["service"]["p50_us"] > 0
    assert result.summary["request_types"]["ratelimit.fcall"]["errors"] == 0  # hash tags hold


def test_an_slo_run_at_a_modest_rate_passes_on_a_single_node(
    single: Deployment, tmp_path: Path
) -> None:
    _passes_the_ci_slo(single, tmp_path)


def test_an_slo_run_at_a_modest_rate_passes_on_a_sentinel_group(
    shared_sentinel: Deployment, tmp_path: Path
) -> None:
    _passes_the_ci_slo(shared_sentinel, tmp_path)  # the session's group, left whole


def test_an_slo_run_at_a_modest_rate_passes_on_a_cluster(
    deploy: DeployFactory, engine: docker.DockerClient, tmp_path: Path
) -> None:
    deployment = deploy("cluster", "slo-clu")
    try:
        _passes_the_ci_slo(deployment, tmp_path)
    finally:  # a cluster's gossip costs CPU: gone before the next tests
        down(deployment.name, engine, keep_data=False)


def test_an_impossible_target_fails_the_run_and_says_by_how_much(
    single: Deployment, tmp_path: Path
) -> None:
    impossible = tmp_path / "impossible.yaml"  # judged at any rate: no `rate:` line
    targets = [line for line in CI_SLO.read_text().splitlines() if not line.startswith("rate:")]
    impossible.write_text("\n".join(targets) + "\ntotal:\n  min_rps: 1000000\n")
    result = run_load(_plan(single, tmp_path / "out", slo_file=impossible, rate=300))
    assert result.exit_code == EXIT_MISSED, result.summary["verdict"]
    assert result.summary["verdict"]["reasons"] == [
        "total: 300 requests/s, below the 1000000 target by 999700/s"
    ]


def test_a_rate_the_generator_cannot_keep_is_inconclusive(
    single: Deployment, tmp_path: Path
) -> None:
    result = run_load(_plan(single, tmp_path, slo_file=CI_SLO, rate=100_000, duration_s=4))
    assert result.exit_code == EXIT_INCONCLUSIVE
    verdict = result.summary["verdict"]
    assert verdict["status"] == "inconclusive"
    assert any("the generator fell behind" in reason for reason in verdict["reasons"])


def test_two_worker_processes_merge_into_one_exact_summary(
    single: Deployment, tmp_path: Path
) -> None:
    result = run_load(
        _plan(single, tmp_path, processes=2, profile="cache", rate=400, slo_file=CI_SLO)
    )
    assert result.exit_code == EXIT_PASSED, result.summary["verdict"]
    assert result.summary["workers"] == 2
    assert len(result.summary["generator_cpu"]) == 2  # each worker's CPU arrived
    total = result.summary["total"]
    # Every worker's histogram arrived: the merged count is Locust's own merged count.
    assert total["count"] == result.summary["locust_requests"] > 0
    assert total["rps"] >= 0.99 * 400 and total["schedules"] == 2


def test_bench_sets_the_harness_next_to_redis_benchmark(single: Deployment, tmp_path: Path) -> None:
    info = read_connection_file(
        single.connection_file,
        operator_file=single.connection_file.parent / "operator.json",
        breakglass_file=single.connection_file.parent / "breakglass.json",
    )
    result = bench(info, single.connection_file, 10, 4, tmp_path, rate=500)
    assert {"get", "set"} <= set(result.redis_benchmark) and {"get", "set"} <= set(result.floor)
    assert result.redis_benchmark["get"]["rps"] > 0 and result.floor["get"]["p50_ms"] > 0
    assert result.ratios["throughput"] > 0 and result.ratios["get_service_p50_vs_floor"] > 0
    # The official client made every request of its paced run (500/s for 4 s, GET/SET).
    assert {c: result.official_at_rate[c]["requests"] for c in ("get", "set")} == {
        "get": 1000,
        "set": 1000,
    }
    assert result.ratios["get_service_p50_vs_official_at_rate"] > 0


def test_latency_timeline_around_a_sentinel_failover(
    shared_sentinel: Deployment, tmp_path: Path
) -> None:
    deployment = shared_sentinel  # fails over at down-after 1000 ms
    result = run_load(
        _plan(deployment, tmp_path, duration_s=26, drill="kill-master", drill_after_s=5, rate=500),
        deployment.engine,
    )
    assert result.drill is not None and result.drill["failover"] is True
    assert result.drill["writes"]["acknowledged_lost"] == 0
    window = result.fault_window
    assert window is not None and window["baseline_requests_per_s"] > 0
    assert window["worst_p99_us_after_fault"] > window["baseline_p99_us"]  # the fault shows
    assert window["errors_after_fault"] > 0  # requests failed while there was no master
    assert result.plot is not None and result.plot.stat().st_size > 10_000
