"""When a deployment is ready: what `up` waits for before it returns."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from infra.core.connection import ConnectionInfo
from infra.core.errors import DeploymentError
from infra.core.plan_specs import ALIVE_EVERY_S, ping_poll_s
from infra.operations.client import no_retry, node_client
from infra.operations.observe_cluster import wait_cluster_ready
from infra.operations.observe_sentinel import wait_converged

# A state read costs ~40 ms of six pinned TLS connections (pinned_tls): polling as
# often as that keeps `up` from waiting on its own poll; drills keep their 0.2 s.
READY_POLL_S = 0.05


def wait_for_ping(
    info: ConnectionInfo, timeout_s: float, alive: Callable[[], None] | None = None
) -> None:
    """Until every published node answers an authenticated TLS PING as the app user.

    `alive` raises if a container died meanwhile, so a crash fails at once with its
    log instead of after the whole timeout.
    """
    began = checked_alive = time.monotonic()
    deadline = began + timeout_s
    for node in info.nodes:
        if node.host is None:
            continue
        client = node_client(info, node, socket_timeout=1.0, retry=no_retry())
        last_error: Exception | None = None
        try:
            while True:
                try:
                    if client.ping():
                        break
                except redis.AuthenticationError as exc:
                    raise DeploymentError(
                        f"{node.name} refused the app user's password: the connection file and "
                        f"the deployed ACL disagree ({exc})"
                    ) from exc
                except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                    # Not listening yet, or TLS not up yet: both mean "starting".
                    last_error = exc
                if alive is not None and time.monotonic() - checked_alive >= ALIVE_EVERY_S:
                    alive()  # an engine call per container: not at every poll
                    checked_alive = time.monotonic()
                if time.monotonic() > deadline:
                    if alive is not None:
                        alive()  # a container that died meanwhile: its log says why
                    raise DeploymentError(
                        f"{node.name} did not answer an authenticated TLS PING on "
                        f"{node.host}:{node.port} within {timeout_s:.0f} s "
                        f"(last error: {last_error})"
                    )
                time.sleep(ping_poll_s(time.monotonic() - began))
        finally:
            client.close()


def wait_topology_ready(
    info: ConnectionInfo, timeout_s: float, alive: Callable[[], None] | None = None
) -> None:
    """Beyond every node answering: a Sentinel group has converged (each replica's link
    up, each sentinel knowing the master, its peers and all replicas); a Cluster serves
    all 16384 slots, every shard complete, every replica's link up."""
    if info.topology == "sentinel":
        wait_converged(info, timeout_s, alive, READY_POLL_S)
    elif info.topology == "cluster":
        wait_cluster_ready(info, timeout_s, alive, READY_POLL_S)
