"""An impostor node whose certificate a CA in the system trust store signed: the
project's clients must refuse it before sending the password; stock redis-py does not.

The system store is played by SSL_CERT_FILE, which OpenSSL reads each time Python
loads the default certificates (as `ssl.create_default_context()` does); the public
CA by another deployment's, whose node certificates cover 127.0.0.1 too."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

import redis
from infra.core.certs import ensure_certificates
from infra.core.connection import ConnectionInfo, Credentials, NodeAddress, TlsPaths
from infra.operations.client import (
    cluster_client,
    no_retry,
    node_client,
    sentinel_manager,
    tls_options,
)
from infra.operations.pinned_tls import PinnedConnectionPool
from tests.unit.conftest import TopologyFactory

PASSWORD = "the-app-users-password"
# OpenSSL's words for a chain that ends at no trusted CA (not a name mismatch).
UNTRUSTED = "unable to get local issuer certificate"


@dataclass
class Impostor:
    """A TLS listener on loopback presenting a publicly trusted certificate; it records
    whatever a client sends once the handshake is done."""

    port: int
    received: bytearray = field(default_factory=bytearray)
    serving: threading.Thread | None = None

    def heard(self) -> bytes:
        """All it received, once its one connection has ended."""
        assert self.serving is not None
        self.serving.join(timeout=10)
        return bytes(self.received)


@pytest.fixture
def impostor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_topology: TopologyFactory
) -> Iterator[Impostor]:
    public = ensure_certificates(make_topology("single", "public"), tmp_path / "public")
    monkeypatch.setenv("SSL_CERT_FILE", str(public.certificates.ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    nodes = tmp_path / "public" / "nodes"
    context.load_cert_chain(nodes / "public-redis.crt", nodes / "public-redis.key")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(2)  # a test whose client never connects waits this long
    found = Impostor(listener.getsockname()[1])

    def serve() -> None:
        with listener:
            try:
                conn, _ = listener.accept()
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(2)
                    found.received += tls.recv(4096)
            except OSError:  # the client refused the handshake, or sent nothing
                pass

    found.serving = threading.Thread(target=serve, daemon=True)
    found.serving.start()
    yield found
    found.serving.join(timeout=10)


def _deployment(
    tmp_path: Path,
    make_topology: TopologyFactory,
    port: int,
    role: str = "master",
    host: str = "127.0.0.1",
) -> ConnectionInfo:
    """A connection file naming the impostor's address, with the deployment's own CA
    and client certificate."""
    own = ensure_certificates(make_topology("single", "n"), tmp_path / "own").certificates
    node_role = "master" if role == "cluster" else role
    node = NodeAddress("n-0", "n-0", node_role, host, port, "n-0:6379")
    kind = {"sentinel": "sentinel", "cluster": "cluster"}.get(role, "single")
    return ConnectionInfo(
        "n",
        kind,
        "n-net",
        TlsPaths(str(own.ca_file), str(own.client_cert_file), str(own.client_key_file)),
        {"app": Credentials("app", PASSWORD)},
        (node,),
        service_name="n" if role == "sentinel" else None,
    )


def _refused(client: redis.Redis, impostor: Impostor, refusal: str) -> None:
    """The client's first command fails as `refusal` says, and the impostor heard nothing."""
    with pytest.raises(redis.ConnectionError, match=refusal):
        client.ping()
    client.close()
    assert impostor.heard() == b""


def test_stock_redis_py_sends_the_password_to_the_impostor(
    impostor: Impostor, tmp_path: Path, make_topology: TopologyFactory
) -> None:
    """The attack works against redis-py's own TLS: what the fix must stop."""
    info = _deployment(tmp_path, make_topology, impostor.port)
    client = redis.Redis(
        host="127.0.0.1",
        port=impostor.port,
        username="app",
        password=PASSWORD,
        socket_timeout=1,
        retry=no_retry(),
        **tls_options(info),
    )
    with pytest.raises(redis.RedisError):  # the impostor answers nothing
        client.ping()
    client.close()
    assert PASSWORD.encode() in impostor.heard()


def test_a_node_client_refuses_the_impostor_before_sending_anything(
    impostor: Impostor, tmp_path: Path, make_topology: TopologyFactory
) -> None:
    info = _deployment(tmp_path, make_topology, impostor.port)
    _refused(node_client(info, "n-0", socket_timeout=1, retry=no_retry()), impostor, UNTRUSTED)


def test_the_sentinel_clients_refuse_the_impostor(
    impostor: Impostor, tmp_path: Path, make_topology: TopologyFactory
) -> None:
    info = _deployment(tmp_path, make_topology, impostor.port, role="sentinel")
    manager = sentinel_manager(info, socket_timeout=1)
    with pytest.raises(redis.sentinel.MasterNotFoundError):
        manager.discover_master("n")
    assert impostor.heard() == b""


@pytest.mark.parametrize(
    ("client_for", "refusal"),
    [("master_for", UNTRUSTED), ("slave_for", "No slave found")],  # it tries every one
)
def test_the_failover_following_clients_refuse_an_impostor_named_by_a_sentinel(
    impostor: Impostor,
    tmp_path: Path,
    make_topology: TopologyFactory,
    client_for: str,
    refusal: str,
) -> None:
    """What a sentinel names (the master, a replica) is connected to pinned, too."""
    info = _deployment(tmp_path, make_topology, 1, role="sentinel")  # no sentinel asked
    manager = sentinel_manager(info, socket_timeout=1)
    address = ("127.0.0.1", impostor.port)
    manager.discover_master = lambda service_name: address  # type: ignore[method-assign]
    manager.discover_slaves = lambda service_name: [address]  # type: ignore[method-assign]
    _refused(getattr(manager, client_for)("n"), impostor, refusal)


def test_a_single_connection_client_is_refused_before_it_connects(
    impostor: Impostor, tmp_path: Path, make_topology: TopologyFactory
) -> None:
    """redis-py connects such a client as it makes it, on its own TLS: too early to pin."""
    info = _deployment(tmp_path, make_topology, impostor.port)
    with pytest.raises(ValueError, match="single_connection_client"):
        node_client(info, "n-0", single_connection_client=True)
    assert impostor.heard() == b""


def test_stock_redis_cluster_sends_the_password_to_the_impostor(
    impostor: Impostor, tmp_path: Path, make_topology: TopologyFactory
) -> None:
    info = _deployment(tmp_path, make_topology, impostor.port, role="cluster")
    with pytest.raises(RedisClusterException):  # the impostor answers nothing
        RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", impostor.port)],
            username="app",
            password=PASSWORD,
            socket_timeout=1,
            **tls_options(info),
        )
    assert PASSWORD.encode() in impostor.heard()


def test_the_cluster_client_refuses_the_impostor_before_sending_anything(
    impostor: Impostor, tmp_path: Path, make_topology: TopologyFactory
) -> None:
    info = _deployment(tmp_path, make_topology, impostor.port, role="cluster")
    with pytest.raises(RedisClusterException, match=UNTRUSTED):
        cluster_client(info, socket_timeout=1)
    assert impostor.heard() == b""


def test_a_pinned_pool_refuses_to_make_plaintext_connections() -> None:
    with pytest.raises(ValueError, match="TLS connections"):
        PinnedConnectionPool(connection_class=redis.Connection, host="127.0.0.1", port=1)


def test_a_cluster_published_on_ipv6_loopback_is_connected_to(
    tmp_path: Path, make_topology: TopologyFactory
) -> None:
    """`publish.host_ip: "::1"`: the client's URL must bracket the address. Nothing
    listens on port 1, so connecting fails, but as a connection, not as a bad URL."""
    info = _deployment(tmp_path, make_topology, 1, role="cluster", host="::1")
    with pytest.raises(RedisClusterException, match="::1"):
        cluster_client(info, socket_timeout=1)
