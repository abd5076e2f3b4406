"""`redis-infra load`: run the Locust scenarios against a deployment, bounded in time,
optionally with a drill in the middle, and collect the exact summary and timeline.

Two kinds of run (loadtests/users.py): a *capacity* run (a closed loop of `users`
virtual users) reports throughput and errors; an *SLO* run (`rate` requests/s,
open loop, over `users` connections) is judged by the SLO file, after the
validity gate (loadtests/slo.py). Around the run, Redis's own per-command
figures are read as the operator (infra/load/server_stats.py).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from infra.assets import LOCUSTFILE
from infra.core.connection import OPERATOR_FILE, MissingCredentialsError, read_connection_file
from infra.core.errors import ConfigError, DeploymentError, Problem
from infra.load.server_stats import SETTLE_TIMEOUT_S, difference, snapshot, wait_until_settled
from infra.operations.reports import write_json
from loadtests.slo import SloFileError, load_slo

PROFILES = ("mixed", "session", "cache", "ratelimit", "leaderboard", "counters", "pubsub", "bench")
MAX_DURATION_S = 3600
MAX_RATE_PER_PROCESS = 100_000


@dataclass(frozen=True)
class LoadPlan:
    connection_file: Path
    profile: str = "mixed"
    users: int = 50  # capacity: concurrent virtual users; SLO run: connections
    duration_s: int = 30
    processes: int = 1
    slo_file: Path | None = None
    out_dir: Path = Path("reports/load")
    drill: str | None = None  # a drill scenario to run in the middle of the load
    drill_after_s: float = 10.0
    rate: float | None = None  # requests/s of an SLO run (all processes); None: capacity
    operator_file: Path | None = None  # for a drill during the load and Redis's own figures

    def check(self) -> None:
        problems = []
        if self.profile not in PROFILES:
            problems.append(
                Problem(
                    "--profile",
                    f"{self.profile!r} is not a profile",
                    f"use one of {', '.join(PROFILES)}",
                )
            )
        if not 1 <= self.users <= 10_000:
            problems.append(
                Problem("--users", f"{self.users} is outside 1-10000", "pick a user count in range")
            )
        if not 1 <= self.duration_s <= MAX_DURATION_S:
            problems.append(
                Problem(
                    "--duration",
                    f"{self.duration_s} s is outside 1-{MAX_DURATION_S}",
                    "runs are bounded",
                )
            )
        if not 1 <= self.processes <= (os.cpu_count() or 1) * 2:
            problems.append(
                Problem(
                    "--processes",
                    f"{self.processes} is not 1..{(os.cpu_count() or 1) * 2}",
                    "use one worker process per core",
                )
            )
        if self.rate is not None and not 0 < self.rate <= MAX_RATE_PER_PROCESS * self.processes:
            problems.append(
                Problem(
                    "--rate",
                    f"{self.rate:g} requests/s is not in 1-{MAX_RATE_PER_PROCESS} per process",
                    "ask for a rate the processes can be given",
                )
            )
        if self.slo_file is not None and not self.slo_file.is_file():
            problems.append(
                Problem("--slo", f"{self.slo_file} does not exist", "point it at a YAML SLO file")
            )
        elif self.slo_file is not None:
            try:  # before any generator starts: its errors would land in its log
                load_slo(self.slo_file)
            except SloFileError as exc:
                problems.append(Problem("--slo", str(exc), "fix the SLO file"))
        if self.drill and self.duration_s < self.drill_after_s + 20:
            problems.append(
                Problem(
                    "--duration",
                    f"{self.duration_s} s leaves no room for a drill at {self.drill_after_s:g} s",
                    f"use at least {self.drill_after_s + 20:g} s",
                )
            )
        if problems:
            raise ConfigError("load options", problems)


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
    # An SLO run has one Locust user per process: the dispatcher of its share of the rate.
    users = plan.processes if plan.rate else plan.users
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{plan.duration_s}s",
        # No --stop-timeout: users stop at once (each runs one endless task); requests
        # in flight still finish and are counted.
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


def locust_environment(plan: LoadPlan, summary_file: Path, timeline_file: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "REDIS_INFRA_CONNECTION": str(plan.connection_file.resolve()),
        "REDIS_INFRA_PROFILE": plan.profile,
        "REDIS_INFRA_SUMMARY": str(summary_file.resolve()),
        "REDIS_INFRA_TIMELINE": str(timeline_file.resolve()),
        "PYTHONPATH": str(LOCUSTFILE.parent.parent),
    }
    env["REDIS_INFRA_DURATION_S"] = str(plan.duration_s)
    env["REDIS_INFRA_PROCESSES"] = str(plan.processes)
    if plan.rate:
        env["REDIS_INFRA_RATE"] = str(plan.rate)
        env["REDIS_INFRA_RATE_PER_PROCESS"] = str(plan.rate / plan.processes)
        env["REDIS_INFRA_CONNECTIONS_PER_PROCESS"] = str(math.ceil(plan.users / plan.processes))
    if plan.slo_file:
        env["REDIS_INFRA_SLO"] = str(plan.slo_file.resolve())
    return env


def run_load(plan: LoadPlan, engine: docker.DockerClient | None = None) -> LoadResult:
    plan.check()
    # The operator's credentials (a drill, Redis's own figures) are beside the file.
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
    notes = []
    if operator.exists():  # only the operator may read what the nodes are doing
        still = wait_until_settled(info)
        if still:
            notes.append(f"the deployment had not settled after {SETTLE_TIMEOUT_S:.0f} s: {still}")
    server_before = _server_snapshot(info)
    # Locust's own tables (milliseconds, rounded, from its request events) would sit
    # beside ours and disagree: its output goes to a log in the report folder.
    log_file = plan.out_dir / "locust.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            locust_command(plan),
            env=locust_environment(plan, summary_file, timeline_file),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        drill_report: dict[str, Any] | None = None
        try:
            if plan.drill:
                drill_report = _drill_during_load(info, engine, plan)
            exit_code = process.wait(timeout=plan.duration_s + 120)
        except BaseException:
            process.kill()
            raise
    if not summary_file.exists():
        tail = log_file.read_text(errors="replace").strip().splitlines()[-15:]
        raise DeploymentError(
            f"locust exited {exit_code} without a summary; the end of {log_file}:\n"
            + "\n".join(tail)
        )
    summary = json.loads(summary_file.read_text())
    if server_before is not None:
        summary["server"] = difference(server_before, snapshot(info, list(server_before)))
        write_json(summary_file, summary)
    result = LoadResult(
        exit_code=exit_code,
        summary=summary,
        summary_file=summary_file,
        timeline_file=timeline_file,
        html_report=plan.out_dir / "locust-report.html",
        drill=drill_report,
        notes=notes,
    )
    if drill_report is not None:
        timeline = json.loads(timeline_file.read_text())
        fault_at = float(drill_report["details"]["fault_at_epoch"])
        result.fault_window = fault_window(timeline, fault_at)
        result.plot = plot_timeline(timeline, fault_at, drill_report, plan.out_dir / "timeline.png")
        write_json(plan.out_dir / "drill.json", drill_report)
    return result


def _server_snapshot(info: Any) -> Any:
    """Redis's counters before the run, where the operator's credentials are at hand."""
    try:
        return snapshot(info)
    except MissingCredentialsError:
        return None


def _drill_during_load(info: Any, engine: Any, plan: LoadPlan) -> dict[str, Any]:
    from infra.operations.drills.run import run_drill

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
