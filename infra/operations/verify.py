"""`redis-infra verify`: prove a running deployment works and is locked down.

What an operator wants to see after `up` (or after a failover): a real round trip
through TLS as the application user, and the doors that must stay shut actually
shut, on every node, checked live (never `assert`: every check holds under
`python -O` too). Probes that try a refused command use harmless arguments (the
value the node already has), so a node that wrongly accepts one is not harmed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

import docker
import docker.errors
from redis.cluster import RedisCluster

import redis
from infra.core.connection import ConnectionInfo, NodeAddress
from infra.core.sizes import parse_size
from infra.operations.client import cluster_client, connect, no_retry, node_client
from infra.operations.observe_cluster import cluster_problems, cluster_state
from infra.operations.observe_sentinel import convergence_problems, group_state
from infra.operations.verify_probes import (
    CheckFailedError,
    NotCheckableHereError,
    anonymous_refused,
    app_least_privilege,
    client_certificate_required,
    cluster_bus_closed,
    only_deployed_users,
    operator_cannot_weaken,
    plaintext_refused,
    require,
    sentinel_least_privilege,
)


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


def _app_client(info: ConnectionInfo) -> redis.Redis | RedisCluster:
    if info.topology == "cluster":
        return cluster_client(info, retry=no_retry(), decode_responses=True)
    return connect(info, retry=no_retry(), decode_responses=True)


def round_trip(info: ConnectionInfo) -> str:
    """SET/GET/DEL and a call of the function library, as the application would."""
    app = _app_client(info)
    try:
        key = f"redis-infra:verify:{{{secrets.token_hex(4)}}}"
        require(bool(app.set(key, "ok", ex=30)), "SET was not acknowledged")
        require(app.get(key) == "ok", "GET did not return the value just written")
        allowed = app.fcall("token_bucket", 1, f"{key}:bucket", 5, 1)
        require(allowed == 1, f"FCALL token_bucket answered {allowed!r}, not 1")
        app.delete(key, f"{key}:bucket")
    finally:
        app.close()
    via = {"sentinel": "through Sentinel", "cluster": "through the cluster client"}.get(
        info.topology, "over TLS"
    )
    return f"SET/GET/DEL and FCALL token_bucket as '{info.credentials('app').username}' {via}"


def persistence(info: ConnectionInfo, node: NodeAddress) -> str:
    wanted = (info.settings.get("persistence") or {}).get("aof", True)
    admin = node_client(info, node, role="admin", retry=no_retry(), decode_responses=True)
    try:
        stats = admin.info("persistence")
        memory = admin.info("memory")
        role = admin.execute_command("ROLE")[0]
    finally:
        admin.close()
    require(
        bool(stats["aof_enabled"]) == bool(wanted),
        f"AOF is {'on' if stats['aof_enabled'] else 'off'} on {node.name}, the topology says "
        f"{'on' if wanted else 'off'}",
    )
    for field in ("aof_last_write_status", "rdb_last_bgsave_status"):
        require(stats[field] == "ok", f"{field} is {stats[field]} on {node.name}")
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
            require("maximum allowed size" in str(exc), f"SETRANGE refused oddly: {exc}")
            return f"a value over {limit // 1024**2} MiB is refused before it is allocated"
        app.delete(key)
        raise CheckFailedError(f"the master built a value of {limit + 1} bytes in one command")
    finally:
        app.close()


def converged(info: ConnectionInfo) -> str:
    state = group_state(info)
    problems = convergence_problems(info, state)
    require(not problems, "; ".join(problems))
    return f"one master ({state.masters()[0]}), every replica linked, every sentinel agrees"


def cluster_whole(info: ConnectionInfo) -> str:
    state = cluster_state(info)
    problems = cluster_problems(info, state)
    require(not problems, "; ".join(problems))
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
    require(not problems, "; ".join(problems))
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
