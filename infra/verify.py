"""`redis-infra verify`: prove a running deployment works and is locked down.

What an operator wants to see after `up` (or after a failover): a real round trip
through TLS as the application user, and the doors that must stay shut actually
shut, on every node.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

from redis.cluster import RedisCluster

import redis
from infra.client import cluster_client, connect, no_retry, node_client, tls_options
from infra.connection import ConnectionInfo, NodeAddress
from infra.observe_cluster import cluster_problems, cluster_state
from infra.observe_sentinel import convergence_problems, group_state


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def _check(name: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(name, True, probe())
    except AssertionError as exc:
        return Check(name, False, str(exc))
    except (redis.RedisError, OSError) as exc:
        return Check(name, False, f"{type(exc).__name__}: {exc}")


def round_trip(info: ConnectionInfo) -> str:
    """SET/GET/DEL as the application user, through the client an application would use."""
    app: redis.Redis | RedisCluster
    if info.topology == "cluster":
        app = cluster_client(info, retry=no_retry(), decode_responses=True)
    else:
        app = connect(info, retry=no_retry(), decode_responses=True)
    try:
        key = f"redis-infra:verify:{secrets.token_hex(4)}"
        assert app.set(key, "ok", ex=30), "SET was not acknowledged"
        assert app.get(key) == "ok", "GET did not return the value just written"
        app.delete(key)
    finally:
        app.close()
    via = {"sentinel": "through Sentinel", "cluster": "through the cluster client"}.get(
        info.topology, "over TLS"
    )
    return f"SET/GET/DEL as '{info.users['app'].username}' {via}"


def _app_refused(info: ConnectionInfo, node: NodeAddress, commands: list[tuple[str, ...]]) -> None:
    """Each command must be refused to the app user by the ACL."""
    app = node_client(info, node, retry=no_retry())
    try:
        for command in commands:
            try:
                app.execute_command(*command)
            except redis.exceptions.NoPermissionError:
                continue
            raise AssertionError(f"the app user may run {' '.join(command[:2])} on {node.name}")
    finally:
        app.close()


def least_privilege(info: ConnectionInfo, node: NodeAddress) -> str:
    _app_refused(info, node, [("FLUSHALL",), ("CONFIG", "GET", "dir"), ("KEYS", "*")])
    return f"app user refused FLUSHALL, CONFIG, KEYS on {node.name}"


def sentinel_least_privilege(info: ConnectionInfo, node: NodeAddress) -> str:
    service = str(info.service_name)
    _app_refused(
        info,
        node,
        [
            ("SENTINEL", "FAILOVER", service),
            ("SENTINEL", "SET", service, "quorum", "1"),
            ("SENTINEL", "RESET", "*"),
        ],
    )
    return f"app user may only discover the master on {node.name}"


def anonymous_refused(info: ConnectionInfo, node: NodeAddress) -> str:
    assert node.host is not None and node.port is not None
    anonymous = redis.Redis(
        host=node.host,
        port=node.port,
        protocol=2,
        retry=no_retry(),
        socket_timeout=5,
        **tls_options(info),
    )
    try:
        anonymous.ping()
    except redis.AuthenticationError:
        return "unauthenticated PING refused (default user off)"
    finally:
        anonymous.close()
    raise AssertionError(f"an unauthenticated client got an answer from {node.name}")


def plaintext_refused(node: NodeAddress) -> str:
    assert node.host is not None and node.port is not None
    with socket.create_connection((node.host, node.port), timeout=5) as plain:
        plain.sendall(b"PING\r\n")
        plain.settimeout(5)
        try:
            reply = plain.recv(64)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    assert b"PONG" not in reply, f"{node.name} answered a plaintext PING"
    return "plaintext connection refused"


def persistence(info: ConnectionInfo, node: NodeAddress) -> str:
    admin = node_client(info, node, role="admin", retry=no_retry(), decode_responses=True)
    try:
        stats = admin.info("persistence")
        policy = admin.config_get("maxmemory-policy")["maxmemory-policy"]
        role = admin.execute_command("ROLE")[0]
    finally:
        admin.close()
    assert stats["aof_enabled"] == 1, f"AOF is off on {node.name}"
    return f"role {role}, AOF on (last write {stats['aof_last_write_status']}), policy {policy}"


def converged(info: ConnectionInfo) -> str:
    state = group_state(info)
    problems = convergence_problems(info, state)
    assert not problems, "; ".join(problems)
    return f"one master ({state.masters()[0]}), every replica linked, every sentinel agrees"


def cluster_whole(info: ConnectionInfo) -> str:
    state = cluster_state(info)
    problems = cluster_problems(info, state)
    assert not problems, "; ".join(problems)
    return f"{len(state.masters(info))} masters serve all 16384 slots, every replica linked"


def verify(info: ConnectionInfo) -> list[Check]:
    """Every check that applies to the deployment's kind, node by node."""
    unpublished = [node.name for node in info.nodes if node.host is None]
    if unpublished:
        return [Check("published", False, f"not published, cannot verify from here: {unpublished}")]
    checks = [_check("TLS round trip", lambda: round_trip(info))]
    if info.topology == "sentinel":
        checks.append(_check("Sentinel group", lambda: converged(info)))
    if info.topology == "cluster":
        checks.append(_check("Cluster", lambda: cluster_whole(info)))
    for node in info.nodes:
        checks += _node_checks(info, node)
    return checks


def _node_checks(info: ConnectionInfo, node: NodeAddress) -> list[Check]:
    prefix = f"{node.name}: "
    checks = []
    if node.role == "sentinel":
        checks.append(
            _check(prefix + "least privilege", lambda: sentinel_least_privilege(info, node))
        )
    else:
        checks.append(_check(prefix + "least privilege", lambda: least_privilege(info, node)))
        checks.append(_check(prefix + "persistence", lambda: persistence(info, node)))
    checks.append(_check(prefix + "authentication", lambda: anonymous_refused(info, node)))
    checks.append(_check(prefix + "TLS only", lambda: plaintext_refused(node)))
    return checks
