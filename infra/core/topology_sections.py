"""The data node's sections of a topology: network, persistence, memory, clients,
access and container limits."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from infra.core.fields import FieldReader
from infra.core.memory_budget import data_node_budget
from infra.core.model import (
    Access,
    BufferLimit,
    Clients,
    Limits,
    Memory,
    Persistence,
    Workload,
)
from infra.core.sizes import format_human, format_size
from infra.core.topology_schema import (
    CHANNEL_PATTERN,
    MIN_PROTO_BULK,
)


class DataSections(FieldReader):
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
        for entry in self.string_list(data, "persistence.rdb_save"):
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
            aof=self.boolean(data, "persistence.aof"),
            appendfsync=self.choice(data, "persistence.appendfsync"),
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
        workload = self.choice(data, "memory.workload")
        policy = self.choice(data, "memory.policy")
        maxmemory = self.size(data, "memory.maxmemory")
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
            limit = self.size(data, "memory.container_limit")
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
        value = self._require(data, path)
        if not isinstance(value, Mapping) or set(value) != {"hard", "soft", "seconds"}:
            self.problem(
                path,
                f"must be a mapping of hard, soft and seconds, got {value!r}",
                f"write e.g. {path}: {{hard: 16mb, soft: 8mb, seconds: 10}}",
            )
            return BufferLimit(0, 0, 0)
        hard = self.size(value, f"{path}.hard")
        soft = self.size(value, f"{path}.soft")
        seconds = self.integer(value, f"{path}.seconds")
        if hard and soft and soft > hard:
            self.problem(
                f"{path}.soft",
                f"{format_size(soft)} is above the hard limit {format_size(hard)}",
                "make soft at most hard",
            )
        return BufferLimit(hard, soft, seconds)

    def clients(self, data: Mapping[str, Any]) -> Clients:
        max_value = self.size(data, "clients.max_value")
        query_buffer = self.size(data, "clients.query_buffer")
        total = self.size(data, "clients.total_memory")
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
            maxclients=self.integer(data, "clients.maxclients"),
            max_value_bytes=max_value,
            query_buffer_bytes=query_buffer,
            total_memory_bytes=total,
            normal=normal,
            pubsub=pubsub,
            replica=self.buffer_limit(data, "output_replica"),
            busy_reply_ms=self.integer(data, "clients.busy_reply_ms"),
        )

    def access(self, data: Mapping[str, Any]) -> Access:
        channels = self.string_list(data, "access.app_channels")
        longest = self.integer(data, "access.max_channel_length")
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
            app_eval=self.boolean(data, "access.app_eval"),
            max_channel_length=longest,
        )

    def limits(self, data: Mapping[str, Any]) -> Limits:
        pids = self.integer(data, "limits.pids")
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
