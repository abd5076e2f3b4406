"""Client factory: redis-py clients for a deployment, from its connection file.

Used by the CLI, the tests, the drills and the load tests, so they all connect
the way an application on the host would: TLS with the deployment's CA and client
certificate, as a named ACL user, to published loopback ports.
"""

from __future__ import annotations

import ssl
from typing import Any

from redis.backoff import NoBackoff
from redis.retry import Retry

import redis
from infra.connection import ConnectionInfo, NodeAddress
from infra.errors import DeploymentError


def no_retry() -> Retry:
    """redis-py 8 retries 10 times with backoff by default; probes and drills must not."""
    return Retry(NoBackoff(), 0)


class NotPublishedError(DeploymentError):
    """The node has no port on the host, so a host-side client cannot reach it."""


def tls_options(info: ConnectionInfo) -> dict[str, Any]:
    return {
        "ssl": True,
        "ssl_ca_certs": info.tls.ca_file,
        "ssl_certfile": info.tls.cert_file,
        "ssl_keyfile": info.tls.key_file,
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_check_hostname": True,
        "ssl_min_version": ssl.TLSVersion.TLSv1_2,
    }


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
    credentials = info.users[role]
    return redis.Redis(
        host=address.host,
        port=address.port,
        username=credentials.username,
        password=credentials.password,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        **tls_options(info),
        **options,
    )


def connect(info: ConnectionInfo, *, role: str = "app", **options: Any) -> redis.Redis:
    """The client an application would use for this deployment (single kind)."""
    if info.topology != "single":
        raise DeploymentError(
            f"deployment {info.name} is a {info.topology} topology; use its "
            f"{info.topology} client from infra.client"
        )
    return node_client(info, info.data_nodes()[0], role=role, **options)
