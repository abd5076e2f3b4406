"""`redis-infra bench`: the harness next to redis-benchmark, at the same concurrency
and at the same fixed rate.

redis-benchmark (C, TLS, an ACL user) and the Locust `bench` profile (GET and SET of
a small value) run against the same node:

- at the same concurrency (`clients`, closed loop): the throughput ratio is what the
  generator costs, since both keep `clients` requests in flight;
- one request at a time (`redis-benchmark -c 1`), whose latency is the floor any
  client can reach, next to an open-loop run of ours at `rate` requests/s: its
  service time (send to reply) against that floor says what our client adds;
- and the official client (redis-py) paced at that same rate (infra/load/paced_client.py):
  below capacity the cores idle between requests, and waking them is paid by any
  client, so this is the floor at the rate.

redis-benchmark only takes a password on its command line, where every user of the
host can read it (`ps`). So it runs as a temporary ACL user with no password at
all, allowed only GET, SET and PING on `key:*` (and reading a Cluster's slot map),
for the length of the run, then deleted. Single and Sentinel ask a client
certificate of every connection first; a Cluster does not (its clients hold none),
so there, during a run, anyone who can reach a node's port may use that user
within those limits. A run killed before it could clean up leaves the user
behind: the next `bench` deletes it, and `verify` reports it meanwhile. Making the
user is an ACL change, which only the break-glass user may do.
"""

from __future__ import annotations

import csv
import io
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.core.connection import ConnectionInfo, NodeAddress
from infra.core.errors import DeploymentError, EngineError
from infra.load.paced_client import paced_official_client
from infra.load.runner import LoadPlan, run_load
from infra.operations.client import node_client
from infra.operations.observe_sentinel import group_state

BENCH_USER_PREFIX = "bench-"


@dataclass(frozen=True)
class BenchResult:
    redis_benchmark: dict[str, dict[str, float]]  # test -> rps, p50_ms, p99_ms
    locust: dict[str, Any]  # the capacity run's summary
    ratios: dict[str, float]  # ours / redis-benchmark
    floor: dict[str, dict[str, float]]  # redis-benchmark -c 1
    slo_run: dict[str, Any]  # our open-loop run at a fixed rate
    official_at_rate: dict[str, dict[str, float]]  # redis-py paced at the same rate


def _target(info: ConnectionInfo) -> NodeAddress:
    """The node that takes writes: the master (single, Sentinel) or any node (Cluster)."""
    if info.topology == "sentinel":
        return info.node(group_state(info).masters()[0])
    return info.data_nodes()[0]


def run_redis_benchmark(
    info: ConnectionInfo, clients: int, requests: int
) -> dict[str, dict[str, float]]:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise EngineError("redis-benchmark is not installed. Fix: apt-get install -y redis-tools")
    user = f"{BENCH_USER_PREFIX}{secrets.token_hex(3)}"
    nodes = info.data_nodes() if info.topology == "cluster" else [_target(info)]
    # No CONFIG GET (it would show masterauth): redis-benchmark only warns without it.
    commands = ["+get", "+set", "+ping", "+cluster|nodes", "+cluster|slots"]
    for node in nodes:
        admin = node_client(info, node, role="breakglass", decode_responses=True)
        for stale in map(str, admin.acl_users()):  # left by a run that was killed
            if stale.startswith(BENCH_USER_PREFIX):
                admin.acl_deluser(stale)
        admin.acl_setuser(
            user, reset=True, enabled=True, nopass=True, keys=["key:*"], commands=commands
        )
        admin.close()
    target = _target(info)
    command = [
        binary,
        "-h",
        str(target.host),
        "-p",
        str(target.port),
        "--tls",
        "--cacert",
        info.tls.ca_file,
        *(
            ["--cert", info.tls.cert_file, "--key", info.tls.key_file]
            if info.tls.cert_file and info.tls.key_file
            else []
        ),
        "--user",
        user,
        "-a",
        "no-password",  # redis-benchmark sends --user only with -a; the user has nopass
        "-c",
        str(clients),
        "-n",
        str(requests),
        "-t",
        "set,get",
        "-d",
        "3",
        "-r",
        "100000",
        "--csv",
        "--precision",
        "3",
    ]
    if info.topology == "cluster":
        command.append("--cluster")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    finally:
        for node in nodes:
            admin = node_client(info, node, role="breakglass")
            admin.acl_deluser(user)
            admin.close()
    if done.returncode != 0 or not done.stdout.strip():
        raise DeploymentError(
            f"redis-benchmark failed ({done.returncode}): {done.stderr.strip()[-500:]}"
        )
    # With --cluster, redis-benchmark prints the cluster's layout before the CSV.
    lines = done.stdout.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith('"test"')), None)
    if header is None:
        raise DeploymentError(f"redis-benchmark printed no CSV: {done.stdout[-500:]}")
    rows = list(csv.DictReader(io.StringIO("\n".join(lines[header:]))))
    return {
        row["test"].lower(): {
            "rps": float(row["rps"]),
            "p50_ms": float(row["p50_latency_ms"]),
            "p99_ms": float(row["p99_latency_ms"]),
        }
        for row in rows
    }


def bench(
    info: ConnectionInfo,
    connection_file: Path,
    clients: int,
    duration_s: int,
    out_dir: Path,
    rate: float = 3000.0,
) -> BenchResult:
    """`info` must hold the break-glass credentials; Locust's workers read `connection_file`."""
    capacity = run_load(
        LoadPlan(
            connection_file,
            profile="bench",
            users=clients,
            duration_s=duration_s,
            processes=1,
            out_dir=out_dir / "capacity",
        )
    )
    types = capacity.summary["request_types"]
    requests = int(sum(t["count"] for t in types.values()) / 2) or 10_000
    native = run_redis_benchmark(info, clients, requests)
    fixed = run_load(
        LoadPlan(
            connection_file,
            profile="bench",
            users=min(clients, 20),
            duration_s=duration_s,
            processes=1,
            out_dir=out_dir / "fixed-rate",
            rate=rate,
        )
    )
    floor = run_redis_benchmark(info, 1, max(2000, int(rate * 2)))
    official = paced_official_client(info, _target(info), rate, min(duration_s, 10))
    return BenchResult(
        native,
        capacity.summary,
        _ratios(types, native, fixed.summary, floor, official),
        floor,
        fixed.summary,
        official,
    )


def _ratios(
    ours: dict[str, Any],
    native: dict[str, dict[str, float]],
    fixed: dict[str, Any],
    floor: dict[str, dict[str, float]],
    official: dict[str, dict[str, float]],
) -> dict[str, float]:
    ratios: dict[str, float] = {}
    # redis-benchmark runs all its SETs, then all its GETs; ours mixes them one to one,
    # so its equivalent is the harmonic mean (the time for one of each).
    if all(c in native for c in ("get", "set")) and all(
        f"bench.{c}" in ours for c in ("get", "set")
    ):
        mixed = 2 / (1 / native["get"]["rps"] + 1 / native["set"]["rps"])
        total = ours["bench.get"]["rps"] + ours["bench.set"]["rps"]
        ratios["throughput"] = round(total / mixed, 3)
    for command in ("get", "set"):
        open_loop = fixed["request_types"].get(f"bench.{command}")
        if not open_loop:
            continue
        service_us = open_loop["service"]["p50_us"]
        alone = floor.get(command)
        if alone and alone["p50_ms"]:
            ratios[f"{command}_service_p50_vs_floor"] = round(
                service_us / 1000 / alone["p50_ms"], 3
            )
        paced = official.get(command)
        if paced and paced["p50_us"]:
            ratios[f"{command}_service_p50_vs_official_at_rate"] = round(
                service_us / paced["p50_us"], 3
            )
    return ratios
