"""Fixtures that deploy real topologies on the local Docker engine.

Every deployment gets a unique name (so parallel or leftover runs never collide)
and is removed afterwards, even when the test fails. Under CI=true a missing
engine fails the run instead of skipping it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from testcontainers.core.config import testcontainers_config

from infra.backends.docker_engine import docker_client
from infra.backends.image import DEFAULT_IMAGE, build_image
from infra.core.connection import ConnectionInfo
from infra.core.errors import EngineError
from infra.core.model import Topology
from infra.core.topology import load_topology
from infra.operations.deploy import down, up
from infra.testing import RedisDeployment

# Ryuk (testcontainers' reaper) is an image from a registry this machine cannot reach;
# our fixtures remove what they create themselves.
testcontainers_config.ryuk_disabled = True
PROBE_IMAGE = "redis-infra/probe:test"
PROBE_MANIFEST = Path(__file__).with_name("probe-image.yaml")


@pytest.fixture(scope="session", autouse=True)
def state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Deployments' passwords and certificates in a folder of this run, not the user's."""
    home = tmp_path_factory.mktemp("state-home")
    home.chmod(0o700)
    before = os.environ.get("REDIS_INFRA_STATE_HOME")
    os.environ["REDIS_INFRA_STATE_HOME"] = str(home)
    yield home
    if before is None:
        os.environ.pop("REDIS_INFRA_STATE_HOME", None)
    else:
        os.environ["REDIS_INFRA_STATE_HOME"] = before


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    try:
        return docker_client()
    except EngineError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no Docker engine: {exc}")
        pytest.skip(f"no Docker engine: {exc}")


@pytest.fixture(scope="session")
def redis_image(engine: docker.DockerClient) -> str:
    try:
        engine.images.get(DEFAULT_IMAGE)
    except docker.errors.ImageNotFound:
        build_image(engine, DEFAULT_IMAGE)
    return DEFAULT_IMAGE


@pytest.fixture(scope="session")
def probe_image(engine: docker.DockerClient) -> str:
    """An 'application container' image: busybox and the openssl client (tests only)."""
    build_image(engine, PROBE_IMAGE, PROBE_MANIFEST)
    return PROBE_IMAGE


def unique_name(prefix: str) -> str:
    return f"it-{prefix}-{secrets.token_hex(3)}"


@dataclass
class Deployment:
    topology: Topology
    info: ConnectionInfo
    connection_file: Path
    engine: docker.DockerClient

    @property
    def name(self) -> str:
        return self.topology.name

    def container(self, node: str | None = None) -> Any:
        return self.engine.containers.get(node or self.info.data_nodes()[0].container)


DeployFactory = Callable[..., Deployment]


@pytest.fixture(scope="module")
def deploy(engine: docker.DockerClient, redis_image: str) -> Iterator[DeployFactory]:
    """Deploy topologies for one test module; all of them are removed at its end."""
    names: list[str] = []

    def make(kind: str = "single", prefix: str = "t", **overrides: Any) -> Deployment:
        name = unique_name(prefix)
        names.append(name)
        topology = load_topology(kind, name, {"image": redis_image, **overrides})
        result = up(topology, engine)  # files in the run's state home (operator.json beside)
        return Deployment(topology, result.info, result.connection_file, engine)

    yield make
    for name in names:
        down(name, engine, keep_data=False)


@pytest.fixture
def shared_sentinel(redis_sentinel_deployment: RedisDeployment) -> Deployment:
    """The session's Sentinel group (the redis-infra plugin's, tests/conftest.py), for
    tests that need a group but not one of their own: one bring-up serves the drills,
    the load runs and the example application. Every test leaves it whole
    (the drills converge it again); none may depend on which node is master."""
    group = redis_sentinel_deployment
    assert group.topology is not None
    return Deployment(group.topology, group.info, group.connection_file, group.engine)
