"""The container limit holds the worst a node does: fork while every key is rewritten.

A node filled to its maxmemory forks for BGSAVE and for BGREWRITEAOF; while each
child runs, every key is overwritten, so the parent's copy-on-write approaches a
second copy of the dataset. The child is slowed (rdb-key-save-delay, set by the
break-glass user) so the rewrite surely overlaps it. The kernel must not kill the
container, and the anonymous memory measured in its cgroup stays under the limit
`memory.container_limit: auto` computed (infra/memory_budget.py).

REDIS_INFRA_HEADROOM_MAXMEMORY picks the size (default 64mb, quick in CI; the
README's figure is this test at 256mb, the shipped default).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import docker
import pytest

import redis
from infra.client import node_client
from tests.integration.conftest import DeployFactory

MAXMEMORY = os.environ.get("REDIS_INFRA_HEADROOM_MAXMEMORY", "64mb")
VALUE = 64 * 1024


def _memory_stat(container_id: str) -> Path | None:
    for candidate in (
        f"/sys/fs/cgroup/memory/docker/{container_id}/memory.stat",  # cgroup v1
        f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.stat",  # v2, systemd
        f"/sys/fs/cgroup/docker/{container_id}/memory.stat",  # v2, cgroupfs
    ):
        if Path(candidate).exists():
            return Path(candidate)
    return None


class PeakAnonymousMemory(threading.Thread):
    """Samples the cgroup's anonymous memory (rss, not page cache) every 10 ms."""

    def __init__(self, stat: Path) -> None:
        super().__init__(daemon=True)
        self.stat = stat
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            for line in self.stat.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key in ("rss", "anon"):
                    self.peak = max(self.peak, int(value))
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


def test_a_full_node_forking_under_writes_stays_inside_its_limit(
    deploy: DeployFactory, engine: docker.DockerClient
) -> None:
    deployment = deploy("single", "mem", memory={"maxmemory": MAXMEMORY})
    info, node = deployment.info, deployment.info.data_nodes()[0]
    container = deployment.container()
    stat = _memory_stat(str(container.id))
    if stat is None:
        pytest.skip("this Docker host exposes no cgroup memory.stat to read the peak from")
    limit = deployment.topology.memory.container_limit_bytes
    maxmemory = deployment.topology.memory.maxmemory_bytes
    app = node_client(info, node, socket_timeout=30)
    admin = node_client(info, node, role="admin", decode_responses=True)
    glass = node_client(info, node, role="breakglass", decode_responses=True)

    keys = 0
    pipe = app.pipeline(transaction=False)
    while int(admin.info("memory")["used_memory"]) < 0.9 * maxmemory:
        for _ in range(50):
            pipe.set(f"fill:{keys}", os.urandom(16) * (VALUE // 16))
            keys += 1
        pipe.execute()
    filled = int(admin.info("memory")["used_memory"])
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
    for client in (app, admin, glass):
        client.close()
