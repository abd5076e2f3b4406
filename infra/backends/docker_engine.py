"""Connecting to the Docker engine, with a clear way out when there is none."""

from __future__ import annotations

import contextlib
import time

import docker
import docker.errors
from docker.models.networks import Network

from infra.core.errors import EngineError

START_ENGINE_FIX = (
    "start it (`sudo systemctl start docker`; in a checkout of redis-infra, `sudo bash "
    "scripts/ensure-docker.sh` installs docker.io if needed and starts dockerd), or point "
    "DOCKER_HOST at a running engine"
)


def docker_client() -> docker.DockerClient:
    """A client for the engine DOCKER_HOST (or the default socket) names, checked with a ping."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        # The message says it all: the chain (urllib3, requests, docker-py) only buries it.
        raise EngineError(f"no Docker engine answers ({exc}). Fix: {START_ENGINE_FIX}") from None
    return client


def remove_network(client: docker.DockerClient, name: str, *, settle_s: float = 5.0) -> None:
    """Remove a network whose containers were just removed; gone already is fine.

    Docker releases a removed container's endpoint while it handles the container's exit,
    which can come after `rm -f` returns: the network then still reports "active
    endpoints" for a moment (moby#42119 and kin; it failed one test teardown here). Wait
    that moment out, then force off endpoints whose container no longer exists. A
    container that still exists (one a user attached to the network) keeps its
    endpoint: Docker's refusal is raised, nothing of the user's is disconnected.
    """
    deadline = time.monotonic() + settle_s
    while True:
        try:
            network = client.networks.get(name)
            network.remove()
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if "active endpoints" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                if not _force_off_stale_endpoints(client, network):
                    raise
                with contextlib.suppress(docker.errors.NotFound):
                    client.networks.get(name).remove()
                return
        time.sleep(0.1)


def _force_off_stale_endpoints(client: docker.DockerClient, network: Network) -> bool:
    """Disconnect the endpoints of containers that are gone; False if one still exists."""
    endpoints = (network.attrs.get("Containers") or {}).items()
    stale = []
    for container_id, endpoint in endpoints:
        try:
            client.containers.get(container_id)
        except docker.errors.NotFound:
            stale.append(endpoint.get("Name") or container_id)
        else:
            return False
    for container in stale:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            network.disconnect(container, force=True)
    return bool(stale)
