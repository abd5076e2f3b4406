"""Load a topology file, apply overrides and validate everything into a `Topology`.

Bad input stops here, before any container exists, with every problem listed as
field / rule / fix. The shipped files in `topologies/` hold each kind's defaults;
a stack (`redis-infra:overrides`) or CLI flags (`--set memory.maxmemory=512mb`)
override single keys.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from infra.assets import TOPOLOGIES_DIR
from infra.certs import check_brought_files
from infra.errors import ConfigError, Problem
from infra.layout import DEFAULT_SUBNET_PREFIX, Node, fixed_address_capacity, nodes
from infra.memory_budget import data_node_budget
from infra.model import (
    APPENDFSYNC_MODES,
    EVICTION_POLICIES,
    TLS_PROTOCOLS,
    Access,
    BufferLimit,
    Clients,
    ClusterSettings,
    Kind,
    Limits,
    Memory,
    Persistence,
    Publish,
    SentinelSettings,
    Tls,
    TlsFiles,
    Topology,
    Users,
    Workload,
)
from infra.sizes import format_human, format_size, parse_size

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

_TOP_KEYS = {
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
_SECTION_KEYS: dict[str, set[str]] = {
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
_TLS_FILE_KEYS = ("ca_file", "cert_file", "key_file", "client_cert_file", "client_key_file")


def known_kinds() -> list[str]:
    return [kind.value for kind in Kind]


def resolve_topology_file(topology: str) -> Path:
    """The file for a kind name ("single") or a path to a topology file."""
    if topology in known_kinds():
        return TOPOLOGIES_DIR / f"{topology}.yaml"
    path = Path(topology).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path.resolve()
    raise ConfigError.single(
        "--topology",
        "topology",
        f"'{topology}' is neither a known kind ({', '.join(known_kinds())}) "
        "nor an existing .yaml file",
        f"use one of {', '.join(known_kinds())} or a path to a topology file",
    )


def parse_set_flags(assignments: Iterable[str]) -> dict[str, Any]:
    """`["memory.maxmemory=512mb", "sentinel.quorum=2"]` as a nested override mapping."""
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError.single(
                "--set",
                assignment,
                "an override must look like dotted.key=value",
                "write for example --set memory.maxmemory=512mb",
            )
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as exc:
            raise ConfigError.single(
                "--set", key, f"value '{raw}' is not valid YAML ({exc})", "quote the value"
            ) from exc
        _set_dotted(overrides, key.split("."), value)
    return overrides


def _set_dotted(target: dict[str, Any], parts: Sequence[str], value: Any) -> None:
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied key by key (mappings merge, everything else replaces)."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_topology_file(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError.single(
            source, "<file>", f"cannot be read as YAML ({exc})", "fix the file's syntax"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError.single(
            source, "<file>", "must be a mapping of settings", "start from topologies/single.yaml"
        )
    return data


def load_topology(
    topology: str,
    name: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    override_source: str = "overrides",
) -> Topology:
    """Validated `Topology` for a kind name or file, deployment `name` and overrides."""
    path = resolve_topology_file(topology)
    data = deep_merge(read_topology_file(path), overrides or {})
    source = str(path) if not overrides else f"{path} + {override_source}"
    return build_topology(data, name, source=source, base_dir=path.parent)


def build_topology(data: Mapping[str, Any], name: str, *, source: str, base_dir: Path) -> Topology:
    """Validate an already merged settings mapping; raise ConfigError listing every problem."""
    reader = _Reader(base_dir)
    topology = reader.topology(data, name)
    if reader.problems or topology is None:
        raise ConfigError(source, reader.problems)
    topology = dataclasses.replace(topology, source=source, settings=copy.deepcopy(dict(data)))
    # Brought certificates are checked now too: a mismatch must stop the run before
    # any container exists, not when Redis fails to start.
    problems = check_brought_files(topology)
    if problems:
        raise ConfigError(source, problems)
    return topology


class _Reader:
    """Reads one settings mapping, recording every problem instead of stopping at the first."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[Problem] = []

    def problem(self, field: str, rule: str, fix: str) -> None:
        self.problems.append(Problem(field, rule, fix))

    # -- typed getters: return a fallback after recording a problem -----------------

    def section(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = data.get(key)
        if not isinstance(value, Mapping):
            self.problem(
                key,
                "is missing" if value is None else f"must be a mapping, got {_kind_of(value)}",
                f"add a '{key}:' section (see topologies/single.yaml)",
            )
            return {}
        self.unknown_keys(value, _SECTION_KEYS[key], prefix=f"{key}.")
        return value

    def unknown_keys(self, data: Mapping[str, Any], allowed: set[str], prefix: str = "") -> None:
        for key in data:
            if key not in allowed:
                suggestion = _closest(str(key), allowed)
                self.problem(
                    f"{prefix}{key}",
                    "is not a known setting",
                    f"remove it{f' or use {prefix}{suggestion}' if suggestion else ''}; "
                    f"known: {', '.join(sorted(allowed))}",
                )

    def _require(self, data: Mapping[str, Any], key: str, path: str) -> Any:
        if key not in data:
            self.problem(path, "is missing", f"set {path} (see topologies/ for defaults)")
        return data.get(key)

    def integer(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = self._require(data, key, path)
        if value is None:
            return minimum or 0
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(
                path,
                f"must be a whole number, got {_kind_of(value)} {value!r}",
                f"write a number such as {minimum if minimum is not None else 1}",
            )
            return minimum or 0
        if minimum is not None and value < minimum:
            self.problem(
                path, f"must be at least {minimum}, got {value}", f"set it to {minimum} or more"
            )
        if maximum is not None and value > maximum:
            self.problem(
                path, f"must be at most {maximum}, got {value}", f"set it to {maximum} or less"
            )
        return value

    def boolean(self, data: Mapping[str, Any], key: str, path: str) -> bool:
        value = self._require(data, key, path)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.problem(
                path,
                f"must be true or false, got {_kind_of(value)} {value!r}",
                "write true or false without quotes",
            )
            return False
        return value

    def string(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        pattern: re.Pattern[str] | None = None,
        rule: str = "",
        example: str = "",
    ) -> str:
        value = self._require(data, key, path)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.problem(path, f"must be text, got {_kind_of(value)} {value!r}", "quote the value")
            return ""
        if pattern is not None and not pattern.match(value):
            self.problem(path, f"'{value}' {rule}", f"use a value such as '{example}'")
        return value

    def choice(self, data: Mapping[str, Any], key: str, path: str, choices: Sequence[str]) -> str:
        value = self.string(data, key, path)
        if value and value not in choices:
            suggestion = _closest(value, choices)
            self.problem(
                path,
                f"'{value}' is not one of {', '.join(choices)}",
                f"use {suggestion!r}" if suggestion else f"pick one of {', '.join(choices)}",
            )
        return value

    def size(self, data: Mapping[str, Any], key: str, path: str) -> int:
        value = self._require(data, key, path)
        if value is None:
            return 0
        size = parse_size(value)
        if size is None or size == 0:
            self.problem(
                path,
                f"{value!r} is not a memory size",
                "write a positive size such as 256mb or 1gb",
            )
            return 0
        return size

    def string_list(self, data: Mapping[str, Any], key: str, path: str) -> list[str]:
        value = self._require(data, key, path)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problem(
                path,
                f"must be a list of text values, got {value!r}",
                "write a YAML list such as [a, b]",
            )
            return []
        return list(value)

    # -- sections -------------------------------------------------------------------

    def topology(self, data: Mapping[str, Any], name: str) -> Topology | None:
        self.unknown_keys(data, _TOP_KEYS)
        if not NAME_PATTERN.match(name):
            self.problem(
                "name",
                f"'{name}' is not a valid deployment name: it becomes container names, "
                "hostnames and certificate names, so it must be 1-40 lowercase letters, "
                "digits or '-', not starting or ending with '-'",
                "use a name such as 'app-cache' or 'trackeep'",
            )
        kind_value = data.get("kind")
        if kind_value not in known_kinds():
            self.problem(
                "kind",
                f"{kind_value!r} is not a topology kind",
                f"use one of {', '.join(known_kinds())}",
            )
            return None
        kind = Kind(kind_value)
        for other in (Kind.SENTINEL, Kind.CLUSTER):
            if other is not kind and other.value in data:
                self.problem(
                    other.value,
                    f"the '{other.value}' section only applies to kind {other.value}",
                    f"remove it, or set kind: {other.value}",
                )
        image = self.string(
            data,
            "image",
            "image",
            pattern=IMAGE_PATTERN,
            rule="is not a valid image reference",
            example="redis-infra/redis:7.0.15",
        )
        uid = self.integer(data, "uid", "uid", minimum=1, maximum=2**31 - 1)
        port = self.integer(data, "port", "port", minimum=1, maximum=65535)
        network = self.section(data, "network")
        internal_network = self.boolean(network, "internal", "network.internal")
        subnet = self.subnet(network)
        sentinel = self.sentinel(self.section(data, "sentinel")) if kind is Kind.SENTINEL else None
        cluster = self.cluster(self.section(data, "cluster")) if kind is Kind.CLUSTER else None
        clients = self.clients(self.section(data, "clients"))
        access = self.access(self.section(data, "access"))
        replicas = sentinel.replicas if sentinel else cluster.replicas_per_master if cluster else 0
        topology = Topology(
            name=name,
            kind=kind,
            image=image,
            uid=uid,
            port=port,
            internal_network=internal_network,
            subnet=subnet,
            persistence=self.persistence(self.section(data, "persistence")),
            memory=self.memory(
                self.section(data, "memory"),
                clients,
                access,
                replicas,
                cluster=kind is Kind.CLUSTER,
            ),
            limits=self.limits(self.section(data, "limits")),
            clients=clients,
            access=access,
            tls=self.tls(self.section(data, "tls")),
            users=self.users(self.section(data, "users"), kind),
            publish=self.publish(self.section(data, "publish")),
            sentinel=sentinel,
            cluster=cluster,
        )
        self.cross_checks(topology)
        return topology

    def addresses_fit(self, topology: Topology) -> None:
        """Sentinel and Cluster nodes get fixed addresses in the deployment's subnet."""
        if topology.kind is Kind.SINGLE:
            return
        prefix = (
            ipaddress.ip_network(topology.subnet).prefixlen
            if topology.subnet
            else DEFAULT_SUBNET_PREFIX
        )
        capacity, count = fixed_address_capacity(prefix), len(nodes(topology))
        if count <= capacity:
            return
        if topology.cluster is not None:
            per_shard = topology.cluster.replicas_per_master + 1
            field = "cluster.masters"
            fix = f"use at most {capacity // per_shard} masters with this many replicas"
        else:
            field, fix = "sentinel.replicas", "use fewer replicas and sentinels"
        self.problem(
            field,
            f"{count} nodes need {count} fixed addresses; a /{prefix} subnet holds {capacity} "
            "(its lower half; Docker places jobs in the upper half)",
            f"{fix}, or set network.subnet to a larger one (e.g. a /23)",
        )

    def subnet(self, data: Mapping[str, Any]) -> str | None:
        value = data.get("subnet")
        if value is None:
            return None
        try:
            network = ipaddress.ip_network(str(value), strict=True)
        except ValueError:
            self.problem(
                "network.subnet",
                f"{value!r} is not an IPv4 network such as 10.213.4.0/24",
                "write a network address with its prefix length, e.g. 10.213.4.0/24",
            )
            return None
        if not isinstance(network, ipaddress.IPv4Network) or network.prefixlen > 24:
            self.problem(
                "network.subnet",
                f"{value} is too small or not IPv4: nodes get fixed "
                "addresses in the lower half of the subnet, Docker the upper half",
                "use an IPv4 subnet of /24 or larger",
            )
            return None
        return str(network)

    def persistence(self, data: Mapping[str, Any]) -> Persistence:
        save: list[tuple[int, int]] = []
        for entry in self.string_list(data, "rdb_save", "persistence.rdb_save"):
            parts = entry.split()
            if len(parts) != 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
                self.problem(
                    "persistence.rdb_save",
                    f"'{entry}' is not '<seconds> <changes>' with two positive numbers",
                    "write entries such as '900 1' or use [] to disable snapshots",
                )
                continue
            save.append((int(parts[0]), int(parts[1])))
        return Persistence(
            aof=self.boolean(data, "aof", "persistence.aof"),
            appendfsync=self.choice(
                data, "appendfsync", "persistence.appendfsync", APPENDFSYNC_MODES
            ),
            rdb_save=tuple(save),
        )

    def memory(
        self,
        data: Mapping[str, Any],
        clients: Clients,
        access: Access,
        replicas: int,
        *,
        cluster: bool,
    ) -> Memory:
        workload = self.choice(data, "workload", "memory.workload", [w.value for w in Workload])
        policy = self.choice(data, "policy", "memory.policy", EVICTION_POLICIES)
        maxmemory = self.size(data, "maxmemory", "memory.maxmemory")
        if workload == Workload.DURABLE and policy and policy != "noeviction":
            self.problem(
                "memory.policy",
                f"'{policy}' evicts keys, but memory.workload is 'durable' (sessions, rate "
                "limits, leaderboards), which must never be dropped silently",
                "keep policy: noeviction (a full instance refuses writes with OOM), or set "
                "workload: cache for data that can be rebuilt, ideally in a separate deployment",
            )
        budget = data_node_budget(maxmemory, clients, access, replicas, cluster=cluster)
        limit = -(-budget.total // 1024**2) * 1024**2  # whole MiB

        if data.get("container_limit", "auto") != "auto":
            limit = self.size(data, "container_limit", "memory.container_limit")
            if limit and maxmemory and limit < budget.total:  # an explicit limit
                self.problem(
                    "memory.container_limit",
                    f"{format_human(limit)} is below what a node may hold at worst: "
                    f"{budget.explain()} = {format_human(budget.total)}; past its limit the "
                    "kernel kills the container (a failover anyone who fills it can repeat)",
                    f"set container_limit to auto (or at least {format_size(budget.total)}), "
                    "or lower maxmemory or the client limits",
                )
        return Memory(
            workload=Workload(workload) if workload in set(Workload) else Workload.DURABLE,
            maxmemory_bytes=maxmemory,
            policy=policy,
            container_limit_bytes=limit,
        )

    def buffer_limit(self, data: Mapping[str, Any], key: str) -> BufferLimit:
        path = f"clients.{key}"
        value = self._require(data, key, path)
        if not isinstance(value, Mapping) or set(value) != {"hard", "soft", "seconds"}:
            self.problem(
                path,
                f"must be a mapping of hard, soft and seconds, got {value!r}",
                f"write e.g. {path}: {{hard: 16mb, soft: 8mb, seconds: 10}}",
            )
            return BufferLimit(0, 0, 0)
        hard = self.size(value, "hard", f"{path}.hard")
        soft = self.size(value, "soft", f"{path}.soft")
        seconds = self.integer(value, "seconds", f"{path}.seconds", minimum=1, maximum=3600)
        if hard and soft and soft > hard:
            self.problem(
                f"{path}.soft",
                f"{format_size(soft)} is above the hard limit {format_size(hard)}",
                "make soft at most hard",
            )
        return BufferLimit(hard, soft, seconds)

    def clients(self, data: Mapping[str, Any]) -> Clients:
        max_value = self.size(data, "max_value", "clients.max_value")
        query_buffer = self.size(data, "query_buffer", "clients.query_buffer")
        total = self.size(data, "total_memory", "clients.total_memory")
        normal = self.buffer_limit(data, "output_normal")
        pubsub = self.buffer_limit(data, "output_pubsub")
        if max_value and pubsub.hard_bytes and pubsub.hard_bytes < max_value:
            self.problem(
                "clients.output_pubsub.hard",
                f"{format_size(pubsub.hard_bytes)} is below clients.max_value "
                f"{format_size(max_value)}: a subscriber would be dropped by the largest "
                "message it may be sent",
                f"set it to at least {format_size(max_value)}",
            )
        for field, size in (("max_value", max_value), ("query_buffer", query_buffer)):
            if size and size < MIN_PROTO_BULK:
                self.problem(
                    f"clients.{field}",
                    f"{format_size(size)} is below the 1mb Redis accepts",
                    "use 1mb or more",
                )
        if max_value and query_buffer and query_buffer < max_value:
            self.problem(
                "clients.query_buffer",
                f"{format_size(query_buffer)} cannot hold a command carrying the largest "
                f"value ({format_size(max_value)}, clients.max_value)",
                f"set query_buffer to at least {format_size(max_value)}",
            )
        if max_value and normal.hard_bytes and normal.hard_bytes < max_value:
            self.problem(
                "clients.output_normal.hard",
                f"{format_size(normal.hard_bytes)} is below clients.max_value "
                f"{format_size(max_value)}: a client reading back the largest value it may "
                "write would be disconnected",
                f"set it to at least {format_size(max_value)}",
            )
        if (
            total
            and normal.hard_bytes
            and query_buffer
            and total < normal.hard_bytes + query_buffer
        ):
            needed = normal.hard_bytes + query_buffer
            self.problem(
                "clients.total_memory",
                f"{format_size(total)} cannot hold even one client at its limits "
                f"(output_normal.hard + query_buffer = {format_size(needed)}): Redis would "
                "drop clients doing nothing wrong",
                f"set total_memory to at least {format_size(needed)}",
            )
        return Clients(
            maxclients=self.integer(
                data, "maxclients", "clients.maxclients", minimum=16, maximum=65000
            ),
            max_value_bytes=max_value,
            query_buffer_bytes=query_buffer,
            total_memory_bytes=total,
            normal=normal,
            pubsub=pubsub,
            replica=self.buffer_limit(data, "output_replica"),
            busy_reply_ms=self.integer(
                data, "busy_reply_ms", "clients.busy_reply_ms", minimum=100, maximum=60000
            ),
        )

    def access(self, data: Mapping[str, Any]) -> Access:
        channels = self.string_list(data, "app_channels", "access.app_channels")
        longest = self.integer(
            data, "max_channel_length", "access.max_channel_length", minimum=8, maximum=256
        )
        for pattern in channels:
            if not CHANNEL_PATTERN.match(pattern):
                self.problem(
                    "access.app_channels",
                    f"'{pattern}' is not a literal channel prefix with an optional trailing "
                    "'*': a broader pattern could reach __sentinel__:hello, the channel "
                    "Sentinel trusts to decide who the master is",
                    "name your application's channels, e.g. 'app:*' or 'trackeep:messages:*'",
                )
            elif longest and len(pattern.rstrip("*")) >= longest:
                self.problem(
                    "access.app_channels",
                    f"'{pattern}' leaves no room under access.max_channel_length ({longest})",
                    "use a shorter prefix or raise max_channel_length",
                )
        return Access(
            app_channels=tuple(channels),
            app_eval=self.boolean(data, "app_eval", "access.app_eval"),
            max_channel_length=longest,
        )

    def limits(self, data: Mapping[str, Any]) -> Limits:
        pids = self.integer(data, "pids", "limits.pids", minimum=32, maximum=65536)
        cpus_value = data.get("cpus")
        cpus: float | None = None
        if cpus_value is not None:
            if (
                isinstance(cpus_value, bool)
                or not isinstance(cpus_value, int | float)
                or cpus_value <= 0
            ):
                self.problem(
                    "limits.cpus",
                    f"must be a positive number or null, got {cpus_value!r}",
                    "write for example 1.5, or null for no CPU limit",
                )
            else:
                cpus = float(cpus_value)
        return Limits(pids=pids, cpus=cpus)

    def tls(self, data: Mapping[str, Any]) -> Tls:
        protocols = self.string_list(data, "protocols", "tls.protocols")
        for protocol in protocols:
            if protocol not in TLS_PROTOCOLS:
                self.problem(
                    "tls.protocols",
                    f"'{protocol}' is not allowed: only TLS 1.2 and 1.3 are safe",
                    f"use a subset of {list(TLS_PROTOCOLS)}",
                )
        if not protocols and "protocols" in data:
            self.problem(
                "tls.protocols", "must name at least one protocol", "use [TLSv1.2, TLSv1.3]"
            )
        extra_sans = self.string_list(data, "extra_sans", "tls.extra_sans")
        for san in extra_sans:
            if not _is_ip(san) and not re.match(r"^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$", san):
                self.problem(
                    "tls.extra_sans",
                    f"'{san}' is neither a DNS name nor an IP address",
                    "list host names or IP addresses clients use, e.g. redis.internal",
                )
        client_certificates = self.boolean(data, "client_certificates", "tls.client_certificates")
        return Tls(
            protocols=tuple(protocols),
            extra_sans=tuple(extra_sans),
            files=self.tls_files(data, client_certificates),
            client_certificates=client_certificates,
        )

    def tls_files(self, data: Mapping[str, Any], client_certificates: bool) -> TlsFiles | None:
        keys = _TLS_FILE_KEYS if client_certificates else _TLS_FILE_KEYS[:3]
        given = {key: data.get(key) for key in keys}
        if all(value is None for value in given.values()):
            return None
        for key in set(_TLS_FILE_KEYS) - set(keys):
            if data.get(key) is not None:
                self.problem(
                    f"tls.{key}",
                    "is given, but tls.client_certificates is false: clients present none",
                    f"remove tls.{key}",
                )
        paths: dict[str, Path | None] = dict.fromkeys(_TLS_FILE_KEYS)
        for key, value in given.items():
            if value is None:
                missing = ", ".join(f"tls.{k}" for k, v in given.items() if v is None)
                self.problem(
                    f"tls.{key}",
                    f"is missing: bring all {len(keys)} TLS files or none",
                    f"set {missing}, or remove every tls.*_file to have them generated",
                )
                return None
            if not isinstance(value, str):
                self.problem(f"tls.{key}", f"must be a file path, got {value!r}", "write a path")
                return None
            path = (self.base_dir / Path(value).expanduser()).resolve()
            if not path.is_file():
                self.problem(
                    f"tls.{key}",
                    f"file {path} does not exist",
                    "fix the path, or run `redis-infra certs` to generate certificates",
                )
            paths[key] = path
        return TlsFiles(**paths)  # type: ignore[arg-type]

    def users(self, data: Mapping[str, Any], kind: Kind) -> Users:
        roles = ["app", "admin", "breakglass", "health", "replication"]
        if kind is Kind.SENTINEL:
            roles.append("sentinel")
        elif "sentinel" in data:
            self.problem(
                "users.sentinel",
                f"only applies to kind sentinel, not {kind.value}",
                "remove users.sentinel",
            )
        names = {
            role: self.string(
                data,
                role,
                f"users.{role}",
                pattern=USERNAME_PATTERN,
                rule="is not a valid ACL user name (letters, digits, '_', '.', '-')",
                example=role,
            )
            for role in roles
        }
        if "default" in names.values():
            self.problem(
                "users",
                "'default' is Redis's built-in user, which we disable",
                "give every role its own name, e.g. app, admin",
            )
        seen: dict[str, str] = {}
        for role, username in names.items():
            if username and username in seen:
                self.problem(
                    f"users.{role}",
                    f"'{username}' is also users.{seen[username]}: "
                    "each role needs its own least-privilege user",
                    "give each role a distinct name",
                )
            seen.setdefault(username, role)
        return Users(**names)

    def publish(self, data: Mapping[str, Any]) -> Publish:
        enabled = self.boolean(data, "enabled", "publish.enabled")
        host_ip = self.string(data, "host_ip", "publish.host_ip")
        if host_ip and not _is_ip(host_ip):
            self.problem(
                "publish.host_ip",
                f"'{host_ip}' is not an IP address",
                "use 127.0.0.1 (loopback only), or an address of this host",
            )
        base_port = data.get("base_port")
        if base_port is not None:
            base_port = self.integer(
                data, "base_port", "publish.base_port", minimum=1024, maximum=65535
            )
        return Publish(enabled=enabled, host_ip=host_ip, base_port=base_port)

    def sentinel(self, data: Mapping[str, Any]) -> SentinelSettings:
        path = "sentinel."
        replicas = self.integer(data, "replicas", path + "replicas", minimum=1, maximum=16)
        sentinels = self.integer(data, "sentinels", path + "sentinels", minimum=3, maximum=15)
        if sentinels >= 3 and sentinels % 2 == 0:
            self.problem(
                path + "sentinels",
                f"{sentinels} is even: a partition can split them "
                "in two halves where neither has a majority to authorise a failover",
                f"use {sentinels - 1} or {sentinels + 1}",
            )
        quorum = self.integer(data, "quorum", path + "quorum", minimum=1)
        if quorum > sentinels:
            self.problem(
                path + "quorum",
                f"{quorum} can never be reached with {sentinels} sentinels",
                f"set quorum to {sentinels // 2 + 1} (a majority)",
            )
        min_write = self.integer(
            data, "min_replicas_to_write", path + "min_replicas_to_write", minimum=0
        )
        if min_write > replicas:
            self.problem(
                path + "min_replicas_to_write",
                f"{min_write} exceeds the {replicas} replicas: the master would refuse every write",
                f"set it to at most {replicas}",
            )
        return SentinelSettings(
            replicas=replicas,
            sentinels=sentinels,
            quorum=quorum,
            port=self.integer(data, "port", path + "port", minimum=1, maximum=65535),
            service_name=self.string(
                data,
                "service_name",
                path + "service_name",
                pattern=SERVICE_NAME_PATTERN,
                rule="is not a valid master name",
                example="mymaster",
            ),
            down_after_ms=self.integer(data, "down_after_ms", path + "down_after_ms", minimum=100),
            failover_timeout_ms=self.integer(
                data, "failover_timeout_ms", path + "failover_timeout_ms", minimum=1000
            ),
            parallel_syncs=self.integer(data, "parallel_syncs", path + "parallel_syncs", minimum=1),
            min_replicas_to_write=min_write,
            min_replicas_max_lag=self.integer(
                data, "min_replicas_max_lag", path + "min_replicas_max_lag", minimum=1
            ),
            replica_priority=self.integer(
                data, "replica_priority", path + "replica_priority", minimum=1
            ),
        )

    def cluster(self, data: Mapping[str, Any]) -> ClusterSettings:
        path = "cluster."
        masters = self.integer(data, "masters", path + "masters", minimum=0, maximum=64)
        if masters < 3:
            self.problem(
                path + "masters",
                f"{masters} masters cannot form a Redis Cluster: "
                "failover needs a majority of at least 3 masters",
                "set masters to 3 or more",
            )
        domains = self.string_list(data, "failure_domains", path + "failure_domains")
        if not domains:
            self.problem(
                path + "failure_domains",
                "must name at least one failure domain",
                "use [local] for a single Docker host",
            )
            domains = ["local"]
        return ClusterSettings(
            masters=masters,
            replicas_per_master=self.integer(
                data, "replicas_per_master", path + "replicas_per_master", minimum=0, maximum=5
            ),
            node_timeout_ms=self.integer(
                data, "node_timeout_ms", path + "node_timeout_ms", minimum=100
            ),
            replica_validity_factor=self.integer(
                data, "replica_validity_factor", path + "replica_validity_factor", minimum=0
            ),
            require_full_coverage=self.boolean(
                data, "require_full_coverage", path + "require_full_coverage"
            ),
            allow_reads_when_down=self.boolean(
                data, "allow_reads_when_down", path + "allow_reads_when_down"
            ),
            migration_barrier=self.integer(
                data, "migration_barrier", path + "migration_barrier", minimum=0
            ),
            failure_domains=tuple(domains),
            placement=self.placement(data, domains, masters, data.get("replicas_per_master")),
        )

    def placement(
        self, data: Mapping[str, Any], domains: list[str], masters: int, replicas: object
    ) -> tuple[tuple[str, str], ...]:
        value = data.get("placement") or {}
        if not isinstance(value, Mapping):
            self.problem(
                "cluster.placement",
                f"must map node-N to a failure domain, got {value!r}",
                "write e.g. {node-1: host-b}",
            )
            return ()
        count = masters * ((replicas if isinstance(replicas, int) else 0) + 1)
        known = {f"node-{i}" for i in range(count)}
        result = []
        for node, domain in sorted(value.items()):
            if node not in known:
                self.problem(
                    f"cluster.placement.{node}",
                    f"is not a node of this cluster (node-0 .. node-{count - 1})",
                    "use the node-N names of this topology",
                )
            elif domain not in domains:
                self.problem(
                    f"cluster.placement.{node}",
                    f"{domain!r} is not in cluster.failure_domains {domains}",
                    "add the domain to failure_domains or pick one of them",
                )
            else:
                result.append((str(node), str(domain)))
        return tuple(result)

    def cross_checks(self, topology: Topology) -> None:
        """Rules that involve more than one section."""
        ports = {"port": topology.port}
        if topology.sentinel is not None:
            ports["sentinel.port"] = topology.sentinel.port
        if topology.cluster is not None:
            bus = topology.port + CLUSTER_BUS_OFFSET
            if bus > 65535:
                self.problem(
                    "port",
                    f"the cluster bus uses port + {CLUSTER_BUS_OFFSET} = {bus}, beyond 65535",
                    f"use a port of at most {65535 - CLUSTER_BUS_OFFSET}",
                )
            ports["cluster bus (port + 10000)"] = bus
        seen: dict[int, str] = {}
        for field, port in ports.items():
            if port in seen:
                self.problem(
                    field,
                    f"port {port} is also used by {seen[port]}",
                    "give every service its own port",
                )
            seen[port] = field
        if topology.cluster is not None and topology.tls.client_certificates:
            self.problem(
                "tls.client_certificates",
                "true would hand every application a cluster bus credential: Redis 7.0 accepts "
                "any certificate of the deployment's CA as a peer on the bus (port + 10000), "
                "where a forged FAIL or slot claim can fail over or empty a master",
                "keep it false for a cluster: clients then authenticate with their ACL password "
                "over TLS that verifies the server, and only nodes hold certificates",
            )
        self.addresses_fit(topology)
        busy = topology.clients.busy_reply_ms
        timeouts = {}
        if topology.sentinel is not None:
            timeouts["sentinel.down_after_ms"] = topology.sentinel.down_after_ms
        if topology.cluster is not None:
            timeouts["cluster.node_timeout_ms"] = topology.cluster.node_timeout_ms
        for field, timeout in timeouts.items():
            if busy and timeout and busy >= timeout:
                self.problem(
                    "clients.busy_reply_ms",
                    f"{busy} ms is not below {field} ({timeout} ms): a node stuck in a long "
                    "script would be failed over before anyone could SCRIPT KILL it",
                    f"set busy_reply_ms below {timeout}",
                )
        publish = topology.publish
        if publish.enabled and publish.base_port is not None:
            count = len(nodes(topology))
            last = publish.base_port + count - 1
            if last > 65535:
                self.problem(
                    "publish.base_port",
                    f"{count} nodes need host ports {publish.base_port}-{last}, beyond 65535",
                    f"use a base_port of at most {65536 - count}",
                )
        if topology.cluster is not None and len(set(topology.cluster.failure_domains)) > 1:
            self.placement_checks(topology)

    def placement_checks(self, topology: Topology) -> None:
        """A shard whose master and only replica share a domain dies with that domain."""
        members: dict[int, list[Node]] = {}
        for node in nodes(topology):
            if node.shard is not None:
                members.setdefault(node.shard, []).append(node)
        for shard in members.values():
            master, replicas = shard[0], shard[1:]
            if len(replicas) == 1 and replicas[0].domain == master.domain:
                self.problem(
                    "cluster.placement",
                    f"{master.name} (master) and {replicas[0].name}, its only replica, are both "
                    f"on {master.domain}: losing that host loses the shard",
                    "place them on different failure domains (or drop cluster.placement "
                    "to have them spread automatically)",
                )


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _kind_of(value: object) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def _closest(value: str, choices: Iterable[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None
