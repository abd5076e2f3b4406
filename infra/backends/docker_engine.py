"""Connecting to the Docker engine, with a clear way out when there is none."""

from __future__ import annotations

import contextlib
import time

import docker
import docker.errors

from infra.core.errors import EngineError

START_ENGINE_FIX = (
    "start one with `sudo bash scripts/ensure-docker.sh` (installs docker.io if needed and "
    "starts dockerd), or point DOCKER_HOST at a running engine"
)


def docker_client() -> docker.DockerClient:
    """A client for the engine DOCKER_HOST (or the default socket) names, checked with a ping."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        raise EngineError(f"no Docker engine answers ({exc}). Fix: {START_ENGINE_FIX}") from exc
    return client


def remove_network(client: docker.DockerClient, name: str, *, settle_s: float = 5.0) -> None:
    """Remove a network whose containers were just removed; gone already is fine.

    Docker releases a removed container's endpoint while it handles the container's exit,
    which can come after `rm -f` returns: the network then still reports "active
    endpoints" for a moment (moby#42119 and kin; it failed one test teardown here). Wait
    that moment out, then force off what is still attached: the network is going anyway.
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
                for endpoint in (network.attrs.get("Containers") or {}).values():
                    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                        network.disconnect(endpoint.get("Name"), force=True)
                with contextlib.suppress(docker.errors.NotFound):
                    client.networks.get(name).remove()
                return
        time.sleep(0.1)
