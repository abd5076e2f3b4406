"""Every setting a topology file may hold: its type, bounds and meaning, in one table.

The shipped files in `topologies/` give each kind's defaults; this table gives what a
value may be. The readers (`topology_sections`, `topology_services`) take each
setting's type and bounds from here, so a bound is written once; rules that span
settings (memory headroom, quorum, placement, addressable sizes) stay explicit in the
readers and in `topology_rules`. `topologies/FIELDS.md` is rendered from this table
(`render_reference`) and a test keeps it current.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from infra.core.model import APPENDFSYNC_MODES, EVICTION_POLICIES, TLS_PROTOCOLS, Kind, Workload

# Deployment names become container names, hostnames and certificate SANs: one DNS
# label, short enough that "<name>-sentinel-12" still fits in 63 characters.
NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
USERNAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
IMAGE_PATTERN = re.compile(
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)
SERVICE_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
CLUSTER_BUS_OFFSET = 10000
# An application channel pattern: a literal prefix (which never starts with '_', so
# Sentinel's __sentinel__:hello can never match), optionally ending in '*'.
CHANNEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._{}-]*\*?$")
MIN_PROTO_BULK = 1024**2  # Redis refuses a smaller proto-max-bulk-len or query buffer
TLS_FILE_KEYS = ("ca_file", "cert_file", "key_file", "client_cert_file", "client_key_file")


class Type(StrEnum):
    SECTION = "section"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    TEXT = "text"
    CHOICE = "choice"
    SIZE = "size"  # 256mb, 1gb, or bytes
    LIST = "list of text"
    BUFFER = "buffer limit"  # {hard: size, soft: size, seconds: integer}
    OTHER = "see meaning"  # read by its own rule in the readers


@dataclass(frozen=True)
class Setting:
    type: Type
    meaning: str
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    rule: str = ""  # what a value failing `pattern` (or below `minimum`) is not
    example: str = ""  # a valid value, for the fix
    nullable: bool = False
    kinds: tuple[Kind, ...] = ()  # only these kinds (empty: every kind)

    def describe(self) -> str:
        parts = []
        if self.minimum is not None or self.maximum is not None:
            low = "" if self.minimum is None else str(self.minimum)
            high = "" if self.maximum is None else str(self.maximum)
            parts.append(f"{low}..{high}")
        if self.choices:
            parts.append(" \\| ".join(self.choices))
        if self.nullable:
            parts.append("or null")
        return " ".join(parts)


_s = Setting  # short, for the table below
_SENTINEL = (Kind.SENTINEL,)
_CLUSTER = (Kind.CLUSTER,)


def _user(meaning: str, example: str, kinds: tuple[Kind, ...] = ()) -> Setting:
    return Setting(
        Type.TEXT,
        meaning,
        pattern=USERNAME_PATTERN,
        rule="is not a valid ACL user name (letters, digits, '_', '.', '-')",
        example=example,
        kinds=kinds,
    )


SCHEMA: dict[str, Setting] = {
    "kind": _s(Type.CHOICE, "the topology", choices=tuple(k.value for k in Kind)),
    "image": _s(
        Type.TEXT,
        "Redis image reference",
        pattern=IMAGE_PATTERN,
        rule="is not a valid image reference",
        example="redis-infra/redis:7.0.15",
    ),
    "uid": _s(Type.INTEGER, "non-root user every container runs as", minimum=1, maximum=2**31 - 1),
    "port": _s(Type.INTEGER, "TLS port of each data node", minimum=1, maximum=65535),
    "network": _s(Type.SECTION, "the deployment's Docker network"),
    "network.internal": _s(Type.BOOLEAN, "no route out of the network (egress off)"),
    "network.subnet": _s(
        Type.OTHER, "IPv4 subnet, /24 or larger; null picks a free one", nullable=True
    ),
    "persistence": _s(Type.SECTION, "what survives a restart"),
    "persistence.aof": _s(Type.BOOLEAN, "append-only file"),
    "persistence.appendfsync": _s(Type.CHOICE, "AOF fsync policy", choices=APPENDFSYNC_MODES),
    "persistence.rdb_save": _s(Type.LIST, "RDB snapshot points, '<seconds> <changes>'"),
    "memory": _s(Type.SECTION, "data size and container memory"),
    "memory.workload": _s(
        Type.CHOICE,
        "durable data may never be evicted; cache may",
        choices=tuple(w.value for w in Workload),
    ),
    "memory.maxmemory": _s(Type.SIZE, "Redis maxmemory"),
    "memory.policy": _s(Type.CHOICE, "eviction policy", choices=EVICTION_POLICIES),
    "memory.container_limit": _s(
        Type.OTHER, "size, or auto: maxmemory plus every client and fork term"
    ),
    "limits": _s(Type.SECTION, "container limits besides memory"),
    "limits.pids": _s(Type.INTEGER, "process limit per container", minimum=32, maximum=65536),
    "limits.cpus": _s(Type.OTHER, "positive number of CPUs", nullable=True),
    "clients": _s(Type.SECTION, "what clients may cost a node"),
    "clients.maxclients": _s(Type.INTEGER, "connections per node", minimum=16, maximum=65000),
    "clients.max_value": _s(Type.SIZE, "largest value (proto-max-bulk-len), at least 1mb"),
    "clients.query_buffer": _s(Type.SIZE, "query buffer per client, at least max_value"),
    "clients.total_memory": _s(Type.SIZE, "all clients' buffers together (maxmemory-clients)"),
    "clients.output_normal": _s(Type.BUFFER, "output buffer limit of ordinary clients"),
    "clients.output_pubsub": _s(Type.BUFFER, "output buffer limit of subscribers"),
    "clients.output_replica": _s(Type.BUFFER, "output buffer limit of replicas"),
    "clients.busy_reply_ms": _s(
        Type.INTEGER, "script time before BUSY replies", minimum=100, maximum=60000
    ),
    "access": _s(Type.SECTION, "what the application user may reach"),
    "access.app_channels": _s(Type.LIST, "pub/sub channel prefixes, optional trailing '*'"),
    "access.app_eval": _s(Type.BOOLEAN, "allow EVAL of scripts (functions are always allowed)"),
    "access.max_channel_length": _s(
        Type.INTEGER, "longest channel name the app may use", minimum=8, maximum=256
    ),
    "tls": _s(Type.SECTION, "TLS everywhere"),
    "tls.protocols": _s(Type.LIST, "allowed protocols", choices=TLS_PROTOCOLS),
    "tls.extra_sans": _s(Type.LIST, "extra DNS names or IPs in node certificates"),
    "tls.client_certificates": _s(Type.BOOLEAN, "clients must present a certificate"),
    **{
        f"tls.{key}": _s(Type.TEXT, "brought certificate file (all or none)", nullable=True)
        for key in TLS_FILE_KEYS
    },
    "users": _s(Type.SECTION, "ACL user name of each role"),
    "users.app": _user("the application", "app"),
    "users.admin": _user("the operator (cannot weaken TLS or persistence)", "admin"),
    "users.breakglass": _user("every command Redis still allows", "breakglass"),
    "users.health": _user("healthchecks: PING only", "health"),
    "users.replication": _user("replicas' link to the master", "replication"),
    "users.sentinel": _user("what sentinels log in as", "sentinel", _SENTINEL),
    "publish": _s(Type.SECTION, "ports on the Docker host"),
    "publish.enabled": _s(Type.BOOLEAN, "publish node ports on the host"),
    "publish.host_ip": _s(Type.TEXT, "host address to publish on (loopback by default)"),
    "publish.base_port": _s(
        Type.INTEGER,
        "first host port; null: Docker picks",
        minimum=1024,
        maximum=65535,
        nullable=True,
    ),
    "sentinel": _s(Type.SECTION, "the Sentinel group", kinds=_SENTINEL),
    "sentinel.replicas": _s(Type.INTEGER, "replicas of the master", minimum=1, maximum=16),
    "sentinel.sentinels": _s(Type.INTEGER, "sentinels, an odd number", minimum=3, maximum=15),
    "sentinel.quorum": _s(Type.INTEGER, "sentinels that must agree the master is down", minimum=1),
    "sentinel.port": _s(Type.INTEGER, "TLS port of each sentinel", minimum=1, maximum=65535),
    "sentinel.service_name": _s(
        Type.TEXT,
        "the master's name",
        pattern=SERVICE_NAME_PATTERN,
        rule="is not a valid master name",
        example="mymaster",
    ),
    "sentinel.down_after_ms": _s(Type.INTEGER, "silence before a node is down", minimum=100),
    "sentinel.failover_timeout_ms": _s(Type.INTEGER, "failover timeout", minimum=1000),
    "sentinel.parallel_syncs": _s(Type.INTEGER, "replicas resyncing at once", minimum=1),
    "sentinel.min_replicas_to_write": _s(
        Type.INTEGER, "replicas a master needs to accept writes", minimum=0
    ),
    "sentinel.min_replicas_max_lag": _s(
        Type.INTEGER, "seconds a replica may lag and still count", minimum=1
    ),
    "sentinel.replica_priority": _s(Type.INTEGER, "promotion priority", minimum=1),
    "cluster": _s(Type.SECTION, "the Redis Cluster", kinds=_CLUSTER),
    "cluster.masters": _s(
        Type.INTEGER,
        "masters (shards)",
        minimum=3,
        maximum=64,
        rule="fewer masters cannot form a Redis Cluster: failover needs a majority of 3",
    ),
    "cluster.replicas_per_master": _s(
        Type.INTEGER, "replicas of each master", minimum=0, maximum=5
    ),
    "cluster.node_timeout_ms": _s(Type.INTEGER, "cluster-node-timeout", minimum=100),
    "cluster.replica_validity_factor": _s(
        Type.INTEGER, "how stale a replica may be and still fail over", minimum=0
    ),
    "cluster.require_full_coverage": _s(Type.BOOLEAN, "refuse all keys when a slot is down"),
    "cluster.allow_reads_when_down": _s(Type.BOOLEAN, "serve reads while the cluster is down"),
    "cluster.migration_barrier": _s(Type.INTEGER, "cluster-migration-barrier", minimum=0),
    "cluster.failure_domains": _s(Type.LIST, "hosts or zones nodes are spread over"),
    "cluster.placement": _s(Type.OTHER, "node-N: failure domain, for nodes placed by hand"),
}
# The keys of every `clients.output_*` buffer limit.
BUFFER_LIMIT: dict[str, Setting] = {
    "hard": _s(Type.SIZE, "disconnect at once above this"),
    "soft": _s(Type.SIZE, "disconnect when above this for `seconds`"),
    "seconds": _s(Type.INTEGER, "how long soft may be exceeded", minimum=1, maximum=3600),
}

TOP_KEYS = {path for path in SCHEMA if "." not in path}
SECTION_KEYS: dict[str, set[str]] = {
    section: {path.split(".", 1)[1] for path in SCHEMA if path.startswith(f"{section}.")}
    for section, setting in SCHEMA.items()
    if setting.type is Type.SECTION
}


def setting(path: str) -> Setting:
    """The setting at a dotted path, buffer-limit keys included."""
    if path in SCHEMA:
        return SCHEMA[path]
    parent, _, key = path.rpartition(".")
    if SCHEMA.get(parent, Setting(Type.OTHER, "")).type is Type.BUFFER and key in BUFFER_LIMIT:
        return BUFFER_LIMIT[key]
    raise KeyError(f"{path} is not in the topology schema")


def applies_to(path: str, kind: Kind) -> bool:
    """Whether the setting (or the section holding it) exists for this kind."""
    section = SCHEMA.get(path.split(".", 1)[0])
    own = SCHEMA.get(path)
    return all(not s.kinds or kind in s.kinds for s in (section, own) if s is not None)


def render_reference(defaults: dict[str, dict[str, object]]) -> str:
    """`topologies/FIELDS.md`: every setting with its type, bounds and each kind's default."""
    kinds = list(defaults)
    lines = [
        "# Topology settings",
        "",
        "Rendered from `infra/core/topology_schema.py` by `redis-infra fields`; the defaults",
        "are the shipped files in this folder. Rules that span settings (memory headroom,",
        "quorum, placement, addressable sizes) are checked as well and say what to change.",
        "",
        "| setting | type | allowed | meaning | " + " | ".join(kinds) + " |",
        "|---|---|---|---|" + "---|" * len(kinds),
    ]
    for path, entry in SCHEMA.items():
        if entry.type is Type.SECTION:
            continue
        cells = [_default(defaults[kind], path, entry, Kind(kind)) for kind in kinds]
        row = [f"`{path}`", entry.type.value, entry.describe(), entry.meaning, *cells]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _default(data: dict[str, object], path: str, entry: Setting, kind: Kind) -> str:
    if not applies_to(path, kind):
        return ""
    value: object = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)
