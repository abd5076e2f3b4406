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
- what Redis 7.0 does not count as client memory: subscribed channels. Per
  subscription it counts ~40 bytes (the client's dict entry), and holds the name
  and ~157 bytes more beside them (the server's entry, list and objects; measured
  on 7.0.15: 780,000 subscriptions of 64-character names, 31 MB counted, 204 MB
  used), so subscriptions cost up to (L + 157) / 40 times `maxmemory-clients`
  beyond it, L the longest channel name the ACL allows. A Cluster's sharded
  channels also sit in a per-slot radix tree: 2L + 182 bytes beside the counted 40
  (273 MB used for the same 780,000);
- one PUBLISH copies the message into every subscriber's buffer before any limit
  acts: up to `maxclients` x `proto-max-bulk-len` at once;
- connection names (HELLO ... SETNAME, which clients need for RESP3): Redis 7.0 does
  not count them as client memory either, up to `proto-max-bulk-len` each;
- one replication output buffer per replica, up to its hard limit (not counted
  in `maxmemory` and not evicted);
- the process itself: code, Lua VM, replication backlog, allocator slack.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.core.model import Access, BufferLimit, Clients

FORK_COPY_RATIO = 1.0  # worst case: every page of the dataset rewritten during a fork
COUNTED_PER_SUBSCRIPTION = 40  # bytes Redis 7.0 counts in a client's memory ...
UNCOUNTED_PER_SUBSCRIPTION = 157  # ... and holds beside them, plus the channel name
UNCOUNTED_PER_SHARD_SUBSCRIPTION = 182  # ... plus the name twice (Cluster: per-slot tree)
PROCESS_BASE_BYTES = 32 * 1024**2
MIB = 1024**2

# A sentinel holds no data: its process (~10 MB) and its clients, bounded below (the
# application may discover the master and follow switches, nothing else). Redis 7.0
# checks no ACL on HELLO, so any client may name itself (HELLO ... SETNAME) with up to
# the largest bulk, and names are not client memory: the container holds, beside the
# counted clients, a name and a full query buffer (read before eviction acts) on
# every connection.
SENTINEL_CLIENTS = Clients(
    maxclients=64,
    max_value_bytes=MIB,
    query_buffer_bytes=MIB,
    total_memory_bytes=16 * MIB,
    normal=BufferLimit(MIB, MIB // 2, 10),
    pubsub=BufferLimit(MIB, MIB // 2, 60),
    replica=BufferLimit(0, 0, 1),  # sentinels have no replicas
    busy_reply_ms=500,
)
SENTINEL_CONTAINER_BYTES = (
    PROCESS_BASE_BYTES
    + SENTINEL_CLIENTS.total_memory_bytes
    + SENTINEL_CLIENTS.maxclients
    * (SENTINEL_CLIENTS.query_buffer_bytes + SENTINEL_CLIENTS.max_value_bytes)
)


@dataclass(frozen=True)
class MemoryBudget:
    dataset: int
    fork_copy: int
    clients: int
    subscription_names: int
    pubsub_fanout: int
    client_names: int
    replica_buffers: int
    process: int

    @property
    def total(self) -> int:
        return (
            self.dataset
            + self.fork_copy
            + self.clients
            + self.subscription_names
            + self.pubsub_fanout
            + self.client_names
            + self.replica_buffers
            + self.process
        )

    def explain(self) -> str:
        from infra.core.sizes import format_human

        parts = {
            "dataset (maxmemory)": self.dataset,
            "fork copy-on-write": self.fork_copy,
            "client buffers (maxmemory-clients)": self.clients,
            "subscribed channel names (uncounted by Redis 7.0)": self.subscription_names,
            "one PUBLISH to every client (maxclients x max_value)": self.pubsub_fanout,
            "connection names (maxclients x max_value)": self.client_names,
            "replica output buffers": self.replica_buffers,
            "process": self.process,
        }
        return " + ".join(f"{format_human(size)} {what}" for what, size in parts.items() if size)


def data_node_budget(
    maxmemory: int,
    clients: Clients,
    access: Access,
    replicas_per_master: int,
    *,
    cluster: bool = False,
) -> MemoryBudget:
    """The worst case of one data node (any of them may be a master after a failover)."""
    name = access.max_channel_length
    beside = (
        2 * name + UNCOUNTED_PER_SHARD_SUBSCRIPTION
        if cluster
        else name + UNCOUNTED_PER_SUBSCRIPTION
    )
    uncounted = beside / COUNTED_PER_SUBSCRIPTION
    return MemoryBudget(
        dataset=maxmemory,
        fork_copy=int(maxmemory * FORK_COPY_RATIO),
        clients=clients.total_memory_bytes,
        subscription_names=int(clients.total_memory_bytes * uncounted),
        pubsub_fanout=clients.maxclients * clients.max_value_bytes,
        client_names=clients.maxclients * clients.max_value_bytes,
        replica_buffers=replicas_per_master * clients.replica.hard_bytes,
        process=PROCESS_BASE_BYTES,
    )
