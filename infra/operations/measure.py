"""Bring-up figures: deploy a topology N times from scratch and report the timings."""

from __future__ import annotations

import secrets
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import docker

from infra.core.topology import load_topology
from infra.operations.deploy import down, up


@dataclass(frozen=True)
class BringUpRun:
    seconds_total: float  # `up` from call to return (validation, config job, containers, ready)
    seconds_start_to_ready: float  # containers started -> every node answers a TLS PING
    seconds_down: float


def measure_bring_up(
    client: docker.DockerClient, topology_name: str, runs: int, overrides: dict[str, Any]
) -> dict[str, Any]:
    """Deploy and remove `topology_name` `runs` times; medians and every run, as data."""
    results: list[BringUpRun] = []
    for _ in range(runs):
        name = f"measure-{secrets.token_hex(3)}"
        topology = load_topology(topology_name, name, overrides)
        with tempfile.TemporaryDirectory() as directory:
            try:
                result = up(topology, client, connection_file=Path(directory) / "c.json")
            finally:
                started = time.monotonic()
                down(name, client, keep_data=False)
            assert result.seconds_start_to_ready is not None
            results.append(
                BringUpRun(
                    result.seconds_total, result.seconds_start_to_ready, time.monotonic() - started
                )
            )
    return {
        "topology": topology_name,
        "kind": topology.kind.value,
        "runs": runs,
        "median_seconds_total": statistics.median(r.seconds_total for r in results),
        "median_seconds_start_to_ready": statistics.median(
            r.seconds_start_to_ready for r in results
        ),
        "median_seconds_down": statistics.median(r.seconds_down for r in results),
        "each": [asdict(r) for r in results],
    }


def measure_scale_out(
    client: docker.DockerClient, name: str, masters: int, keys: int
) -> dict[str, Any]:
    """Write `keys` keys over every slot, scale the cluster, read them all back."""
    from infra.core.connection import read_connection_file
    from infra.operations.client import cluster_client
    from infra.operations.deploy import connection_file_for
    from infra.operations.scale import scale_cluster

    info = read_connection_file(connection_file_for(name, client))
    writer = cluster_client(info)
    prefix = f"scale-{secrets.token_hex(3)}"
    started = time.monotonic()
    for start in range(0, keys, 2000):
        pipe = writer.pipeline()
        for i in range(start, min(start + 2000, keys)):
            pipe.set(f"{prefix}:{i}", i)
        pipe.execute()
    seconds_write = time.monotonic() - started
    writer.close()
    result = scale_cluster(name, masters, client)
    reader = cluster_client(result.info)
    missing = 0
    for start in range(0, keys, 2000):
        pipe = reader.pipeline()
        numbers = range(start, min(start + 2000, keys))
        for i in numbers:
            pipe.get(f"{prefix}:{i}")
        missing += sum(
            1 for i, value in zip(numbers, pipe.execute(), strict=True) if value != str(i).encode()
        )
    reader.close()
    return {
        "deployment": name,
        "masters_before": result.masters_before,
        "masters_after": result.masters_after,
        "keys": keys,
        "keys_missing_after": missing,
        "seconds_writing_keys": round(seconds_write, 3),
        "seconds_scale_total": round(result.seconds, 3),
        "seconds_join_and_rebalance": round(result.seconds_rebalance, 3),
        "new_nodes": result.new_nodes,
    }
