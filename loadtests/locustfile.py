"""Locust entry point: `locust -f loadtests/locustfile.py --headless ...`.

Environment:
    REDIS_INFRA_CONNECTION  connection file written by `redis-infra up` (required)
    REDIS_INFRA_PROFILE     mixed (default) | session | cache | ratelimit | leaderboard |
                            counters | pubsub | bench
    REDIS_INFRA_SUMMARY     exact summary JSON to write (default reports/load/summary.json)
    REDIS_INFRA_TIMELINE    per-second timeline JSON (default next to the summary)
    REDIS_INFRA_SLO         SLO file; a missed target makes the run exit 1
"""

# Locust first: it patches the standard library for gevent before redis-py loads.
import locust  # noqa: F401, I001

import os
import time
from pathlib import Path
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from infra.reports import write_json
from loadtests import scenarios
from loadtests.redis_user import RedisUser, recorder
from loadtests.slo import SloFileError, check, load_slo

PROFILES: dict[str, list[type[RedisUser]]] = {
    "session": [scenarios.SessionUser],
    "cache": [scenarios.CacheUser],
    "ratelimit": [scenarios.RateLimitUser],
    "leaderboard": [scenarios.LeaderboardUser],
    "counters": [scenarios.CounterUser],
    "pubsub": [scenarios.PubSubUser],
    "bench": [scenarios.BenchUser],
}
PROFILES["mixed"] = [users[0] for name, users in PROFILES.items() if name != "bench"]

_profile = os.environ.get("REDIS_INFRA_PROFILE", "mixed")
if _profile not in PROFILES:
    raise SystemExit(f"REDIS_INFRA_PROFILE={_profile!r} is not one of {', '.join(PROFILES)}")
# Locust runs the User classes it finds here: exactly the profile's.
globals().update({user.__name__: user for user in PROFILES[_profile]})

_run: dict[str, float] = {}
_workers: set[str] = set()  # worker processes that reported (the master's count drops at quit)


def _ship(client_id: str, data: dict[str, Any]) -> None:
    data["redis_infra"] = recorder().take()


def _collect(client_id: str, data: dict[str, Any]) -> None:
    _workers.add(client_id)
    recorder().merge(data.get("redis_infra") or {})


def _started(environment: Environment, **_: Any) -> None:
    _run["start"] = time.time()


def _stopped(environment: Environment, **_: Any) -> None:
    _run["stop"] = time.time()


def _summarize(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    workers = len(_workers) if isinstance(environment.runner, MasterRunner) else 1
    seconds = _run.get("stop", time.time()) - _run.get("start", time.time())
    summary = recorder().summary(seconds, workers)
    summary["profile"] = _profile
    # Locust's own count of the same requests (pub/sub deliveries are ours alone), as
    # a cross-check that the exact histograms saw every request.
    summary["locust_requests"] = environment.stats.total.num_requests
    summary_path = Path(os.environ.get("REDIS_INFRA_SUMMARY", "reports/load/summary.json"))
    timeline_path = Path(
        os.environ.get("REDIS_INFRA_TIMELINE", str(summary_path.with_name("timeline.json")))
    )
    write_json(timeline_path, recorder().timeline())
    slo_file = os.environ.get("REDIS_INFRA_SLO")
    if slo_file:
        try:
            misses = check(load_slo(Path(slo_file)), summary)
        except SloFileError as exc:
            print(f"SLO: {exc}")
            environment.process_exit_code = 2
            write_json(summary_path, summary)
            return
        summary["slo"] = {
            "file": slo_file,
            "passed": not misses,
            "missed": [str(m) for m in misses],
        }
        for miss in misses:
            print(f"SLO missed: {miss}")
        if misses:
            environment.process_exit_code = 1
        else:
            print(f"SLO: every target in {slo_file} met")
    write_json(summary_path, summary)


events.report_to_master.add_listener(_ship)
events.worker_report.add_listener(_collect)
events.test_start.add_listener(_started)
events.test_stop.add_listener(_stopped)
events.quitting.add_listener(_summarize)
