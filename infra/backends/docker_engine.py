"""Connecting to the Docker engine, with a clear way out when there is none."""

from __future__ import annotations

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
