"""Rules that span sections: ports, addresses, timeouts, placement, what the kind allows."""

from __future__ import annotations

import ipaddress

from infra.core.fields import FieldReader
from infra.core.layout import DEFAULT_SUBNET_PREFIX, Node, fixed_address_capacity, nodes
from infra.core.model import (
    Kind,
    Topology,
)
from infra.core.topology_schema import (
    CLUSTER_BUS_OFFSET,
)


class CrossFieldRules(FieldReader):
    """Rules that involve more than one section."""

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
