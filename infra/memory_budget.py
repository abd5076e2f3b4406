"""How much memory a data node's container needs, from the topology's own settings.

`maxmemory` bounds the dataset, checked before each write. Everything else a
Redis process holds sits beside it, and the kernel kills the container when the
sum crosses its limit (an OOM kill is a failover, repeatable by whoever can
trigger it). So the limit is the sum of the worst cases:

- the dataset itself, up to `maxmemory`;
- the fork of an RDB save, an AOF rewrite or a full sync: the child keeps the
  pages the parent rewrites while it runs, up to a second copy of the dataset
  (measured: `tests/integration/test_memory_headroom.py` fills a node and
  rewrites every key while BGSAVE and BGREWRITEAOF run);
- client buffers, bounded in total by `maxmemory-clients` (replies and queries of
  normal and pub/sub clients; Redis drops the biggest clients beyond it);
- one replication output buffer per replica, up to its hard limit (not counted
  in `maxmemory` and not evicted);
- the process itself: code, Lua VM, replication backlog, allocator slack.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.model import Clients

FORK_COPY_RATIO = 1.0  # worst case: every page of the dataset rewritten during a fork
PROCESS_BASE_BYTES = 32 * 1024**2
SENTINEL_CONTAINER_BYTES = 64 * 1024**2  # a sentinel holds no data (RSS ~10 MB)


@dataclass(frozen=True)
class MemoryBudget:
    dataset: int
    fork_copy: int
    clients: int
    replica_buffers: int
    process: int

    @property
    def total(self) -> int:
        return self.dataset + self.fork_copy + self.clients + self.replica_buffers + self.process

    def explain(self) -> str:
        from infra.sizes import format_human

        parts = {
            "dataset (maxmemory)": self.dataset,
            "fork copy-on-write": self.fork_copy,
            "client buffers (maxmemory-clients)": self.clients,
            "replica output buffers": self.replica_buffers,
            "process": self.process,
        }
        return " + ".join(f"{format_human(size)} {what}" for what, size in parts.items() if size)


def data_node_budget(maxmemory: int, clients: Clients, replicas_per_master: int) -> MemoryBudget:
    """The worst case of one data node (any of them may be a master after a failover)."""
    return MemoryBudget(
        dataset=maxmemory,
        fork_copy=int(maxmemory * FORK_COPY_RATIO),
        clients=clients.total_memory_bytes,
        replica_buffers=replicas_per_master * clients.replica.hard_bytes,
        process=PROCESS_BASE_BYTES,
    )
