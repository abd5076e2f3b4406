"""The official client at a fixed rate: the anchor next to an SLO run of ours.

redis-benchmark `-c 1` keeps one request in flight back to back, so both machines'
cores never idle; at a fixed rate below capacity they do, and every request pays
for waking them (tens of microseconds on a VM). redis-py, as an application uses it
(a `Redis` client and its pool, GET and SET of a small value), paced at the same
rate from one thread, shows what that rate costs any client: our service time is
judged against it as well as against the hot floor.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import numpy as np

from infra.core.connection import ConnectionInfo, NodeAddress
from infra.operations.client import cluster_client, node_client


def paced_official_client(
    info: ConnectionInfo, target: NodeAddress, rate: float, duration_s: float
) -> dict[str, dict[str, float]]:
    """GET and SET alternately at `rate` requests/s for `duration_s`: per command, the
    requests made and the p50/p99 of send-to-reply in microseconds."""
    client: Any = cluster_client(info) if info.topology == "cluster" else node_client(info, target)
    key = f"bench:paced:{secrets.token_hex(4)}"
    client.set(key, "xyz")
    interval_ns = int(1e9 / rate)
    count = int(rate * duration_s)
    timings = {"get": np.empty(count // 2 + 1), "set": np.empty(count // 2 + 1)}
    done = {"get": 0, "set": 0}
    due = time.perf_counter_ns()
    try:
        for i in range(count):
            due += interval_ns
            wait_ns = due - time.perf_counter_ns()
            if wait_ns > 0:
                time.sleep(wait_ns / 1e9)
            command = "get" if i % 2 == 0 else "set"
            started = time.perf_counter_ns()
            client.get(key) if command == "get" else client.set(key, "xyz")
            timings[command][done[command]] = (time.perf_counter_ns() - started) / 1000
            done[command] += 1
        client.delete(key)
    finally:
        client.close()
    return {
        command: {
            "requests": float(done[command]),
            "p50_us": round(float(np.percentile(values[: done[command]], 50)), 1),
            "p99_us": round(float(np.percentile(values[: done[command]], 99)), 1),
        }
        for command, values in timings.items()
        if done[command]
    }
