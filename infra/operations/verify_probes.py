"""The doors `verify` proves shut, one probe per door: each tries what must be refused,
with the credentials its attacker would hold, and says what it saw."""

from __future__ import annotations

import socket
import ssl

import redis
from infra.core.connection import ConnectionInfo, NodeAddress
from infra.core.topology_schema import CLUSTER_BUS_OFFSET
from infra.operations.client import no_retry, node_client, tls_options
from infra.operations.pinned_tls import pinned_client

SENTINEL_CHANNEL = "__sentinel__:hello"


class CheckFailedError(Exception):
    """A verified property does not hold; the message says what was seen."""


class NotCheckableHereError(Exception):
    """This host cannot make the probe (e.g. no route to the internal network)."""


def require(condition: bool, failure: str) -> None:
    if not condition:
        raise CheckFailedError(failure)


def published_address(node: NodeAddress) -> tuple[str, int]:
    if node.host is None or node.port is None:
        raise CheckFailedError(f"{node.name} is not published on this host")
    return node.host, node.port


def _refused(
    info: ConnectionInfo, node: NodeAddress, role: str, commands: list[tuple[str, ...]]
) -> None:
    """Each command must be refused to `role` by the ACL."""
    client = node_client(info, node, role=role, retry=no_retry())
    try:
        for command in commands:
            try:
                client.execute_command(*command)
            except redis.exceptions.NoPermissionError:
                continue
            raise CheckFailedError(
                f"the {role} user may run {' '.join(command[:3])} on {node.name}"
            )
    finally:
        client.close()


def app_least_privilege(info: ConnectionInfo, node: NodeAddress) -> str:
    commands = [
        ("FLUSHALL",),
        ("CONFIG", "GET", "dir"),
        ("KEYS", "*"),
        ("FUNCTION", "FLUSH"),
        ("FUNCTION", "DELETE", "ratelimit"),
        ("SCRIPT", "FLUSH"),
        ("PUBLISH", SENTINEL_CHANNEL, "verify"),
    ]
    eval_allowed = bool(info.access.get("eval"))
    if not eval_allowed:
        commands.append(("EVAL", "return 1", "0"))
    _refused(info, node, "app", commands)
    scripts = "EVAL allowed (access.app_eval)" if eval_allowed else "EVAL"
    return (
        f"app refused FLUSHALL, CONFIG, KEYS, FUNCTION and SCRIPT FLUSH, {scripts}, "
        f"PUBLISH {SENTINEL_CHANNEL}"
    )


def only_deployed_users(info: ConnectionInfo, node: NodeAddress) -> str:
    """The ACL holds the topology's users only (a temporary benchmark user left by a
    killed `bench`, or a user someone added, is reported)."""
    admin = node_client(info, node, role="admin", retry=no_retry(), decode_responses=True)
    try:
        users = {str(user) for user in admin.acl_users()}
    finally:
        admin.close()
    deployed = info.settings.get("users")
    if not isinstance(deployed, dict):
        raise NotCheckableHereError("the topology's users are unknown (no operator.json settings)")
    extra = sorted(users - {"default", *(str(name) for name in deployed.values())})
    require(not extra, f"{node.name} has users the topology does not: {', '.join(extra)}")
    return f"ACL users: {', '.join(sorted(users))}"


def operator_cannot_weaken(info: ConnectionInfo, node: NodeAddress) -> str:
    # The values are the ones the node runs with: accepted, they would change nothing.
    _refused(
        info,
        node,
        "admin",
        [
            ("CONFIG", "SET", "port", "0"),
            ("CONFIG", "SET", "tls-auth-clients", "yes"),
            ("CONFIG", "SET", "appendonly", "yes"),
            ("CONFIG", "GET", "masterauth"),
            ("ACL", "SETUSER", info.credentials("admin").username),
        ],
    )
    # REPLICAOF NO ONE would promote a replica if it were allowed: ask the ACL instead.
    admin = node_client(info, node, role="admin", retry=no_retry(), decode_responses=True)
    try:
        verdict = admin.execute_command(
            "ACL", "DRYRUN", info.credentials("admin").username, "REPLICAOF", "NO", "ONE"
        )
    finally:
        admin.close()
    require(verdict != "OK", f"the operator may run REPLICAOF on {node.name}")
    return "operator refused CONFIG SET/GET, ACL SETUSER, REPLICAOF"


def sentinel_least_privilege(info: ConnectionInfo, node: NodeAddress) -> str:
    service = str(info.service_name)
    _refused(
        info,
        node,
        "app",
        [
            ("SENTINEL", "FAILOVER", service),
            ("SENTINEL", "SET", service, "quorum", "2"),
            ("SENTINEL", "RESET", "*"),
            ("PUBLISH", SENTINEL_CHANNEL, "verify"),
        ],
    )
    _refused(
        info,
        node,
        "admin",
        [
            ("SENTINEL", "SET", service, "down-after-milliseconds", "1"),
            ("SENTINEL", "MONITOR", service, "127.0.0.1", "6379", "2"),
            ("SENTINEL", "CONFIG", "GET", "*"),
            ("PUBLISH", SENTINEL_CHANNEL, "verify"),
        ],
    )
    return f"app may only discover the master; operator may not re-point or forge on {node.name}"


def anonymous_refused(info: ConnectionInfo, node: NodeAddress) -> str:
    host, port = published_address(node)
    anonymous = pinned_client(
        host=host, port=port, protocol=2, retry=no_retry(), socket_timeout=5, **tls_options(info)
    )
    try:
        anonymous.ping()
    except redis.AuthenticationError:
        return "unauthenticated PING refused (default user off)"
    finally:
        anonymous.close()
    raise CheckFailedError(f"an unauthenticated client got an answer from {node.name}")


def _handshake_without_certificate(info: ConnectionInfo, host: str, port: int) -> bytes | None:
    """What a TLS client without a certificate gets: None when the handshake is refused,
    else the reply to a PING (empty if the server closed the connection)."""
    context = ssl.create_default_context(cafile=info.tls.ca_file)
    context.check_hostname = False
    try:
        with (
            socket.create_connection((host, port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            # TLS 1.3 finishes the handshake first and refuses on the first read.
            tls.sendall(b"PING\r\n")
            return tls.recv(64)
    except (ssl.SSLError, ConnectionError, TimeoutError):
        return None


def client_certificate_required(info: ConnectionInfo, node: NodeAddress) -> str:
    """A TLS handshake without a client certificate must not get a session (mutual TLS);
    where clients present none (Cluster), it must get no more than a login prompt."""
    host, port = published_address(node)
    if not info.tls.cert_file:
        reply = _handshake_without_certificate(info, host, port)
        require(
            reply is None or reply.startswith(b"-NOAUTH"),
            f"{node.name} answered {reply!r} to a client without certificate or password",
        )
        return "clients present no certificate: without a password they get NOAUTH"
    reply = _handshake_without_certificate(info, host, port)
    require(not reply, f"{node.name} answered {reply!r} without a client certificate")
    return "TLS without a client certificate refused (tls-auth-clients yes)"


def cluster_bus_closed(info: ConnectionInfo, node: NodeAddress) -> str:
    """The cluster bus takes only peers holding a node certificate of the CA."""
    if node.address is None:
        raise CheckFailedError(f"{node.name} has no fixed address")
    bus = int(node.internal.rpartition(":")[2]) + CLUSTER_BUS_OFFSET
    try:
        socket.create_connection((node.address, bus), timeout=2).close()
    except OSError as exc:
        raise NotCheckableHereError(
            f"bus {node.address}:{bus} not reachable from this host ({exc}); not checked"
        ) from exc
    reply = _handshake_without_certificate(info, node.address, bus)
    require(reply is None, f"the bus of {node.name} took a TLS client without a certificate")
    return "the bus refuses a client without a node certificate"


def plaintext_refused(info: ConnectionInfo, node: NodeAddress) -> str:
    """No plaintext listener: INFO names the TLS port as the node's port (it names the
    plaintext one when there is one), and a plaintext PING gets no answer."""
    host, port = published_address(node)
    with socket.create_connection((host, port), timeout=5) as plain:
        plain.sendall(b"PING\r\n")
        plain.settimeout(5)
        try:
            reply = plain.recv(64)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    require(b"PONG" not in reply, f"{node.name} answered a plaintext PING")
    tls_port = int(node.internal.rpartition(":")[2])
    admin = node_client(info, node, role="admin", retry=no_retry(), decode_responses=True)
    try:
        listening = int(admin.info("server")["tcp_port"])
    finally:
        admin.close()
    require(
        listening == tls_port,
        f"{node.name} has a plaintext listener on port {listening} (TLS is {tls_port})",
    )
    return "no plaintext listener (port 0), plaintext PING unanswered"
