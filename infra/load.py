"""`redis-infra load`: run the Locust scenarios against a deployment, bounded in time,
optionally with a drill in the middle, and collect the exact summary and timeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from infra.connection import OPERATOR_FILE, read_connection_file
from infra.errors import ConfigError, DeploymentError
from infra.reports import write_json

LOCUSTFILE = Path(__file__).resolve().parent.parent / "loadtests" / "locustfile.py"
PROFILES = ("mixed", "session", "cache", "ratelimit", "leaderboard", "counters", "pubsub", "bench")
MAX_DURATION_S = 3600


@dataclass(frozen=True)
class LoadPlan:
    connection_file: Path
    profile: str = "mixed"
    users: int = 50
    duration_s: int = 30
    processes: int = 1
    slo_file: Path | None = None
    out_dir: Path = Path("reports/load")
    drill: str | None = None  # a drill scenario to run in the middle of the load
    drill_after_s: float = 10.0
    wait_ms: float = 0.0  # think time per user between tasks (0: closed loop, capacity)
    operator_file: Path | None = None  # for a drill during the load

    def check(self) -> None:
        problems = []
        if self.profile not in PROFILES:
            problems.append(
                (
                    "--profile",
                    f"{self.profile!r} is not a profile",
                    f"use one of {', '.join(PROFILES)}",
                )
            )
        if not 1 <= self.users <= 10_000:
            problems.append(
                ("--users", f"{self.users} is outside 1-10000", "pick a user count in range")
            )
        if not 1 <= self.duration_s <= MAX_DURATION_S:
            problems.append(
                (
                    "--duration",
                    f"{self.duration_s} s is outside 1-{MAX_DURATION_S}",
                    "runs are bounded",
                )
            )
        if not 1 <= self.processes <= (os.cpu_count() or 1) * 2:
            problems.append(
                (
                    "--processes",
                    f"{self.processes} is not 1..{(os.cpu_count() or 1) * 2}",
                    "use one worker process per core",
                )
            )
        if self.slo_file is not None and not self.slo_file.is_file():
            problems.append(
                ("--slo", f"{self.slo_file} does not exist", "point it at a YAML SLO file")
            )
        if self.drill and self.duration_s < self.drill_after_s + 20:
            problems.append(
                (
                    "--duration",
                    f"{self.duration_s} s leaves no room for a drill at {self.drill_after_s:g} s",
                    f"use at least {self.drill_after_s + 20:g} s",
                )
            )
        if problems:
            from infra.errors import Problem

            raise ConfigError("load options", [Problem(f, r, x) for f, r, x in problems])


@dataclass
class LoadResult:
    exit_code: int
    summary: dict[str, Any]
    summary_file: Path
    timeline_file: Path
    html_report: Path
    drill: dict[str, Any] | None = None
    fault_window: dict[str, Any] | None = None
    plot: Path | None = None
    notes: list[str] = field(default_factory=list)


def locust_command(plan: LoadPlan) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(plan.users),
        "--spawn-rate",
        str(plan.users),
        "--run-time",
        f"{plan.duration_s}s",
        "--stop-timeout",
        "5",
        "--csv",
        str(plan.out_dir / "locust"),
        "--html",
        str(plan.out_dir / "locust-report.html"),
        "--only-summary",
        "--loglevel",
        "WARNING",
        # Failed requests are measured, not fatal: the SLO file (max_error_ratio) decides.
        "--exit-code-on-error",
        "0",
    ]
    if plan.processes > 1:
        command += ["--processes", str(plan.processes)]
    return command


def run_load(plan: LoadPlan, engine: docker.DockerClient | None = None) -> LoadResult:
    plan.check()
    # The drill (if any) needs the operator's credentials, kept beside the connection file.
    operator = plan.operator_file or plan.connection_file.parent / OPERATOR_FILE
    info = read_connection_file(
        plan.connection_file, operator_file=operator if operator.exists() else None
    )
    if plan.drill and engine is None:
        raise DeploymentError("a drill during the load needs the Docker engine")
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    summary_file = plan.out_dir / "summary.json"
    timeline_file = plan.out_dir / "timeline.json"
    for stale in (summary_file, timeline_file):
        stale.unlink(missing_ok=True)
    env = {
        **os.environ,
        "REDIS_INFRA_CONNECTION": str(plan.connection_file.resolve()),
        "REDIS_INFRA_PROFILE": plan.profile,
        "REDIS_INFRA_SUMMARY": str(summary_file.resolve()),
        "REDIS_INFRA_TIMELINE": str(timeline_file.resolve()),
        "PYTHONPATH": str(LOCUSTFILE.parent.parent),
        "REDIS_INFRA_WAIT_MS": str(plan.wait_ms),
    }
    if plan.slo_file:
        env["REDIS_INFRA_SLO"] = str(plan.slo_file.resolve())
    process = subprocess.Popen(locust_command(plan), env=env)
    drill_report: dict[str, Any] | None = None
    try:
        if plan.drill:
            drill_report = _drill_during_load(info, engine, plan)
        exit_code = process.wait(timeout=plan.duration_s + 120)
    except BaseException:
        process.kill()
        raise
    if not summary_file.exists():
        raise DeploymentError(f"locust exited {exit_code} without a summary; see its output above")
    result = LoadResult(
        exit_code=exit_code,
        summary=json.loads(summary_file.read_text()),
        summary_file=summary_file,
        timeline_file=timeline_file,
        html_report=plan.out_dir / "locust-report.html",
        drill=drill_report,
    )
    if drill_report is not None:
        timeline = json.loads(timeline_file.read_text())
        fault_at = float(drill_report["details"]["fault_at_epoch"])
        result.fault_window = fault_window(timeline, fault_at)
        result.plot = plot_timeline(timeline, fault_at, drill_report, plan.out_dir / "timeline.png")
        write_json(plan.out_dir / "drill.json", drill_report)
    return result


def _drill_during_load(info: Any, engine: Any, plan: LoadPlan) -> dict[str, Any]:
    from infra.drills.run import run_drill

    time.sleep(plan.drill_after_s)
    outcome: dict[str, Any] = {}

    def drill() -> None:
        try:
            outcome["report"] = run_drill(info, engine, str(plan.drill)).to_json()
        except Exception as exc:  # handed to the caller, with its own message
            outcome["error"] = exc

    worker = threading.Thread(target=drill, name="drill")
    worker.start()
    worker.join(timeout=plan.duration_s + 60)
    if "error" in outcome:
        raise outcome["error"]
    if "report" not in outcome:
        raise DeploymentError(f"drill {plan.drill} did not finish during the load run")
    return dict(outcome["report"])


def fault_window(
    timeline: list[dict[str, Any]], fault_at: float, before: int = 5, after: int = 20
) -> dict[str, Any]:
    """Per-second figures from `before` s ahead of the fault to `after` s past it."""
    start = int(fault_at)
    rows = [
        dict(row, t=row["second"] - start)
        for row in timeline
        if -before <= row["second"] - start <= after
    ]
    baseline = [row for row in rows if row["t"] < 0]
    during = [row for row in rows if row["t"] >= 0]

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 1) if values else None

    return {
        "seconds": rows,
        "baseline_requests_per_s": mean([row["requests"] for row in baseline]),
        "baseline_p99_us": mean([row["p99_us"] for row in baseline if row["p99_us"]]),
        "worst_p99_us_after_fault": max((row["p99_us"] or 0 for row in during), default=None),
        "errors_after_fault": sum(row["errors"] for row in during),
        "seconds_below_half_throughput": sum(
            1
            for row in during
            if baseline
            and row["requests"] < 0.5 * (sum(r["requests"] for r in baseline) / len(baseline))
        ),
    }


def plot_timeline(
    timeline: list[dict[str, Any]], fault_at: float, drill: dict[str, Any], path: Path
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = timeline[0]["second"] if timeline else int(fault_at)
    t = [row["second"] - start for row in timeline]
    fig, (rps, err, p99) = plt.subplots(3, 1, sharex=True, figsize=(10, 7))
    rps.plot(t, [row["requests"] for row in timeline], color="tab:blue")
    rps.set_ylabel("requests/s")
    err.bar(t, [row["errors"] for row in timeline], color="tab:red")
    err.set_ylabel("errors/s")
    p99.plot(t, [(row["p99_us"] or 0) / 1000 for row in timeline], color="tab:purple")
    p99.set_ylabel("p99 (ms)")
    p99.set_yscale("log")
    p99.set_xlabel("seconds since the load started")
    for axis in (rps, err, p99):
        axis.axvline(fault_at - start, color="black", linestyle="--", linewidth=1)
        axis.grid(alpha=0.3)
    writes = drill.get("writes") or {}
    fig.suptitle(
        f"{drill['scenario']} on {drill['deployment']} ({drill['topology']}): "
        f"new master after {drill.get('time_to_new_master_s')} s, "
        f"write outage {writes.get('write_outage_s')} s, lost {writes.get('acknowledged_lost')}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
