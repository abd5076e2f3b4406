"""Acknowledged writes survive restarts; memory limits behave as the topology says."""

from __future__ import annotations

import time

import pytest

import redis
from infra.operations.client import node_client
from infra.operations.readiness import wait_for_ping
from infra.testing import SingleDeployment
from infra.testing.plugin import redis_deployment_factory
from tests.integration.conftest import DeployFactory

WRITES = 10_000
BATCH = 500


def write_sequence(client: redis.Redis, start: int, count: int) -> int:
    """Sequence-numbered, idempotent writes; returns how many the server acknowledged."""
    acknowledged = 0
    for batch_start in range(start, start + count, BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(batch_start, min(batch_start + BATCH, start + count)):
            pipe.set(f"seq:{i:08d}", i)
        acknowledged += sum(1 for reply in pipe.execute() if reply is True)
    return acknowledged


def missing_writes(client: redis.Redis, count: int) -> list[int]:
    """Sequence numbers in [0, count) whose acknowledged write is not readable."""
    missing: list[int] = []
    for batch_start in range(0, count, BATCH):
        numbers = list(range(batch_start, min(batch_start + BATCH, count)))
        values = client.mget([f"seq:{i:08d}" for i in numbers])
        missing += [i for i, value in zip(numbers, values, strict=True) if value != str(i).encode()]
    return missing


def wait_running(deployment: SingleDeployment, timeout_s: float = 30) -> None:
    container = deployment.container()
    deadline = time.monotonic() + timeout_s
    while True:
        container.reload()
        if container.status == "running":
            return
        if container.status == "exited" and container.attrs["State"]["ExitCode"] in (137, 0):
            # `docker kill` counts as a manual stop: Docker leaves it to us to start.
            container.start()
        assert time.monotonic() < deadline, f"{container.name} is {container.status}"
        time.sleep(0.1)


# The redis-infra plugin's deployment, declared as an application's suite would.
durable = redis_deployment_factory("single", scope="module")


def test_acknowledged_writes_survive_clean_restart_and_sigkill(durable: SingleDeployment) -> None:
    info = durable.info
    node = info.data_nodes()[0]
    client = node_client(info, node)
    assert write_sequence(client, 0, WRITES) == WRITES
    client.close()

    durable.container().restart(timeout=30)  # SIGTERM: Redis flushes AOF and exits cleanly
    wait_running(durable)
    wait_for_ping(info, 30)  # same published port: the connection file is still valid
    client = node_client(info, node)
    lost_after_restart = missing_writes(client, WRITES)
    assert lost_after_restart == [], f"{len(lost_after_restart)} acknowledged writes lost"

    assert write_sequence(client, WRITES, WRITES) == WRITES
    client.close()
    # SIGKILL: no shutdown path. It proves AOF is written before the reply; the page
    # cache survives a killed process, so it does not prove fsync (power loss).
    durable.container().kill(signal="SIGKILL")
    wait_running(durable)
    wait_for_ping(info, 30)
    client = node_client(info, node)
    lost_after_kill = missing_writes(client, 2 * WRITES)
    assert lost_after_kill == [], f"{len(lost_after_kill)} of {2 * WRITES} acknowledged writes lost"
    admin = node_client(info, node, role="admin")
    persistence = admin.info("persistence")
    assert persistence["aof_enabled"] == 1
    assert admin.dbsize() == 2 * WRITES


def test_durable_workload_refuses_writes_when_full(deploy: DeployFactory) -> None:
    full = deploy("single", "oom", memory={"maxmemory": "4mb"})
    client = node_client(full.info, full.info.data_nodes()[0])
    value = "x" * 1024
    written = 0
    with pytest.raises(redis.exceptions.OutOfMemoryError, match="maxmemory"):
        for i in range(20_000):  # 20 MB: far beyond maxmemory, bounded
            client.set(f"session:{i}", value)
            written += 1
    admin = node_client(full.info, full.info.data_nodes()[0], role="admin")
    assert admin.info("stats")["evicted_keys"] == 0  # nothing was dropped silently
    assert admin.dbsize() == written  # every acknowledged session is still there
    assert client.get("session:0") == value.encode()


def test_cache_workload_evicts_instead(deploy: DeployFactory) -> None:
    cache = deploy(
        "single",
        "lru",
        memory={
            "workload": "cache",
            "policy": "allkeys-lru",
            "maxmemory": "4mb",
        },
    )
    client = node_client(cache.info, cache.info.data_nodes()[0])
    value = "x" * 1024
    for batch in range(40):  # 20 MB in pipelined batches, none refused
        pipe = client.pipeline(transaction=False)
        for i in range(batch * 500, (batch + 1) * 500):
            pipe.set(f"cache:{i}", value)
        assert all(reply is True for reply in pipe.execute())
    admin = node_client(cache.info, cache.info.data_nodes()[0], role="admin", decode_responses=True)
    assert admin.info("stats")["evicted_keys"] > 0
    assert admin.dbsize() < 20_000
    assert admin.info("memory")["maxmemory_policy"] == "allkeys-lru"
