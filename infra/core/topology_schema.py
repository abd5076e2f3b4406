"""The shape of a topology file: its sections, their keys, and the patterns names must match."""

from __future__ import annotations

import re

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

TOP_KEYS = {
    "kind",
    "image",
    "uid",
    "port",
    "network",
    "persistence",
    "memory",
    "limits",
    "clients",
    "access",
    "tls",
    "users",
    "publish",
    "sentinel",
    "cluster",
}
SECTION_KEYS: dict[str, set[str]] = {
    "network": {"internal", "subnet"},
    "persistence": {"aof", "appendfsync", "rdb_save"},
    "memory": {"workload", "maxmemory", "policy", "container_limit"},
    "limits": {"pids", "cpus"},
    "clients": {
        "maxclients",
        "max_value",
        "query_buffer",
        "total_memory",
        "output_normal",
        "output_pubsub",
        "output_replica",
        "busy_reply_ms",
    },
    "access": {"app_channels", "app_eval", "max_channel_length"},
    "tls": {
        "protocols",
        "extra_sans",
        "client_certificates",
        "ca_file",
        "cert_file",
        "key_file",
        "client_cert_file",
        "client_key_file",
    },
    "users": {"app", "admin", "breakglass", "health", "replication", "sentinel"},
    "publish": {"enabled", "host_ip", "base_port"},
    "sentinel": {
        "replicas",
        "sentinels",
        "quorum",
        "port",
        "service_name",
        "down_after_ms",
        "failover_timeout_ms",
        "parallel_syncs",
        "min_replicas_to_write",
        "min_replicas_max_lag",
        "replica_priority",
    },
    "cluster": {
        "masters",
        "replicas_per_master",
        "node_timeout_ms",
        "replica_validity_factor",
        "require_full_coverage",
        "allow_reads_when_down",
        "migration_barrier",
        "failure_domains",
        "placement",
    },
}
TLS_FILE_KEYS = ("ca_file", "cert_file", "key_file", "client_cert_file", "client_key_file")
