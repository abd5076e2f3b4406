"""`redis-infra verify`: prove a running deployment works and is locked down.

What an operator wants to see after `up` (or after a failover): a real round trip
through TLS as the application user, and the doors that must stay shut actually
shut, on every node, checked live (never `assert`: every check holds under
`python -O` too). Probes that try a refused command use harmless arguments (the
value the node already has), so a node that wrongly accepts one is not harmed.
"""

from __future__ import annotations

import secrets
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import docker
import docker.errors
from redis.cluster import RedisCluster

import redis
from infra.core.connection import ConnectionInfo, NodeAddress
from infra.core.sizes import parse_size
from infra.operations.client import cluster_client, connect, no_retry, node_client, tls_options
from infra.operations.observe_cluster import cluster_problems, cluster_state
from infra.operations.observe_sentinel import convergence_problems, group_state

SENTINEL_CHANNEL = "__sentinel__:hello"
CLUSTER_BUS_OFFSET = 10000


class CheckFailedError(Exception):
    """A verified property does not hold; the message says what was seen."""


class NotCheckableHereError(Exception):
    """This host cannot make the probe (e.g. no route to the internal network)."""


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    advisory: bool = False  # reported, never failing (e.g. a probe this host cannot make)


def _check(name: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(name, True, probe())
    except NotCheckableHereError as exc:
        return Check(name, True, str(exc), advisory=True)
    except CheckFailedError as exc:
        return Check(name, False, str(exc))
    except (redis.RedisError, OSError, KeyError, docker.errors.DockerException) as exc:
        return Check(name, False, f"{type(exc).__name__}: {exc}")


def _require(condition: bool, failure: str) -> None:
    if not condition:
        raise CheckFailedError(failure)


def _app_client(info: ConnectionInfo) -> redis.Redis | RedisCluster:
    if info.topology == "cluster":
        return cluster_client(info, retry=no_retry(), decode_responses=True)
    return connect(info, retry=no_retry(), decode_responses=True)


def round_trip(info: ConnectionInfo) -> str:
    """SET/GET/DEL and a call of the function library, as the application would."""
    app = _app_client(info)
    try:
        key = f"redis-infra:verify:{{{secrets.token_hex(4)}}}"
        _require(bool(app.set(key, "ok", ex=30)), "SET was not acknowledged")
        _require(app.get(key) == "ok", "GET did not return the value just written")
        allowed = app.fcall("token_bucket", 1, f"{key}:bucket", 5, 1)
        _require(allowed == 1, f"FCALL token_bucket answered {allowed!r}, not 1")
        app.delete(key, f"{key}:bucket")
    finally:
        app.close()
    via = {"sentinel": "through Sentinel", "cluster": "through the cluster client"}.get(
        info.topology, "over TLS"
    )
    return f"SET/GET/DEL and FCALL token_bucket as '{info.credentials('app').username}' {via}"


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
    _require(not extra, f"{node.name} has users the topology does not: {', '.join(extra)}")
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
    _require(verdict != "OK", f"the operator may run REPLICAOF on {node.name}")
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
    host, port = _published(node)
    anonymous = redis.Redis(
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
    host, port = _published(node)
    if not info.tls.cert_file:
        reply = _handshake_without_certificate(info, host, port)
        _require(
            reply is None or reply.startswith(b"-NOAUTH"),
            f"{node.name} answered {reply!r} to a client without certificate or password",
        )
        return "clients present no certificate: without a password they get NOAUTH"
    reply = _handshake_without_certificate(info, host, port)
    _require(not reply, f"{node.name} answered {reply!r} without a client certificate")
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
    _require(reply is None, f"the bus of {node.name} took a TLS client without a certificate")
    return "the bus refuses a client without a node certificate"


def plaintext_refused(info: ConnectionInfo, node: NodeAddress) -> str:
    """No plaintext listener: INFO names the TLS port as the node's port (it names the
    plaintext one when there is one), and a plaintext PING gets no answer."""
    host, port = _published(node)
    with socket.create_connection((host, port), timeout=5) as plain:
        plain.sendall(b"PING\r\n")
        plain.settimeout(5)
        try:
            reply = plain.recv(64)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    _require(b"PONG" not in reply, f"{node.name} answered a plaintext PING")
    tls_port = int(node.internal.rpartition(":")[2])
    admin = node_client(info, node, role="admin", retry=no_retry(), decode_responses=True)
    try:
        listening = int(admin.info("server")["tcp_port"])
    finally:
        admin.close()
    _require(
        listening == tls_port,
        f"{node.name} has a plaintext listener on port {listening} (TLS is {tls_port})",
    )
    return "no plaintext listener (port 0), plaintext PING unanswered"


def persistence(info: ConnectionInfo, node: NodeAddress) -> str:
    wanted = (info.settings.get("persistence") or {}).get("aof", True)
    admin = node_client(info, node, role="admin", retry=no_retry(), decode_responses=True)
    try:
        stats = admin.info("persistence")
        memory = admin.info("memory")
        role = admin.execute_command("ROLE")[0]
    finally:
        admin.close()
    _require(
        bool(stats["aof_enabled"]) == bool(wanted),
        f"AOF is {'on' if stats['aof_enabled'] else 'off'} on {node.name}, the topology says "
        f"{'on' if wanted else 'off'}",
    )
    for field in ("aof_last_write_status", "rdb_last_bgsave_status"):
        _require(stats[field] == "ok", f"{field} is {stats[field]} on {node.name}")
    return (
        f"role {role}, AOF {'on' if stats['aof_enabled'] else 'off'} (writes ok), "
        f"policy {memory['maxmemory_policy']}"
    )


def values_bounded(info: ConnectionInfo) -> str:
    """A value beyond clients.max_value is refused before it is allocated."""
    limit = parse_size((info.settings.get("clients") or {}).get("max_value"))
    if not limit:
        raise CheckFailedError("clients.max_value unknown: the operator file has no settings")
    app = _app_client(info)
    key = f"redis-infra:verify:{secrets.token_hex(4)}"
    try:
        try:
            app.setrange(key, limit, "x")
        except redis.ResponseError as exc:
            _require("maximum allowed size" in str(exc), f"SETRANGE refused oddly: {exc}")
            return f"a value over {limit // 1024**2} MiB is refused before it is allocated"
        app.delete(key)
        raise CheckFailedError(f"the master built a value of {limit + 1} bytes in one command")
    finally:
        app.close()


def converged(info: ConnectionInfo) -> str:
    state = group_state(info)
    problems = convergence_problems(info, state)
    _require(not problems, "; ".join(problems))
    return f"one master ({state.masters()[0]}), every replica linked, every sentinel agrees"


def cluster_whole(info: ConnectionInfo) -> str:
    state = cluster_state(info)
    problems = cluster_problems(info, state)
    _require(not problems, "; ".join(problems))
    return f"{len(state.masters(info))} masters serve all 16384 slots, every replica linked"


def containers_intact(info: ConnectionInfo, engine: docker.DockerClient) -> str:
    """No node was killed for memory or restarted by Docker since it was created."""
    problems = []
    for node in info.data_nodes():
        try:
            attrs = engine.api.inspect_container(node.container)
        except docker.errors.NotFound:
            problems.append(f"{node.container} does not exist")
            continue
        if attrs["State"].get("OOMKilled"):
            problems.append(f"{node.container} was killed for memory (OOMKilled)")
        if attrs.get("RestartCount"):
            problems.append(f"{node.container} was restarted {attrs['RestartCount']} time(s)")
    _require(not problems, "; ".join(problems))
    return "no node OOM-killed or restarted by Docker"


def verify(info: ConnectionInfo, engine: docker.DockerClient | None = None) -> list[Check]:
    """Every check that applies to the deployment's kind, node by node (with `engine`,
    also what Docker saw happen to the containers)."""
    unpublished = [node.name for node in info.nodes if node.host is None]
    if unpublished:
        return [Check("published", False, f"not published, cannot verify from here: {unpublished}")]
    checks = [
        _check("TLS round trip", lambda: round_trip(info)),
        _check("bounded values", lambda: values_bounded(info)),
    ]
    if engine is not None:
        checks.append(_check("containers", lambda: containers_intact(info, engine)))
    if info.topology == "sentinel":
        checks.append(_check("Sentinel group", lambda: converged(info)))
    if info.topology == "cluster":
        checks.append(_check("Cluster", lambda: cluster_whole(info)))
    for node in info.nodes:
        checks += _node_checks(info, node)
    return checks


def _node_checks(info: ConnectionInfo, node: NodeAddress) -> list[Check]:
    prefix = f"{node.name}: "
    probes: list[tuple[str, Callable[[], str]]]
    if node.role == "sentinel":
        probes = [("least privilege", lambda: sentinel_least_privilege(info, node))]
    else:
        probes = [
            ("app least privilege", lambda: app_least_privilege(info, node)),
            ("operator limits", lambda: operator_cannot_weaken(info, node)),
            ("users", lambda: only_deployed_users(info, node)),
            ("persistence", lambda: persistence(info, node)),
        ]
        if info.topology == "cluster":
            probes.append(("cluster bus", lambda: cluster_bus_closed(info, node)))
    probes += [
        ("TLS only", lambda: plaintext_refused(info, node)),
        ("authentication", lambda: anonymous_refused(info, node)),
        ("client certificate", lambda: client_certificate_required(info, node)),
    ]
    return [_check(prefix + name, probe) for name, probe in probes]


def _published(node: NodeAddress) -> tuple[str, int]:
    if node.host is None or node.port is None:
        raise CheckFailedError(f"{node.name} is not published on this host")
    return node.host, node.port
