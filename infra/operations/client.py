"""Client factory: redis-py clients for a deployment, from its connection file.

Used by the CLI, the tests, the drills and the load tests, so they all connect
the way an application on the host would: TLS with the deployment's CA and client
certificate, as a named ACL user, to published loopback ports.
"""

from __future__ import annotations

import ssl
from typing import Any

from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

import redis
from infra.core.connection import ConnectionInfo, NodeAddress
from infra.core.errors import DeploymentError
from infra.operations.pinned_tls import (
    PinnedSentinelManagedConnection,
    pinned,
    pinned_client,
    pinned_cluster,
)


def no_retry() -> Retry:
    """redis-py 8 retries 10 times with backoff by default; probes and drills must not."""
    return Retry(NoBackoff(), 0)


class NotPublishedError(DeploymentError):
    """The node has no port on the host, so a host-side client cannot reach it."""


def tls_options(info: ConnectionInfo) -> dict[str, Any]:
    """TLS that verifies the server; with the client certificate where there is one."""
    options: dict[str, Any] = {
        "ssl": True,
        "ssl_ca_certs": info.tls.ca_file,
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_check_hostname": True,
        "ssl_min_version": ssl.TLSVersion.TLSv1_2,
    }
    if info.tls.cert_file and info.tls.key_file:
        options["ssl_certfile"] = info.tls.cert_file
        options["ssl_keyfile"] = info.tls.key_file
    return options


def node_client(
    info: ConnectionInfo,
    node: NodeAddress | str,
    *,
    role: str = "app",
    socket_timeout: float = 5.0,
    **options: Any,
) -> redis.Redis:
    """A client for one node, authenticated as the `role` user ("app" or "admin")."""
    address = info.node(node) if isinstance(node, str) else node
    if address.host is None or address.port is None:
        raise NotPublishedError(
            f"node {address.name} of {info.name} has no published port; "
            "set publish.enabled: true, or connect from a container on network "
            f"{info.network} to {address.internal}"
        )
    credentials = info.credentials(role)
    # Its connections trust only the deployment's CA (pinned_tls).
    return pinned_client(
        host=address.host,
        port=address.port,
        username=credentials.username,
        password=credentials.password,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        **tls_options(info),
        **options,
    )


def admin_probe(
    info: ConnectionInfo, node: NodeAddress | str, timeout_s: float = 1.0
) -> redis.Redis:
    """An admin client that answers or fails fast: for observing nodes, never for load."""
    return node_client(
        info, node, role="admin", socket_timeout=timeout_s, retry=no_retry(), decode_responses=True
    )


def connect(info: ConnectionInfo, *, role: str = "app", **options: Any) -> redis.Redis:
    """The client an application would use for this deployment: the single node, or
    the current master through Sentinel."""
    if info.topology == "sentinel":
        return sentinel_master(info, role=role, **options)
    if info.topology != "single":
        raise DeploymentError(
            f"deployment {info.name} is a {info.topology} topology; use cluster_client()"
        )
    return node_client(info, info.data_nodes()[0], role=role, **options)


class AddressNotMappedError(DeploymentError):
    """A Sentinel or Cluster node announced an address the connection file does not know."""


class AddressMap:
    """Announced address (node name or internal "host:port") -> address reachable from here."""

    def __init__(self, info: ConnectionInfo) -> None:
        self.info = info
        self._map: dict[tuple[str, int], tuple[str, int]] = {}
        for node in info.nodes:
            if node.host is None or node.port is None:
                continue
            internal_host, _, internal_port = node.internal.rpartition(":")
            for announced in (internal_host, node.name, node.address):
                if announced:
                    self._map[(announced, int(internal_port))] = (node.host, node.port)

    def __call__(self, address: tuple[str, int]) -> tuple[str, int]:
        host, port = address
        mapped = self._map.get((host, int(port)))
        if mapped is None:
            raise AddressNotMappedError(
                f"{info_name(self.info)} announced {host}:{port}, which is not a published "
                "node of this deployment; re-run `redis-infra up` to refresh the connection file"
            )
        return mapped

    def node_name(self, address: tuple[str, int]) -> str:
        """The node behind a host-side address."""
        for node in self.info.nodes:
            if (node.host, node.port) == tuple(address):
                return node.name
        raise AddressNotMappedError(f"{address[0]}:{address[1]} is no node of {self.info.name}")


def info_name(info: ConnectionInfo) -> str:
    return f"deployment {info.name}"


class HostMappedSentinel(Sentinel):
    """A redis-py Sentinel that follows failovers from the host.

    Sentinels announce the master by its name on the deployment's network, which
    the host cannot resolve (and Docker Desktop cannot route to). Each discovered
    address is translated to the node's published loopback port, so the usual
    `master_for` client keeps following the master through failovers.
    """

    def __init__(
        self, info: ConnectionInfo, sentinel_kwargs: dict[str, Any], **kwargs: Any
    ) -> None:
        self.address_map = AddressMap(info)
        sentinels = [(node.host, node.port) for node in info.sentinels() if node.host]
        # The master_for/slave_for clients' connections trust only the deployment's CA,
        # as the sentinels' own clients do (pinned_tls).
        kwargs.setdefault("connection_class", PinnedSentinelManagedConnection)
        super().__init__(sentinels, sentinel_kwargs=sentinel_kwargs, **kwargs)
        for sentinel in self.sentinels:
            pinned(sentinel)

    def discover_master(self, service_name: str) -> tuple[str, int]:
        return self.address_map(super().discover_master(service_name))

    def discover_slaves(self, service_name: str) -> list[tuple[str, int]]:
        found = super().discover_slaves(service_name)
        return [self.address_map(address) for address in found]


def sentinel_manager(
    info: ConnectionInfo, *, role: str = "app", socket_timeout: float = 5.0, **options: Any
) -> HostMappedSentinel:
    """The Sentinel manager for a deployment; `master_for` gives the failover-following client."""
    if info.topology != "sentinel" or not info.service_name:
        raise DeploymentError(f"deployment {info.name} is not a Sentinel topology")
    if not info.sentinels() or any(node.host is None for node in info.sentinels()):
        raise NotPublishedError(f"the sentinels of {info.name} are not published on this host")
    credentials = info.credentials(role)
    auth = {"username": credentials.username, "password": credentials.password}
    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
    sentinel_kwargs = {**tls_options(info), **auth, **timeouts, "retry": no_retry()}
    return HostMappedSentinel(
        info, sentinel_kwargs, **tls_options(info), **auth, **timeouts, **options
    )


def sentinel_master(info: ConnectionInfo, *, role: str = "app", **options: Any) -> redis.Redis:
    """A client of the current master that follows failovers (Sentinel topology)."""
    assert info.service_name is not None
    manager = sentinel_manager(info, role=role, **options)
    client: redis.Redis = manager.master_for(info.service_name)
    return client


def cluster_client(
    info: ConnectionInfo, *, role: str = "app", socket_timeout: float = 5.0, **options: Any
) -> RedisCluster:
    """A redis-py cluster client from the host (Cluster topology).

    Nodes announce their names on the deployment's network (MOVED replies, CLUSTER
    SLOTS); each is mapped to the node's published loopback port. redis-py applies
    that mapping when it refreshes the slot map, not when it follows a single MOVED,
    so every MOVED triggers a refresh (`reinitialize_steps=1`): the redirect lands on
    a reachable address, at the cost of one slot-map read per topology change. Every
    node's TLS trusts the deployment's CA alone (pinned_tls.pinned_cluster).
    """
    if info.topology != "cluster":
        raise DeploymentError(f"deployment {info.name} is not a Cluster topology")
    published = [node for node in info.data_nodes() if node.host is not None]
    if not published:
        raise NotPublishedError(f"the nodes of {info.name} are not published on this host")
    credentials = info.credentials(role)
    return pinned_cluster(
        [ClusterNode(node.host, node.port) for node in published],
        address_remap=AddressMap(info),
        reinitialize_steps=1,
        username=credentials.username,
        password=credentials.password,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        **tls_options(info),
        **options,
    )
