"""Locust entry point: `locust -f loadtests/locustfile.py --headless ...`.

Environment:
    REDIS_INFRA_CONNECTION     connection file written by `redis-infra up` (required)
    REDIS_INFRA_PROFILE        mixed (default) | session | cache | ratelimit | leaderboard |
                               counters | pubsub | bench
    REDIS_INFRA_RATE_PER_PROCESS  requests/s per worker process: an open-loop (SLO) run,
                               one Locust user per process; unset: a closed loop (capacity)
    REDIS_INFRA_RATE           the whole run's rate, for the verdict (default: per process x 1)
    REDIS_INFRA_CONNECTIONS_PER_PROCESS  connections (virtual users) of an open-loop process
    REDIS_INFRA_SUMMARY        exact summary JSON to write (default reports/load/summary.json)
    REDIS_INFRA_TIMELINE       per-second timeline JSON (default next to the summary)
    REDIS_INFRA_SLO            SLO file: a missed target exits 1, an inconclusive run 4
    REDIS_INFRA_DURATION_S     the run's length (default 30): an open-loop schedule fills
                               it, less a warm-up and a drain; keep it equal to -t
    REDIS_INFRA_PROCESSES      worker processes expected (a missing one: inconclusive)
"""

# Locust first: it patches the standard library for gevent before anything loads.
import locust  # noqa: F401, I001

import os
from pathlib import Path
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from infra.operations.reports import write_json
from loadtests import users
from loadtests.recording import UNFINISHED, Recorder
from loadtests.scenarios import PROFILES
from loadtests.slo import Slo, SloFileError, judge, load_slo

_profile = os.environ.get("REDIS_INFRA_PROFILE", "mixed")
if _profile not in PROFILES:
    raise SystemExit(f"REDIS_INFRA_PROFILE={_profile!r} is not one of {', '.join(PROFILES)}")
_rate_per_process = float(os.environ.get("REDIS_INFRA_RATE_PER_PROCESS", "0") or 0)
# Locust runs the User classes it finds here: the open-loop dispatcher, or the profile's
# closed-loop users.
if _rate_per_process > 0:
    OpenLoopUser = users.OpenLoopUser
else:
    globals().update({user.__name__: user for user in users.closed_loop_users(_profile)})

_collected = Recorder()  # the master's (or a local run's) merge of every worker's timings


def _ship(client_id: str, data: dict[str, Any]) -> None:
    data["redis_infra"] = users.recorder().take(f"worker-{os.getpid()}")


def _collect(client_id: str, data: dict[str, Any]) -> None:
    _collected.merge(data.get("redis_infra") or {})


def _started(environment: Environment, **_: Any) -> None:
    users.connection_info()  # fail early, with its message, if the file is unusable


def _harness_problems(environment: Environment, summary: dict[str, Any]) -> list[str]:
    """What makes the figures untrustworthy whatever Redis did."""
    problems = []
    runner = environment.runner
    for failure in runner.exceptions.values() if runner else []:
        problems.append(
            f"a virtual user raised {failure['msg']!r} ({failure['count']} times): its requests "
            "were not all made. Fix: what locust.log shows"
        )
    ours = sum(
        figures["count"]
        for name, figures in summary["request_types"].items()
        if not name.endswith(".deliver") and name != UNFINISHED
    )
    if ours != summary["locust_requests"]:
        problems.append(
            f"the exact records hold {ours} requests, Locust counted "
            f"{summary['locust_requests']}: some reports were lost. Fix: a longer --duration"
        )
    return problems


def _summarize(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    if not isinstance(environment.runner, MasterRunner):
        _collected.merge(users.recorder().take("local"))
    workers = len(_collected.cpu_by_worker) or 1
    summary = _collected.summary(_collected.measured_seconds(), workers)
    summary["profile"] = _profile
    summary["mode"] = "slo" if _rate_per_process > 0 else "capacity"
    summary["locust_requests"] = environment.stats.total.num_requests
    summary["expected_workers"] = int(os.environ.get("REDIS_INFRA_PROCESSES", "0") or workers)
    rate = float(os.environ.get("REDIS_INFRA_RATE", "0") or 0) or None
    if rate is None and _rate_per_process > 0:
        rate = _rate_per_process * workers
    summary["target_rate"] = rate
    summary_path = Path(os.environ.get("REDIS_INFRA_SUMMARY", "reports/load/summary.json"))
    timeline_path = Path(
        os.environ.get("REDIS_INFRA_TIMELINE", str(summary_path.with_name("timeline.json")))
    )
    write_json(timeline_path, _collected.timeline())
    slo: Slo | None = None
    slo_file = os.environ.get("REDIS_INFRA_SLO")
    if slo_file:
        try:
            slo = load_slo(Path(slo_file))
        except SloFileError as exc:
            print(f"SLO: {exc}")
            environment.process_exit_code = 2
            write_json(summary_path, summary)
            return
    verdict = judge(summary, slo, rate, _harness_problems(environment, summary))
    summary["verdict"] = verdict.to_json()
    for reason in verdict.reasons:
        print(f"{verdict.status}: {reason}")
    environment.process_exit_code = verdict.code
    write_json(summary_path, summary)


events.report_to_master.add_listener(_ship)
events.worker_report.add_listener(_collect)
events.test_start.add_listener(_started)
events.quitting.add_listener(_summarize)
