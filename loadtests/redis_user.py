"""The abstract Locust user for Redis: a client from the connection file, and every
request timed twice (Locust's event for its reports, our HDR histogram for exact
percentiles). `import locust` must come before this module (gevent patching)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from locust import User, constant
from redis.cluster import RedisCluster

from infra.client import cluster_client, connect
from infra.connection import ConnectionInfo, read_connection_file
from loadtests.latency import Recorder
from redis import Redis

CONNECTION_ENV = "REDIS_INFRA_CONNECTION"
T = TypeVar("T")


@cache
def connection_info() -> ConnectionInfo:
    path = os.environ.get(CONNECTION_ENV)
    if not path:
        raise RuntimeError(
            f"set {CONNECTION_ENV} to the connection file `redis-infra up` wrote, e.g. "
            f"{CONNECTION_ENV}=~/.local/state/redis-infra/NAME/connection.json"
        )
    return read_connection_file(Path(path).expanduser())


@cache
def shared_client() -> Redis | RedisCluster:
    """One client per process, shared by its users: its pool holds a connection per
    concurrent request, as an application server's would."""
    info = connection_info()
    if info.topology == "cluster":
        return cluster_client(info, socket_timeout=2.0)
    return connect(info, socket_timeout=2.0)


@cache
def recorder() -> Recorder:
    return Recorder()


class RedisUser(User):
    """A user whose requests are Redis commands through the project's client factory."""

    abstract = True
    # Think time between tasks; 0 (default) is a closed loop measuring capacity.
    wait_time = constant(float(os.environ.get("REDIS_INFRA_WAIT_MS", "0")) / 1000)
    scenario = "redis"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.redis = shared_client()
        # Untimed: opening this user's TLS connection is not a request of the scenario.
        self.redis.ping()

    def timed(self, name: str, call: Callable[[], T]) -> T | None:
        """Run one request; report it to Locust and to the exact recorder."""
        started = time.perf_counter()
        try:
            result = call()
        except Exception as exc:  # any failure is this request's error, the run goes on
            self._report(name, started, exc)
            return None
        self._report(name, started, None)
        return result

    def _report(self, name: str, started: float, error: Exception | None) -> None:
        elapsed = time.perf_counter() - started
        recorder().record(self.scenario, name, elapsed * 1_000_000, error is None)
        self.environment.events.request.fire(
            request_type="redis",
            name=name,
            response_time=elapsed * 1000,
            response_length=0,
            exception=error,
            context={},
        )
