"""Which nodes a topology has and what they are called.

A node's name is its container name, its hostname on the deployment's network and
a subject alternative name of its certificate, so it is decided here, once.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from infra.core.errors import ConfigError
from infra.core.model import Kind, Topology

# `redis-infra up` picks each deployment's internal /24 from LOCAL_SUBNET_POOL; Pulumi
# stacks fix theirs in STACK_SUBNET_POOL, so a local deployment can never take a
# stack's subnet before `pulumi up` does, and both live side by side on one engine.
LOCAL_SUBNET_POOL = ipaddress.IPv4Network("10.213.0.0/16")
STACK_SUBNET_POOL = ipaddress.IPv4Network("10.214.0.0/16")


class Role(StrEnum):
    MASTER = "master"
    REPLICA = "replica"
    SENTINEL = "sentinel"


@dataclass(frozen=True)
class Node:
    name: str  # container name == hostname on the network == certificate SAN
    role: Role  # role at first deployment; Sentinel and Cluster may swap data roles later
    index: int  # position among the topology's nodes, used for published ports
    port: int  # port inside the network
    shard: int | None = None  # Cluster shard this node serves (masters and their replicas)
    domain: str | None = None  # failure domain (Docker host) this node is placed on

    @property
    def is_data_node(self) -> bool:
        return self.role is not Role.SENTINEL


FIRST_NODE_HOST = 10  # .1 is the gateway; .2-.9 stay free
DEFAULT_SUBNET_PREFIX = 24  # what the local backend picks when network.subnet is unset


def fixed_address_capacity(prefixlen: int) -> int:
    """How many nodes get a fixed address in a subnet of this size: its lower half (the
    upper half is Docker's, for jobs), from FIRST_NODE_HOST, short of the broadcast."""
    return int(2 ** (32 - prefixlen)) // 2 - FIRST_NODE_HOST - 1


def nodes(topology: Topology) -> list[Node]:
    """Every node of `topology`, data nodes first, in a stable order."""
    name = topology.name
    if topology.kind is Kind.SINGLE:
        return [Node(f"{name}-redis", Role.MASTER, 0, topology.port)]
    if topology.kind is Kind.SENTINEL:
        settings = topology.sentinel
        assert settings is not None
        data = [
            Node(f"{name}-data-{i}", Role.MASTER if i == 0 else Role.REPLICA, i, topology.port)
            for i in range(settings.replicas + 1)
        ]
        sentinels = [
            Node(f"{name}-sentinel-{j}", Role.SENTINEL, len(data) + j, settings.port)
            for j in range(settings.sentinels)
        ]
        return data + sentinels
    cluster = topology.cluster
    assert cluster is not None
    result: list[Node] = []
    domains = cluster.failure_domains
    placement = dict(cluster.placement)
    per_shard = cluster.replicas_per_master + 1
    for shard in range(cluster.masters):
        for member in range(per_shard):
            index = shard * per_shard + member
            result.append(
                Node(
                    f"{name}-node-{index}",
                    Role.MASTER if member == 0 else Role.REPLICA,
                    index,
                    topology.port,
                    shard=shard,
                    # Spread a shard's members over the domains so a master and its
                    # replica never share one when there is more than one domain.
                    domain=placement.get(f"node-{index}", domains[(shard + member) % len(domains)]),
                )
            )
    return result


def data_nodes(topology: Topology) -> list[Node]:
    return [node for node in nodes(topology) if node.is_data_node]


def master_node(topology: Topology) -> Node:
    """The node that starts as master (single and Sentinel kinds)."""
    return next(node for node in nodes(topology) if node.role is Role.MASTER)


def single_engine_only(topology: Topology) -> None:
    """Placement over several Docker hosts is recorded in the plan, not deployed yet."""
    domains = sorted({node.domain for node in nodes(topology) if node.domain})
    if len(domains) > 1:
        raise ConfigError.single(
            topology.source,
            "cluster.failure_domains",
            f"{domains}: this backend deploys to one Docker engine, so every node would "
            "share one failure domain whatever the plan says",
            "use failure_domains: [local] (one host); multi-host placement is not built yet",
        )
