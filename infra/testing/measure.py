"""Bring-up through the test fixtures, for `redis-infra measure-up --backend fixtures`:
the same runs, native anchors and Docker floor as the CLI's own figures."""

from __future__ import annotations

import time

import docker

from infra.core.model import Topology
from infra.operations.measure import BringUpRun
from infra.testing.topologies import KINDS


def fixture_bring_up(client: docker.DockerClient, topology: Topology) -> BringUpRun:
    """One deployment started and stopped as a fixture would (testcontainers backend)."""
    del client  # the deployment opens its own, as in an application's suite
    deployment = KINDS[topology.kind.value](topology.image)
    deployment.with_name(topology.name).with_settings(topology.settings).start()
    stopping = time.monotonic()
    deployment.stop()
    if deployment.seconds_to_ready is None or deployment.seconds_start_to_ready is None:
        raise RuntimeError("a started deployment reports its timings")  # pragma: no cover
    return BringUpRun(
        deployment.seconds_to_ready,
        deployment.seconds_start_to_ready,
        time.monotonic() - stopping,
    )
