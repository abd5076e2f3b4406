"""Run a named drill against a deployment (the `redis-infra drill` command)."""

from __future__ import annotations

import statistics
from typing import Any

import docker

from infra.core.connection import ConnectionInfo
from infra.core.errors import ConfigError
from infra.operations.drills.base import Drill
from infra.operations.drills.cluster import SCENARIOS as CLUSTER_SCENARIOS
from infra.operations.drills.cluster import ClusterDrill
from infra.operations.drills.report import DrillReport
from infra.operations.drills.sentinel import SCENARIOS as SENTINEL_SCENARIOS
from infra.operations.drills.sentinel import SentinelDrill

SCENARIOS: dict[str, tuple[str, ...]] = {
    "sentinel": SENTINEL_SCENARIOS,
    "cluster": CLUSTER_SCENARIOS,
}
DRILLS: dict[str, type[Drill]] = {"sentinel": SentinelDrill, "cluster": ClusterDrill}


def run_drill(info: ConnectionInfo, engine: docker.DockerClient, scenario: str) -> DrillReport:
    known = SCENARIOS.get(info.topology)
    if known is None:
        raise ConfigError.single(
            "--name",
            "topology",
            f"deployment {info.name} is a {info.topology} topology, which has no failover to drill",
            "drill a sentinel or cluster deployment",
        )
    if scenario not in known:
        raise ConfigError.single(
            "--scenario",
            "scenario",
            f"{scenario!r} is not a {info.topology} drill",
            f"use one of {', '.join(known)}",
        )
    return DRILLS[info.topology](info, engine).run(scenario)


def summarize(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the figures that vary from run to run."""
    figures: dict[str, list[float]] = {}

    def add(name: str, value: object) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            figures.setdefault(name, []).append(float(value))

    for report in reports:
        writes = report.get("writes") or {}
        add("time_to_new_master_s", report.get("time_to_new_master_s"))
        add("write_outage_s", writes.get("write_outage_s"))
        add("acknowledged_lost", writes.get("acknowledged_lost"))
        add("indeterminate", writes.get("indeterminate"))
        for key in ("stale_master_acknowledged", "stale_master_lost", "loss_window_s"):
            add(key, report["details"].get(key))
    return {
        "runs": len(reports),
        "failovers": sum(1 for report in reports if report.get("failover")),
        "median": {name: round(statistics.median(values), 4) for name, values in figures.items()},
    }
