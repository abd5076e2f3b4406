"""The container limit holds the worst a node does: fork while every key is rewritten,
and at the same time what an application's connections make it hold.

A node filled to its maxmemory forks for BGSAVE and for BGREWRITEAOF; while each
child runs, every key is overwritten, so the parent's copy-on-write approaches a
second copy of the dataset. The child is slowed (rdb-key-save-delay, set by the
break-glass user) so the rewrite surely overlaps it. The kernel must not kill the
container, and the anonymous memory measured in its cgroup stays under the limit
`memory.container_limit: auto` computed (infra/core/memory_budget.py). The second test
adds, during the fork, the terms of that budget an application can fill without
Redis counting them against maxmemory-clients: a connection name of the largest
value on every connection (HELLO SETNAME, which Redis 7.0 does not check against the
ACL), and one PUBLISH of the largest value to all of them.

REDIS_INFRA_HEADROOM_MAXMEMORY picks the size (default 64mb, quick in CI; the
README's figure is this test at 256mb, the shipped default).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

import redis
from infra.operations.client import node_client
from tests.integration.attacker import Application, command, hold_names
from tests.integration.cgroup_memory import PeakAnonymousMemory, memory_stat
from tests.integration.conftest import DeployFactory, Deployment

MAXMEMORY = os.environ.get("REDIS_INFRA_HEADROOM_MAXMEMORY", "64mb")
VALUE = 64 * 1024


def _fill(client: redis.Redis, admin: redis.Redis, maxmemory: int) -> int:
    """Write keys until the node holds 90% of its maxmemory; how many were written."""
    keys = 0
    pipe = client.pipeline(transaction=False)
    while int(admin.info("memory")["used_memory"]) < 0.9 * maxmemory:
        for _ in range(50):
            pipe.set(f"fill:{keys}", os.urandom(16) * (VALUE // 16))
            keys += 1
        pipe.execute()
    return keys


def _wait_for(admin: redis.Redis, flag: str, running: bool) -> None:
    deadline = time.monotonic() + 30
    while bool(int(admin.info("persistence")[flag])) != running:
        if time.monotonic() > deadline:
            pytest.fail(f"{flag} did not become {running} within 30 s")
        time.sleep(0.01)


def _rewrite_all_while(client: redis.Redis, admin: redis.Redis, keys: int, flag: str) -> bool:
    """Overwrite every key while `flag` (an INFO persistence field) says a child runs;
    True if the child was still running when the last key was rewritten."""
    pipe = client.pipeline(transaction=False)
    for i in range(keys):
        pipe.set(f"fill:{i}", os.urandom(16) * (VALUE // 16))
        if i % 50 == 49:
            pipe.execute()
    pipe.execute()
    return bool(int(admin.info("persistence")[flag]))


@dataclass
class FullNode:
    """A deployed node filled to 90% of its maxmemory, with the clients that drive it."""

    deployment: Deployment
    stat: Path
    app: redis.Redis
    admin: redis.Redis
    glass: redis.Redis
    keys: int
    filled: int

    def close(self) -> None:
        for client in (self.app, self.admin, self.glass):
            client.close()


def _full_node(deploy: DeployFactory, name: str) -> FullNode:
    deployment = deploy("single", name, memory={"maxmemory": MAXMEMORY})
    info, node = deployment.info, deployment.info.data_nodes()[0]
    stat = memory_stat(str(deployment.container().id))
    if stat is None:
        pytest.skip("this Docker host exposes no cgroup memory.stat to read the peak from")
    app = node_client(info, node, socket_timeout=30)
    admin = node_client(info, node, role="admin", decode_responses=True)
    glass = node_client(info, node, role="breakglass", decode_responses=True)
    keys = _fill(app, admin, deployment.topology.memory.maxmemory_bytes)
    filled = int(admin.info("memory")["used_memory"])
    return FullNode(deployment, stat, app, admin, glass, keys, filled)


def test_a_full_node_forking_under_writes_stays_inside_its_limit(
    deploy: DeployFactory, engine: docker.DockerClient
) -> None:
    full = _full_node(deploy, "mem")
    deployment, app, admin, glass = full.deployment, full.app, full.admin, full.glass
    keys, filled, stat = full.keys, full.filled, full.stat
    container = deployment.container()
    limit = deployment.topology.memory.container_limit_bytes
    maxmemory = deployment.topology.memory.maxmemory_bytes
    # Slow the child so the whole rewrite happens while it runs (not a protected config).
    glass.config_set("rdb-key-save-delay", str(int(3_000_000 / keys)))

    sampler = PeakAnonymousMemory(stat)
    sampler.start()
    overlapped = {}
    for start, flag in (
        (admin.bgsave, "rdb_bgsave_in_progress"),
        (admin.bgrewriteaof, "aof_rewrite_in_progress"),
    ):
        start()
        deadline = time.monotonic() + 10
        while not int(admin.info("persistence")[flag]) and time.monotonic() < deadline:
            time.sleep(0.01)
        overlapped[flag] = _rewrite_all_while(app, admin, keys, flag)
        while int(admin.info("persistence")[flag]):
            time.sleep(0.05)
    sampler.running = False
    sampler.join()
    glass.config_set("rdb-key-save-delay", "0")

    container.reload()
    state = container.attrs["State"]
    persistence = admin.info("persistence")
    figures = {
        "maxmemory_bytes": maxmemory,
        "used_memory_filled_bytes": filled,
        "container_limit_bytes": limit,
        "peak_anonymous_bytes": sampler.peak,
        "peak_over_maxmemory": round(sampler.peak / maxmemory, 2),
        "peak_over_limit": round(sampler.peak / limit, 2),
        "rewrite_overlapped_child": overlapped,
        "oom_killed": state["OOMKilled"],
    }
    print(json.dumps(figures))
    assert overlapped == {"rdb_bgsave_in_progress": True, "aof_rewrite_in_progress": True}
    assert persistence["rdb_last_bgsave_status"] == "ok"
    assert persistence["aof_last_bgrewrite_status"] == "ok"
    assert state["Running"] and not state["OOMKilled"] and container.attrs["RestartCount"] == 0
    # The fork really doubled the dataset (else this proves nothing), within the limit.
    assert sampler.peak > 1.5 * filled
    assert sampler.peak < limit
    full.close()


def test_names_and_a_publish_to_every_connection_during_a_fork_stay_inside_the_limit(
    deploy: DeployFactory, engine: docker.DockerClient
) -> None:
    full = _full_node(deploy, "memall")
    deployment, app, admin, glass = full.deployment, full.app, full.admin, full.glass
    keys, filled, stat = full.keys, full.filled, full.stat
    container, node = deployment.container(), deployment.info.data_nodes()[0]
    topology = deployment.topology
    limit, largest = topology.memory.container_limit_bytes, topology.clients.max_value_bytes
    # The fork first, and every key rewritten under it (writes stop at maxmemory, and
    # names count towards it); the child is slowed to outlast all that follows.
    glass.config_set("rdb-key-save-delay", str(int(40_000_000 / keys)))
    sampler = PeakAnonymousMemory(stat)
    sampler.start()
    admin.bgsave()
    _wait_for(admin, "rdb_bgsave_in_progress", True)
    overlapped = _rewrite_all_while(app, admin, keys, "rdb_bgsave_in_progress")

    # Then what the attacker holds, the application's file: every free connection slot
    # gets a name as long as a value may be, and subscribes to one channel.
    attacker = Application.holding(deployment.connection_file, engine)
    connections = topology.clients.maxclients - 16  # room for the health check, us
    name_length = largest - 64
    before_names = int(admin.info("memory")["used_memory"])
    subscribers = hold_names(attacker, node, connections, name_length, per_batch=24)
    for sock in subscribers:
        sock.sendall(command("SUBSCRIBE", "app:fan"))
    for sock in subscribers:
        seen = b""
        while b"subscribe" not in seen:
            seen += sock.recv(4096) or pytest.fail("a subscriber was dropped")
    named = int(admin.info("memory")["used_memory"]) - before_names
    delivered = app.publish("app:fan", b"x" * name_length)  # none of them reads
    during_fork = bool(int(admin.info("persistence")["rdb_bgsave_in_progress"]))
    glass.config_set("rdb-key-save-delay", "0")
    _wait_for(admin, "rdb_bgsave_in_progress", False)
    time.sleep(0.2)
    sampler.running = False
    sampler.join()
    for sock in subscribers:
        sock.close()

    container.reload()
    state = container.attrs["State"]
    exercised = filled + connections * name_length * 2  # the dataset, the names, the copies
    print(
        json.dumps(
            {
                "container_limit_bytes": limit,
                "peak_anonymous_bytes": sampler.peak,
                "exercised_bytes_without_fork_copy": exercised,
                "peak_over_limit": round(sampler.peak / limit, 2),
                "oom_killed": state["OOMKilled"],
            }
        )
    )
    assert overlapped and during_fork and delivered == connections
    assert named > 0.9 * connections * name_length  # the names were really held
    assert state["Running"] and not state["OOMKilled"] and container.attrs["RestartCount"] == 0
    assert admin.info("persistence")["rdb_last_bgsave_status"] == "ok"
    assert sampler.peak > exercised  # all of it was held at once, and the fork copied more
    assert sampler.peak < limit
    full.close()
