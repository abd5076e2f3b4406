"""TLS for host-side clients that trusts the deployment's CA and nothing else.

redis-py 8.1 builds each connection's context with `ssl.create_default_context()`,
which loads the system trust store, and only then adds the CA it is given. Two costs:
any public CA can vouch for a node (public CAs now issue certificates for IP
addresses, a published node's name), and loading that store takes ~30 ms of CPU per
connection here, the GIL held: most of what a readiness poll of six nodes cost, so
`up`'s wait measured the client library more than Redis. Given the CA file,
`create_default_context` keeps Python's defaults and loads that file alone (~1 ms).

redis-py takes no SSLContext yet (redis/redis-py#4211), so the context is made by
overriding its one method that makes it; the impostor tests in test_pinned_tls fail
if that method goes or stops being the one that makes it.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import SentinelManagedConnection

import redis


class PinnedTLSConnection(redis.SSLConnection):
    """redis-py's TLS connection, trusting only the CA it is given (fails closed: no
    CA, or OCSP, which this does not do, is an error rather than the system store)."""

    def _wrap_socket_with_ssl(self, sock: socket.socket) -> ssl.SSLSocket:
        if not (self.ca_certs or self.ca_path or self.ca_data):
            raise redis.ConnectionError("pinned TLS: no CA given to verify the node with")
        if self.ssl_validate_ocsp or self.ssl_validate_ocsp_stapled:
            raise redis.ConnectionError("pinned TLS: OCSP validation is not supported")
        context = ssl.create_default_context(
            cafile=self.ca_certs, capath=self.ca_path, cadata=self.ca_data
        )
        context.check_hostname = self.check_hostname
        context.verify_mode = self.cert_reqs
        for flag in self.ssl_include_verify_flags or ():
            context.verify_flags |= flag
        for flag in self.ssl_exclude_verify_flags or ():
            context.verify_flags &= ~flag
        if self.certfile or self.keyfile:
            context.load_cert_chain(
                certfile=self.certfile, keyfile=self.keyfile, password=self.certificate_password
            )
        # Never below TLS 1.2, whatever the caller's options: a RedisCluster drops
        # ssl_min_version before its nodes' connections see it (REDIS_ALLOWED_KEYS).
        context.minimum_version = max(
            self.ssl_min_version or ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2
        )
        if self.ssl_ciphers:
            context.set_ciphers(self.ssl_ciphers)
        return context.wrap_socket(sock, server_hostname=self.host)


class PinnedSentinelManagedConnection(SentinelManagedConnection, PinnedTLSConnection):
    """The master (or replica) connection of a Sentinel-managed client, pinned."""


def pinned(client: redis.Redis) -> redis.Redis:
    """`client`, its TLS connections trusting only its CA. Only before it connected (a
    `single_connection_client` connects at once, on redis-py's own TLS)."""
    pool = client.connection_pool
    if pool.connection_class is not redis.SSLConnection or client.connection is not None:
        raise ValueError(
            f"pinned() takes a TLS client that has not connected yet "
            f"(its pool makes {pool.connection_class.__name__}, connected: "
            f"{client.connection is not None})"
        )
    pool.connection_class = PinnedTLSConnection
    return client


def pinned_client(**options: Any) -> redis.Redis:
    """`redis.Redis(**options)`, its TLS connections trusting only its CA file."""
    if options.get("single_connection_client"):
        # redis-py connects such a client as it makes it, on its own TLS: too early.
        raise ValueError("a pinned client cannot be a single_connection_client")
    return pinned(redis.Redis(**options))


class PinnedConnectionPool(redis.ConnectionPool):
    """A Cluster node's pool whose TLS connections trust only their CA. redis-py 8.1
    lets a RedisCluster choose its nodes' pool class only when it is made from a URL
    (`connection_pool_class`); a `rediss://` URL gives each pool redis-py's own TLS
    connection, replaced here."""

    def __init__(
        self, connection_class: type[redis.Connection] = redis.SSLConnection, **kwargs: Any
    ) -> None:
        if connection_class is not redis.SSLConnection:
            raise ValueError(f"a pinned pool takes TLS connections, not {connection_class}")
        super().__init__(connection_class=PinnedTLSConnection, **kwargs)


def pinned_cluster(startup_nodes: list[ClusterNode], **options: Any) -> RedisCluster:
    """`RedisCluster(startup_nodes=..., **options)`, every node's TLS connections (those
    it discovers too) trusting only its CA file."""
    if not options.pop("ssl", False):
        raise ValueError("a pinned cluster client takes TLS options (ssl=True)")
    first, *others = startup_nodes
    host = f"[{first.host}]" if ":" in first.host else first.host  # an IPv6 address
    return RedisCluster(
        url=f"rediss://{host}:{first.port}",
        startup_nodes=list(others),
        connection_pool_class=PinnedConnectionPool,
        **options,
    )
