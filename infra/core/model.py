"""The typed topology model: what a deployment is, after validation.

Instances are built only by `infra.core.topology.load_topology`, which guarantees every
rule documented there; the rest of the code can trust these values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class Kind(StrEnum):
    SINGLE = "single"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


class Workload(StrEnum):
    """What the data is, which decides whether Redis may evict it.

    `durable` data (sessions, rate-limit state, leaderboards) must never be evicted
    silently: the only allowed policy is `noeviction`, so a full instance refuses
    writes with OOM instead of dropping a logged-in user's session. `cache` data can
    be rebuilt from the database, so any eviction policy is allowed.
    """

    DURABLE = "durable"
    CACHE = "cache"


EVICTION_POLICIES = (
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
)
APPENDFSYNC_MODES = ("always", "everysec", "no")
TLS_PROTOCOLS = ("TLSv1.2", "TLSv1.3")


@dataclass(frozen=True)
class Persistence:
    aof: bool
    appendfsync: str
    rdb_save: tuple[tuple[int, int], ...]  # (seconds, changes) pairs; empty disables snapshots


@dataclass(frozen=True)
class Memory:
    workload: Workload
    maxmemory_bytes: int
    policy: str
    container_limit_bytes: int


@dataclass(frozen=True)
class Limits:
    pids: int
    cpus: float | None


@dataclass(frozen=True)
class BufferLimit:
    """A client class's output buffer: cut off at `hard`, or above `soft` for `seconds`."""

    hard_bytes: int
    soft_bytes: int
    soft_seconds: int


@dataclass(frozen=True)
class Clients:
    """What clients may cost a node: each one, and all of them together.

    `maxmemory` is checked before a command runs, not while it builds a value or
    a reply, so these bound what one command or one slow reader can allocate.
    """

    maxclients: int
    max_value_bytes: int  # proto-max-bulk-len: the largest string one command may create
    query_buffer_bytes: int  # client-query-buffer-limit
    total_memory_bytes: int  # maxmemory-clients: beyond it the biggest clients are dropped
    normal: BufferLimit
    pubsub: BufferLimit
    replica: BufferLimit
    busy_reply_ms: int  # busy-reply-threshold: a script running longer gets BUSY replies


@dataclass(frozen=True)
class Access:
    """What the application user may reach beyond plain data commands."""

    # Pub/sub channel patterns, literal prefixes with an optional trailing '*'. Never
    # Sentinel's own channel: whoever may PUBLISH on __sentinel__:hello steers failovers.
    app_channels: tuple[str, ...]
    # False: only FCALL of the shipped function library. True: EVAL/EVALSHA as well
    # (Lua memory is outside maxmemory: a script can exhaust the container).
    app_eval: bool
    # Longest channel name the app may use. Redis 7.0 does not count subscribed names
    # as client memory, so only a bound on their length bounds what subscriptions cost.
    max_channel_length: int = 64


@dataclass(frozen=True)
class TlsFiles:
    """Certificates the user brings instead of generated ones (all paths absolute)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    client_cert_file: Path | None  # only where clients present certificates
    client_key_file: Path | None


@dataclass(frozen=True)
class Tls:
    protocols: tuple[str, ...]
    extra_sans: tuple[str, ...]
    files: TlsFiles | None  # None: `redis-infra certs` generates them
    # True: clients must present a certificate from the deployment's CA (mutual TLS).
    # A Cluster's bus accepts any certificate of that CA as a peer's, so there clients
    # get none: they authenticate with their ACL password over server-verified TLS.
    client_certificates: bool = True


# The roles that get a credential file: the application's connection file, the
# operator's (admin) and the break-glass one. Users' fields are named by role.
APP_ROLE = "app"
OPERATOR_ROLE = "admin"
BREAKGLASS_ROLE = "breakglass"
FILE_ROLES = (APP_ROLE, OPERATOR_ROLE, BREAKGLASS_ROLE)


@dataclass(frozen=True)
class Users:
    """ACL user names; their passwords are secrets and never live in the model."""

    app: str
    admin: str  # the operator, day to day: cannot weaken TLS, persistence or read secrets
    breakglass: str  # every command Redis still allows; for emergencies only
    health: str
    replication: str
    sentinel: str | None = None  # Sentinel kind only: what sentinels log in as, everywhere

    def by_role(self) -> dict[str, str]:
        roles = {
            APP_ROLE: self.app,
            OPERATOR_ROLE: self.admin,
            BREAKGLASS_ROLE: self.breakglass,
            "health": self.health,
            "replication": self.replication,
        }
        if self.sentinel is not None:
            roles["sentinel"] = self.sentinel
        return roles


@dataclass(frozen=True)
class Publish:
    """Whether and where node ports are published on the Docker host."""

    enabled: bool
    host_ip: str
    base_port: int | None  # None: the local backend picks free ports once and keeps them


@dataclass(frozen=True)
class SentinelSettings:
    replicas: int
    sentinels: int
    quorum: int
    port: int
    service_name: str
    down_after_ms: int
    failover_timeout_ms: int
    parallel_syncs: int
    min_replicas_to_write: int
    min_replicas_max_lag: int
    replica_priority: int


@dataclass(frozen=True)
class ClusterSettings:
    masters: int
    replicas_per_master: int
    node_timeout_ms: int
    replica_validity_factor: int
    require_full_coverage: bool
    allow_reads_when_down: bool
    migration_barrier: int
    failure_domains: tuple[str, ...]
    placement: tuple[tuple[str, str], ...] = ()  # ("node-3", "host-b"): explicit domains


@dataclass(frozen=True)
class Topology:
    """A validated deployment description: kind defaults merged with overrides."""

    name: str
    kind: Kind
    image: str
    uid: int
    port: int
    internal_network: bool
    subnet: str | None  # IPv4 subnet of the internal network; None: chosen at deployment
    persistence: Persistence
    memory: Memory
    limits: Limits
    clients: Clients
    access: Access
    tls: Tls
    users: Users
    publish: Publish
    sentinel: SentinelSettings | None = None
    cluster: ClusterSettings | None = None
    source: str = field(default="<memory>", compare=False)
    # The merged settings it was built from, so a later command (scale) can rebuild it.
    settings: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
