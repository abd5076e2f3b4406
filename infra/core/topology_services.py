"""The sections around the data: TLS and its files, users, publishing, Sentinel and
Cluster settings, and where nodes are placed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.core.fields import FieldReader, is_ip
from infra.core.model import (
    TLS_PROTOCOLS,
    ClusterSettings,
    Kind,
    Publish,
    SentinelSettings,
    Tls,
    TlsFiles,
    Users,
)
from infra.core.topology_schema import (
    TLS_FILE_KEYS,
)


class ServiceSections(FieldReader):
    def tls(self, data: Mapping[str, Any]) -> Tls:
        protocols = self.string_list(data, "tls.protocols")
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
        extra_sans = self.string_list(data, "tls.extra_sans")
        for san in extra_sans:
            if not is_ip(san) and not re.match(r"^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$", san):
                self.problem(
                    "tls.extra_sans",
                    f"'{san}' is neither a DNS name nor an IP address",
                    "list host names or IP addresses clients use, e.g. redis.internal",
                )
        client_certificates = self.boolean(data, "tls.client_certificates")
        return Tls(
            protocols=tuple(protocols),
            extra_sans=tuple(extra_sans),
            files=self.tls_files(data, client_certificates),
            client_certificates=client_certificates,
        )

    def tls_files(self, data: Mapping[str, Any], client_certificates: bool) -> TlsFiles | None:
        keys = TLS_FILE_KEYS if client_certificates else TLS_FILE_KEYS[:3]
        given = {key: data.get(key) for key in keys}
        if all(value is None for value in given.values()):
            return None
        for key in set(TLS_FILE_KEYS) - set(keys):
            if data.get(key) is not None:
                self.problem(
                    f"tls.{key}",
                    "is given, but tls.client_certificates is false: clients present none",
                    f"remove tls.{key}",
                )
        paths: dict[str, Path | None] = dict.fromkeys(TLS_FILE_KEYS)
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
        names = {role: self.string(data, f"users.{role}") for role in roles}
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
        enabled = self.boolean(data, "publish.enabled")
        host_ip = self.string(data, "publish.host_ip")
        if host_ip and not is_ip(host_ip):
            self.problem(
                "publish.host_ip",
                f"'{host_ip}' is not an IP address",
                "use 127.0.0.1 (loopback only), or an address of this host",
            )
        base_port = data.get("base_port")
        if base_port is not None:
            base_port = self.integer(data, "publish.base_port")
        return Publish(enabled=enabled, host_ip=host_ip, base_port=base_port)

    def sentinel(self, data: Mapping[str, Any]) -> SentinelSettings:
        path = "sentinel."
        replicas = self.integer(data, path + "replicas")
        sentinels = self.integer(data, path + "sentinels")
        if sentinels >= 3 and sentinels % 2 == 0:
            self.problem(
                path + "sentinels",
                f"{sentinels} is even: a partition can split them "
                "in two halves where neither has a majority to authorise a failover",
                f"use {sentinels - 1} or {sentinels + 1}",
            )
        quorum = self.integer(data, path + "quorum")
        if quorum > sentinels:
            self.problem(
                path + "quorum",
                f"{quorum} can never be reached with {sentinels} sentinels",
                f"set quorum to {sentinels // 2 + 1} (a majority)",
            )
        min_write = self.integer(data, path + "min_replicas_to_write")
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
            port=self.integer(data, path + "port"),
            service_name=self.string(data, path + "service_name"),
            down_after_ms=self.integer(data, path + "down_after_ms"),
            failover_timeout_ms=self.integer(data, path + "failover_timeout_ms"),
            parallel_syncs=self.integer(data, path + "parallel_syncs"),
            min_replicas_to_write=min_write,
            min_replicas_max_lag=self.integer(data, path + "min_replicas_max_lag"),
            replica_priority=self.integer(data, path + "replica_priority"),
        )

    def cluster(self, data: Mapping[str, Any]) -> ClusterSettings:
        path = "cluster."
        masters = self.integer(data, path + "masters")
        domains = self.string_list(data, path + "failure_domains")
        if not domains:
            self.problem(
                path + "failure_domains",
                "must name at least one failure domain",
                "use [local] for a single Docker host",
            )
            domains = ["local"]
        return ClusterSettings(
            masters=masters,
            replicas_per_master=self.integer(data, path + "replicas_per_master"),
            node_timeout_ms=self.integer(data, path + "node_timeout_ms"),
            replica_validity_factor=self.integer(data, path + "replica_validity_factor"),
            require_full_coverage=self.boolean(data, path + "require_full_coverage"),
            allow_reads_when_down=self.boolean(data, path + "allow_reads_when_down"),
            migration_barrier=self.integer(data, path + "migration_barrier"),
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
