"""The shipped function library, loaded from the host when every node is published.

The plan's functions job (cluster_jobs.functions_script), and the cluster-create job's
last steps, do this from a container on the deployment's network: that is what Pulumi
runs, and what `up` and the fixtures run when a node is not reachable from the host.
From the host it takes a few milliseconds over the connection the readiness check
already trusts; a job container's start and removal cost ~0.35 s of a single node's
~0.6 s bring-up here. The order is the job's: the topology is ready (a Sentinel group
converged, so no failover can throw a freshly loaded library away; a Cluster serving
every slot, every replica linked), then the library on every master, then on every node.
"""

from __future__ import annotations

from collections.abc import Callable

import redis
from infra.core.connection import ConnectionInfo
from infra.core.errors import DeploymentError
from infra.core.plan_specs import JobKind, JobSpec, Plan
from infra.core.render import function_library
from infra.operations.client import admin_probe
from infra.operations.polling import until_healthy


def host_loads_library(plan: Plan, info: ConnectionInfo) -> bool:
    """A job of the plan loads the library (the functions job, or the cluster-create job,
    whose variant leaves it to the host) and the host reaches every node (a Sentinel
    group's readiness, which must come first, is read from the sentinels)."""
    return any(
        job.kind is JobKind.FUNCTIONS or job.host_finishes is not None
        for job in plan.bootstrap_jobs
    ) and all(node.host is not None for node in info.nodes)


def container_jobs(plan: Plan, info: ConnectionInfo) -> tuple[JobSpec, ...]:
    """The bootstrap jobs a backend still runs as containers: where the host loads the
    library, no functions job, and the cluster-create job without its last steps (the
    library, then a wait for every node's readiness that the host does anyway: its
    sequence of `redis-cli` runs, the container's exit and removal cost ~0.4 s after
    the last master serves)."""
    if not host_loads_library(plan, info):
        return plan.bootstrap_jobs
    return tuple(
        job.host_finishes or job for job in plan.bootstrap_jobs if job.kind is not JobKind.FUNCTIONS
    )


def library_name(code: str) -> str:
    """The name on the library's first line, `#!lua name=NAME`."""
    first = code.splitlines()[0] if code else ""
    if "name=" not in first:  # pragma: no cover - the shipped library is checked in tests
        raise DeploymentError(f"the function library's first line names no library: {first!r}")
    return first.split("name=", 1)[1].strip()


def load_library(
    info: ConnectionInfo, timeout_s: float, alive: Callable[[], None] | None = None
) -> None:
    """Load the library (REPLACE) on every master as the operator, then wait until every
    data node holds it, so a replica promoted right after bring-up still serves FCALL.
    One connection per node for all of it: each TLS handshake costs ~10 ms here."""
    code = function_library()
    name = library_name(code)
    clients = {node.name: admin_probe(info, node, timeout_s=5.0) for node in info.data_nodes()}
    try:
        try:
            masters = [node for node, client in clients.items() if _is_master(client)]
            if not masters:
                raise DeploymentError(
                    f"no master among {', '.join(clients)} to load the function library on"
                )
            for node in masters:
                clients[node].function_load(code, replace=True)
        except redis.RedisError as exc:  # a refusal, or a node gone: say which and why
            if alive is not None:
                alive()  # a container that stopped meanwhile: its log says more
            raise DeploymentError(
                f"loading the function library {name} on {info.name} failed: {exc}"
            ) from exc
        until_healthy(
            lambda: {node: _holds(client, name) for node, client in clients.items()},
            lambda held: [f"{node} lacks library {name}" for node, ok in held.items() if not ok],
            timeout_s,
            f"function library {name} of {info.name}",
            alive,
            poll_s=0.02,
        )
    finally:
        for client in clients.values():
            client.close()


def nodes_lacking_library(info: ConnectionInfo) -> list[str]:
    """The data nodes that do not hold the shipped library (a run stopped before it
    loaded it: the host loads it after the nodes start, so a killed `up` can leave it)."""
    name = library_name(function_library())
    lacking = []
    for node in info.data_nodes():
        client = admin_probe(info, node, timeout_s=5.0)
        try:
            if not _holds(client, name):
                lacking.append(node.name)
        finally:
            client.close()
    return lacking


def _is_master(client: redis.Redis) -> bool:
    return str(client.info("replication").get("role")) == "master"


def _holds(client: redis.Redis, name: str) -> bool:
    try:
        return bool(client.function_list(library=name))
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
