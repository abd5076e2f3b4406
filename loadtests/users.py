"""Locust users that drive the virtual users: a closed loop (capacity) or an open one.

- `ClosedLoopUser` (capacity runs): one virtual user per Locust user, one request
  after the other with no think time. It measures throughput; its percentiles
  include the generator's own queueing and are never judged.
- `OpenLoopUser` (SLO runs): one per worker process. It holds that process's
  virtual users (connections) and dispatches requests at a fixed rate from one
  scheduling loop; each request carries its intended start, and one that found no
  free connection waits, its wait counted in its latency (coordinated omission).

`import locust` must come before this module (gevent's monkey patching).
"""

from __future__ import annotations

import os
import time
from collections import deque
from functools import cache
from pathlib import Path
from typing import Any

import gevent
from locust import User, constant, task

from infra.core.connection import ConnectionInfo, read_connection_file
from loadtests.clock import Sleeper
from loadtests.recording import UNFINISHED, Recorder
from loadtests.routing import Router, router_for
from loadtests.scenarios import PROFILES, PubSubUser, VirtualUser, mix
from loadtests.wire import Watchdog

CONNECTION_ENV = "REDIS_INFRA_CONNECTION"
REQUEST_TIMEOUT_S = 1.0  # a request waiting longer fails: a hung master shows as errors
WARMUP_S = 0.5  # connections made and subscribers subscribed before the schedule starts
DRAIN_S = 1.5  # the schedule ends this long before the run: its last requests finish


@cache
def connection_info() -> ConnectionInfo:
    path = os.environ.get(CONNECTION_ENV)
    if not path:
        raise RuntimeError(
            f"set {CONNECTION_ENV} to the connection file `redis-infra up` wrote, e.g. "
            f"{CONNECTION_ENV}=~/.local/state/redis-infra/NAME/connection.json"
        )
    info = read_connection_file(Path(path).expanduser())
    channels = info.access.get("channels") or []
    if channels:  # publish inside what the application may use
        PubSubUser.prefix = str(channels[0]).rstrip("*")
    return info


@cache
def recorder() -> Recorder:
    """This process's recorder, folded and its CPU sampled once a second."""
    found = Recorder()

    def tick() -> None:
        while True:
            gevent.sleep(1.0)
            found.fold()
            found.sample_cpu()

    gevent.spawn(tick)
    return found


@cache
def router() -> Router:
    """One per process: the topology as this host reaches it."""
    return router_for(connection_info(), Watchdog(REQUEST_TIMEOUT_S))


def _locust_reporter(user: User) -> Any:
    """Requests into Locust's own statistics (its HTML report), the cheapest way in."""
    stats = user.environment.stats

    def report(name: str, milliseconds: float, error: Exception | None) -> None:
        stats.log_request("redis", name, milliseconds, 0)
        if error is not None:
            stats.log_error("redis", name, error)

    return report


class ClosedLoopUser(User):
    """A virtual user issuing requests back to back (see the module's docstring)."""

    abstract = True
    wait_time = constant(0)
    kind: type[VirtualUser] = VirtualUser

    def on_start(self) -> None:
        self.virtual = self.kind(router(), recorder(), _locust_reporter(self))

    @task
    def issue(self) -> None:
        while True:  # one long task: Locust's per-task machinery would cost more than Redis
            self.virtual.step()

    def on_stop(self) -> None:
        self.virtual.stop()


def closed_loop_users(profile: str) -> list[type[ClosedLoopUser]]:
    """One Locust user class per scenario of the profile, weighted like the scenarios."""
    return [
        type(kind.__name__, (ClosedLoopUser,), {"kind": kind, "weight": kind.weight})
        for kind in PROFILES[profile]
    ]


class OpenLoopUser(User):
    """A worker process's schedule: `rate_per_s` requests a second over its connections."""

    wait_time = constant(0)
    profile = os.environ.get("REDIS_INFRA_PROFILE", "mixed")
    rate_per_s = float(os.environ.get("REDIS_INFRA_RATE_PER_PROCESS", "0") or 0)
    duration_s = float(os.environ.get("REDIS_INFRA_DURATION_S", "30"))
    connections = int(os.environ.get("REDIS_INFRA_CONNECTIONS_PER_PROCESS", "20"))

    def on_start(self) -> None:
        report = _locust_reporter(self)
        self.virtual = [
            kind(router(), recorder(), report) for kind in mix(self.profile, self.connections)
        ]
        self.idle: deque[VirtualUser] = deque(self.virtual)
        # (intended start, when the dispatcher queued it): no connection was free for it
        self.backlog: deque[tuple[int, int]] = deque()
        self.schedule: tuple[int, float, int] | None = None  # start, interval, total
        self.dispatched = 0

    @task
    def dispatch(self) -> None:
        """Every request due by now goes to a free connection, or waits in the backlog.

        The schedule is finite: it ends `DRAIN_S` before the run does, so every request
        it asked for has had time to finish (or to time out) before Locust stops it, and
        "achieved" compares what finished with what was asked.
        """
        interval_ns = 1e9 / self.rate_per_s
        start = time.perf_counter_ns() + int(WARMUP_S * 1e9)
        length_s = max(1.0, self.duration_s - WARMUP_S - DRAIN_S)
        total = int(self.rate_per_s * length_s)
        recorder().scheduled(f"worker-{os.getpid()}", start, start + int(length_s * 1e9), total)
        self.schedule = (start, interval_ns, total)
        sleeper = Sleeper()  # to tens of microseconds, where gevent's timers say ~1 ms
        while self.dispatched < total:
            now = time.perf_counter_ns()
            due = start + int(self.dispatched * interval_ns)
            if due > now:
                sleeper.until(due)
                continue
            while due <= now and self.dispatched < total:
                if self.idle:
                    gevent.spawn_raw(self._serve, self.idle.popleft(), due, 0)
                else:
                    self.backlog.append((due, now))
                self.dispatched += 1
                due = start + int(self.dispatched * interval_ns)
        gevent.sleep(DRAIN_S + 60)  # done: Locust ends the run meanwhile

    def _serve(self, virtual: VirtualUser, intended_ns: int, waited_ns: int) -> None:
        try:
            while True:
                virtual.step(intended_ns, waited_ns)
                if not self.backlog:
                    return
                intended_ns, queued_ns = self.backlog.popleft()
                waited_ns = time.perf_counter_ns() - queued_ns
        finally:
            self.idle.append(virtual)  # whatever happened, the connection is free again

    def on_stop(self) -> None:
        """What the schedule asked for and never got counts: each request still waiting
        for a connection, or due and never dispatched, is an error timed to now; those
        in flight fail when their connection closes, timed the same way."""
        now = time.perf_counter_ns()
        late = [due for due, _ in self.backlog]
        if self.schedule is not None:
            start, interval_ns, total = self.schedule
            for index in range(self.dispatched, total):
                due = start + int(index * interval_ns)
                if due > now:
                    break
                late.append(due)
        self.backlog.clear()
        kept = recorder()
        type_id = kept.type_id(UNFINISHED, "schedule")
        for due in late:
            kept.record(type_id, due, now, now, False)
        for virtual in self.virtual:
            virtual.stop()
        gevent.sleep(0)  # let the requests in flight see their closed sockets and record
