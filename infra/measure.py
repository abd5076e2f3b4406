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

from infra.deploy import down, up
from infra.topology import load_topology


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
        "runs": runs,
        "median_seconds_total": statistics.median(r.seconds_total for r in results),
        "median_seconds_start_to_ready": statistics.median(
            r.seconds_start_to_ready for r in results
        ),
        "median_seconds_down": statistics.median(r.seconds_down for r in results),
        "each": [asdict(r) for r in results],
    }
