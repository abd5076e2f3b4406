"""Render every file a node needs (config, ACL, certificates) from `redis/templates/`.

Pure: no I/O beyond reading the templates, and secrets appear only as placeholders
(see `infra.core.secrets`), so rendered files can be written for inspection and hashed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

import jinja2

from infra.assets import FUNCTIONS_LIBRARY, TEMPLATES_DIR
from infra.core.certs import CertificateSet
from infra.core.layout import Node, Role, master_node, nodes
from infra.core.memory_budget import SENTINEL_CLIENTS
from infra.core.model import Access, Kind, Topology
from infra.core.secrets import password_ref, referenced, tls_key_ref
from infra.core.sizes import format_size

CONF_DIR = "/etc/redis-infra"  # the node's config volume, mounted read-only
DATA_DIR = "/data"  # the node's data volume
# The config job writes it last, into the config volume: a node waits for it, so it
# may start while the job still runs, and never reads a half-installed file.
FILES_INSTALLED = "files-installed"

# Modes inside the config volume (owned by the Redis uid): secrets owner-read-only.
PUBLIC_MODE = 0o444
SECRET_MODE = 0o400
HEALTH_PASSWORD_FILE = "health-password"  # noqa: S105 - a file name; the health check reads it; never on a command line

# TLS 1.2 ciphers: AEAD with forward secrecy (ECDHE), for ECDSA and RSA certificates.
TLS12_CIPHERS = ":".join(
    f"ECDHE-{key}-{cipher}"
    for key in ("ECDSA", "RSA")
    for cipher in ("AES256-GCM-SHA384", "CHACHA20-POLY1305", "AES128-GCM-SHA256")
)

# -- who may do what: the ACL rules beyond each user's line in the templates --------
# The application: an allow-list, not "everything but ...": Redis 7.0 lets some
# allowed-looking commands hold memory that neither maxmemory nor client eviction
# bounds (two review sessions OOM-killed nodes with COPY, SUNION, WATCH, CLIENT
# TRACKING, stream consumers from XCLAIM, BLPOP on many keys, DUMP of a large key,
# CLIENT SETNAME of 1 MiB names). What is here is what the seed's patterns need
# (sessions, caches, rate limits, leaderboards, counters, pub/sub, transactions), and
# what mainstream clients send to connect and route. Server-side code only through
# FCALL of the shipped library unless access.app_eval allows EVAL; never FUNCTION
# writes or SCRIPT FLUSH (a replaced function would later run with its caller's
# rights, an operator's too).
APP_COMMANDS = {
    "keys": "del unlink exists expire pexpire expireat pexpireat expiretime pexpiretime "
    "ttl pttl persist type touch scan rename renamenx",
    "strings": "get set setex psetex setnx getex getdel getset mget mset msetnx incr incrby "
    "incrbyfloat decr decrby append strlen getrange setrange setbit getbit bitcount bitpos",
    "hashes": "hget hset hsetnx hmset hmget hgetall hdel hexists hincrby hincrbyfloat hlen "
    "hkeys hvals hscan hstrlen hrandfield",
    "sets": "sadd srem sismember smismember smembers scard sscan spop srandmember smove",
    "sorted sets": "zadd zincrby zrem zscore zmscore zrank zrevrank zcard zcount zlexcount "
    "zrange zrevrange zrangebyscore zrevrangebyscore zrangebylex zrevrangebylex "
    "zremrangebyrank zremrangebyscore zremrangebylex zscan zpopmin zpopmax zrandmember",
    "lists": "lpush rpush lpushx rpushx lpop rpop lrange ltrim llen lindex lrem lset linsert "
    "lpos lmove rpoplpush",
    "hyperloglogs": "pfadd pfcount",
    "pub/sub": "publish subscribe unsubscribe psubscribe punsubscribe spublish ssubscribe "
    "sunsubscribe",
    "transactions": "multi exec discard",
    "functions": "fcall fcall_ro",
    "connection": "auth hello ping echo quit reset client|id client|getname client|info "
    "acl|whoami command time wait",
    # Read-only server figures, no keys, values or credentials: ioredis's ready check
    # (is the node still loading? in Sentinel mode, is it really the master?) and
    # libraries such as BullMQ (the server's version) need it.
    "introspection": "info",
    "cluster clients": "cluster|slots cluster|shards cluster|nodes cluster|info "
    "cluster|keyslot cluster|myid readonly readwrite asking",
}
APP_ALLOWED = " ".join(f"+{name}" for group in APP_COMMANDS.values() for name in group.split())
APP_EVAL = "+eval +evalsha +eval_ro +evalsha_ro +script|load +script|exists"
# The day-to-day operator on data nodes: everything but what would weaken the node or
# read its secrets (CONFIG GET shows masterauth), change who may log in, re-point
# replication (REPLICAOF sends masterauth to whatever it names) or stop the node.
OPERATOR_DENIED = (
    "-config|set -config|get -config|rewrite -acl|setuser -acl|deluser -acl|load -acl|save "
    "-replicaof -slaveof -failover -sync -psync -replconf -shutdown -debug -module"
)
# The operator on sentinels: fail over and observe, but not forge hellos, vote in
# elections, re-point the group or change its settings and users.
SENTINEL_OPERATOR_DENIED = (
    "-publish -sentinel|set -sentinel|config -sentinel|monitor -sentinel|remove "
    "-sentinel|debug -sentinel|simulate-failure -sentinel|is-master-down-by-addr "
    "-acl|setuser -acl|deluser -acl|load -acl|save -shutdown"
)


class Install(StrEnum):
    """How the config job installs a file, and whether Redis may rewrite it later."""

    # Into the read-only config volume, replacing what was there.
    REPLACE = "replace"
    # Into the writable data volume; Sentinel's CONFIG REWRITE records the node's
    # current role there (`replicaof`), and a re-install keeps that role.
    KEEP_ROLE = "keep-role"
    # Into the writable data volume; Sentinel records the current master, epochs and
    # known peers there, and a re-install keeps that state with the new settings.
    KEEP_SENTINEL_STATE = "keep-sentinel-state"


@dataclass(frozen=True)
class RenderedFile:
    """One file of a node, relative to its config (or data) directory."""

    path: str
    content: str  # may hold secret placeholders, resolved by the backend
    mode: int
    install: Install = Install.REPLACE

    @property
    def holds_secret(self) -> bool:
        return bool(referenced([self.content]))

    @property
    def volume(self) -> str:
        """`config` (mounted read-only) or `data` (files Redis itself rewrites)."""
        return "config" if self.install is Install.REPLACE else "data"

    @property
    def container_path(self) -> str:
        return f"{CONF_DIR if self.volume == 'config' else DATA_DIR}/{self.path}"


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - Redis config files, not HTML
    )


@cache
def function_library() -> str:
    """The Redis Function library every deployment loads (FCALL token_bucket, ...)."""
    return FUNCTIONS_LIBRARY.read_text(encoding="utf-8")


def _render(template: str, **context: object) -> str:
    return _environment().get_template(template).render(**context)


def channel_acl_patterns(access: Access) -> list[str]:
    """ACL channel patterns for the app's channels, bounded in length: 'app:*' becomes
    'app:', 'app:?', 'app:??', ... up to access.max_channel_length characters (a glob
    '*' would admit names of any length, whose memory Redis 7.0 does not bound)."""
    patterns: list[str] = []
    for channel in access.app_channels:
        prefix = channel.rstrip("*")
        if prefix == channel:
            patterns.append(channel)
            continue
        patterns += [prefix + "?" * n for n in range(access.max_channel_length - len(prefix) + 1)]
    return patterns


def sentinel_id(topology: Topology, node: Node) -> str:
    """A sentinel's run id (40 hex digits), fixed by deployment and node, so each
    sentinel's config can name its peers before any of them has started."""
    return hashlib.sha1(f"redis-infra {topology.name} {node.name}".encode()).hexdigest()  # noqa: S324 - an id, not a secret


def _password_hash(role: str) -> str:
    # ACL files store "#<sha256>" so the clear password never sits on the node.
    return "#" + password_ref(role).sha256_placeholder


def render_node(
    topology: Topology, node: Node, certificates: CertificateSet, addresses: Mapping[str, str]
) -> list[RenderedFile]:
    """The files `node` reads at start, in a stable order.

    `addresses` are the nodes' fixed IPs (Sentinel, Cluster): nodes reach and announce
    each other by address, never by name, because Docker's name resolution for a
    container changes when it is stopped, restarted or reconnected.
    """
    context: dict[str, object] = {
        "node": node,
        "address": addresses.get(node.name),
        "addresses": addresses,
        "kind": topology.kind.value,
        "tls": topology.tls,
        "users": topology.users,
        "persistence": topology.persistence,
        "memory": topology.memory,
        "maxmemory": format_size(topology.memory.maxmemory_bytes),
        "sentinel": topology.sentinel,
        "cluster": topology.cluster,
        "replicated": topology.kind is not Kind.SINGLE,
        "conf_dir": CONF_DIR,
        "data_dir": DATA_DIR,
        "password_hash": _password_hash,
        "replication_password": password_ref("replication").placeholder,
        "sentinel_password": password_ref("sentinel").placeholder,
        "clients": topology.clients,
        "sentinel_clients": SENTINEL_CLIENTS,
        "size": format_size,
        "tls_ciphers": TLS12_CIPHERS,
        "app_channels": " ".join(
            f"&{pattern}" for pattern in channel_acl_patterns(topology.access)
        ),
        "app_commands": APP_ALLOWED + (f" {APP_EVAL}" if topology.access.app_eval else ""),
        "operator_denied": OPERATOR_DENIED,
        "sentinel_operator_denied": SENTINEL_OPERATOR_DENIED,
    }
    tls_files = [
        RenderedFile("tls/ca.crt", certificates.ca_pem, PUBLIC_MODE),
        RenderedFile("tls/server.crt", certificates.server_pems[node.name], PUBLIC_MODE),
        RenderedFile("tls/server.key", tls_key_ref(node.name).placeholder, SECRET_MODE),
        RenderedFile(HEALTH_PASSWORD_FILE, password_ref("health").placeholder, SECRET_MODE),
    ]
    master = master_node(topology) if topology.kind is not Kind.CLUSTER else None
    context["master"] = master
    if node.role is Role.SENTINEL:
        context["seed_replicas"] = [n for n in nodes(topology) if n.role is Role.REPLICA]
        context["sentinel_id"] = sentinel_id(topology, node)
        context["seed_sentinels"] = [
            (peer, sentinel_id(topology, peer))
            for peer in nodes(topology)
            if peer.role is Role.SENTINEL and peer.name != node.name
        ]
        sentinel_conf = _render("sentinel.conf.j2", **context)
        return [
            RenderedFile("sentinel.conf", sentinel_conf, SECRET_MODE, Install.KEEP_SENTINEL_STATE),
            *tls_files,
        ]
    acl = RenderedFile("users.acl", _render("users.acl.j2", **context), SECRET_MODE)
    conf_text = _render("redis.conf.j2", **context)
    if topology.kind is Kind.SENTINEL:
        # Roles swap on failover and Sentinel persists them with CONFIG REWRITE, so
        # the file is writable; replicas start pointed at the first master.
        if node.role is Role.REPLICA and master is not None:
            conf_text += f"replicaof {addresses[master.name]} {master.port}\n"
        return [
            RenderedFile("redis.conf", conf_text, SECRET_MODE, Install.KEEP_ROLE),
            acl,
            *tls_files,
        ]
    mode = SECRET_MODE if referenced([conf_text]) else PUBLIC_MODE  # masterauth (cluster)
    return [RenderedFile("redis.conf", conf_text, mode), acl, *tls_files]


def render_topology(
    topology: Topology, certificates: CertificateSet, addresses: Mapping[str, str]
) -> dict[str, list[RenderedFile]]:
    """Files of every node, by node name."""
    return {
        node.name: render_node(topology, node, certificates, addresses) for node in nodes(topology)
    }
