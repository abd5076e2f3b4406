"""The pytest plugin as an application's suite meets it: inner pytest runs (pytester)
that use the fixtures, a run killed mid-test whose containers the next run sweeps, and
a suite attached to a deployment that exists already."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import docker
import pytest

import redis
from infra.backends.local_inventory import LABEL_STATE_DIR
from infra.core.errors import DeploymentError
from infra.core.plan_specs import LABEL_NAME
from infra.operations.client import node_client
from infra.testing import RedisDeployment, SentinelDeployment, SingleDeployment
from infra.testing.sweep import OWNER_LABEL, STATE_PREFIX

APP_SUITE = """
import pytest
import redis
from infra.testing.plugin import redis_deployment_factory

small_single = redis_deployment_factory("single", settings={"memory.maxmemory": "64mb"})
WRITTEN = []


def test_a_write(redis_single):
    redis_single.set("app:visits", 1)
    assert redis_single.get("app:visits") == b"1"
    WRITTEN.append("app:visits")


def test_the_next_test_starts_empty(redis_single):
    assert WRITTEN == ["app:visits"]  # the write above happened, on this deployment
    assert redis_single.get("app:visits") is None  # the fixture flushed after that test


def test_the_client_is_the_application_user(redis_single, redis_single_deployment):
    with pytest.raises(redis.exceptions.NoPermissionError):
        redis_single.dbsize()  # the application's allow-list has no DBSIZE
    with redis_single_deployment.client("admin") as operator:
        assert operator.dbsize() == 0  # the operator's has


@pytest.mark.redis_topology("single")
def test_marker_gives_the_sessions_deployment(redis_client, redis_deployment,
                                              redis_single_deployment):
    assert redis_deployment is redis_single_deployment and redis_deployment.kind == "single"
    assert redis_client.ping()


@pytest.mark.redis_topology("single", memory__maxmemory="32mb")
def test_marker_settings_give_a_deployment_of_its_own(redis_client, redis_deployment,
                                                      redis_single_deployment):
    assert redis_deployment.name != redis_single_deployment.name
    assert redis_client.info("memory")["maxmemory"] == 32 * 1024 * 1024


@pytest.mark.redis_topology("single", {"memory.maxmemory": "48mb"})
def test_marker_settings_as_a_mapping_of_dotted_paths(redis_client):
    assert redis_client.info("memory")["maxmemory"] == 48 * 1024 * 1024


def test_a_factory_fixture_has_its_settings(small_single, redis_single_deployment):
    assert small_single.name != redis_single_deployment.name
    with small_single.client() as r:
        assert r.info("memory")["maxmemory"] == 64 * 1024 * 1024


@pytest.mark.redis_topology()
def test_a_marker_without_a_topology_is_refused(redis_deployment):
    pass
"""

KILLED_SUITE = """
import os, signal

def test_dies_holding_a_deployment(redis_single_deployment):
    print("DEPLOYMENT", redis_single_deployment.name, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""

LIVE_OWNER = """
import sys
from infra.testing import SingleDeployment

with SingleDeployment(sys.argv[1]) as deployment:
    print(deployment.name, deployment.connection_file.parent, flush=True)
    sys.stdin.read()  # until the test closes it
"""

ATTACHED_SUITE = """
import pytest


def test_uses_the_existing_deployment(redis_single_deployment, redis_single):
    assert redis_single_deployment.name == "{name}"
    assert redis_single.get("app:kept") == b"yes"


def test_uses_the_existing_group(redis_sentinel_deployment, redis_sentinel):
    assert redis_sentinel_deployment.name == "{group}"
    assert redis_sentinel.get("app:kept") == b"group"


@pytest.mark.redis_topology("single", memory__maxmemory="32mb")
def test_settings_of_its_own_start_a_deployment_of_its_own(redis_deployment):
    assert redis_deployment.name != "{name}"
"""


def _labelled(engine: docker.DockerClient, label: str) -> list[str]:
    return [str(c.name) for c in engine.containers.list(all=True, filters={"label": label})]


def _owned(engine: docker.DockerClient) -> set[str]:
    """Every container, network and volume a test deployment made (owner-labelled)."""
    selector: dict[str, str | list[str] | bool] = {"label": OWNER_LABEL}
    return (
        {f"container {c.name}" for c in engine.containers.list(all=True, filters=selector)}
        | {f"network {n.name}" for n in engine.networks.list(filters=selector)}
        | {f"volume {v.name}" for v in engine.volumes.list(filters=selector)}
    )


def test_a_killed_run_leaves_nothing_once_the_next_run_starts(
    pytester: pytest.Pytester, engine: docker.DockerClient, redis_image: str
) -> None:
    killed = pytester.makepyfile(killed=KILLED_SUITE)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "redis_infra", "-q", "-s", str(killed)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=pytester.path,
    )
    assert run.returncode == -signal.SIGKILL, run.stdout + run.stderr
    name = next(line.split()[1] for line in run.stdout.splitlines() if "DEPLOYMENT" in line)
    left = _labelled(engine, f"{LABEL_NAME}={name}")
    assert left, "the killed run should have left its containers"
    killed_leftovers = {item for item in _owned(engine) if name in item}
    assert any(item.startswith("network") for item in killed_leftovers)
    assert any(item.startswith("volume") for item in killed_leftovers)
    before = _owned(engine) - killed_leftovers  # this session's own, still running
    labels = engine.containers.get(left[0]).labels
    assert OWNER_LABEL in labels
    secrets_folder = Path(labels[LABEL_STATE_DIR])
    assert (secrets_folder / "secrets.json").exists()  # the dead run's passwords, on disk

    pytester.makepyfile(test_app=APP_SUITE)
    # A deployment of another process that still runs (a second suite on the same
    # engine) while the next run sweeps: the sweep must leave it.
    with subprocess.Popen(
        [sys.executable, "-c", LIVE_OWNER, redis_image],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as other:
        assert other.stdin is not None and other.stdout is not None
        alive, home = other.stdout.readline().split()
        alive_before = {item for item in _owned(engine) if alive in item}
        assert alive_before, "the other process's deployment should be up"
        result = pytester.runpytest_inprocess("-p", "redis_infra", "test_app.py")
        assert {item for item in _owned(engine) if alive in item} == alive_before
        assert Path(home).exists()  # its secrets folder too
        other.stdin.close()  # it stops its deployment and exits
        assert other.wait(timeout=60) == 0
    # Swept as the run started: containers, networks, volumes and the secrets folder.
    assert {item for item in _owned(engine) if name in item} == set()
    assert not secrets_folder.exists()
    result.assert_outcomes(passed=7, errors=1)
    result.stdout.fnmatch_lines(["*redis_topology needs a topology*"])
    # ... and the run removed its own four deployments when it ended.
    assert _owned(engine) == before


def test_a_suite_attaches_to_deployments_through_their_connection_files(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    redis_image: str,
    redis_sentinel_deployment: SentinelDeployment,
) -> None:
    group = redis_sentinel_deployment
    with SingleDeployment(redis_image) as existing:
        existing.client().set("app:kept", "yes")
        with group.client() as app:
            app.set("app:kept", "group")
        suite = ATTACHED_SUITE.format(name=existing.name, group=group.name)
        pytester.makepyfile(test_attached=suite)
        # Both files through the variable, as a CI job that brought them up would set it.
        files = os.pathsep.join(str(d.connection_file) for d in (existing, group))
        monkeypatch.setenv("REDIS_INFRA_CONNECTION", files)
        result = pytester.runpytest_inprocess("-p", "redis_infra")
        result.assert_outcomes(passed=3)
        # Attached, not owned: the suite's end left them running, their data flushed.
        assert existing.container().status == "running"
        assert existing.client().get("app:kept") is None
        assert Path(existing.connection_file).exists()
        with group.client() as app:
            assert app.get("app:kept") is None
        group.wait_converged(timeout_s=10)

        # Without the operator's file beside it, a reset cannot run, and says why.
        alone = tmp_path / "connection.json"
        alone.touch(mode=0o600)  # as private as the original, or reading it is refused
        alone.write_bytes(existing.connection_file.read_bytes())
        with pytest.raises(DeploymentError, match="needs the operator's credentials"):
            SingleDeployment.attach(alone).reset()


def test_a_failed_start_leaves_nothing_and_says_why_with_the_log(
    engine: docker.DockerClient, probe_image: str
) -> None:
    # An image without redis-server: the config job runs (it needs only a shell), the
    # node's shell finds no Redis to start. The context manager must raise at once,
    # naming the node and why, and leave neither a container, a network, a volume nor
    # the secrets folder behind.
    deployment = SingleDeployment(probe_image)
    with pytest.raises(DeploymentError) as failed, deployment:
        pytest.fail("a node without redis-server must not come up")
    message = str(failed.value)
    assert f"{deployment.name}-redis stopped before" in message
    assert "redis-server: not found" in message  # its log, the shell's own words
    assert {item for item in _owned(engine) if deployment.name in item} == set()
    assert _labelled(engine, f"{LABEL_NAME}={deployment.name}") == []
    assert list(Path(tempfile.gettempdir()).glob(f"{STATE_PREFIX}*/{deployment.name}")) == []


# The session's Sentinel group (tests/conftest.py declares it), as an application's
# own tests reach it: by marker, by indirect parametrization, by its client fixture.


def _master_keys(group: SentinelDeployment) -> int:
    master = group.info.node(group.master())
    with node_client(group.info, master, role="admin") as admin:
        return int(admin.dbsize())


@pytest.mark.redis_topology("sentinel")
def test_the_marker_gives_the_sessions_sentinel_group_and_a_client_of_its_master(
    redis_deployment: RedisDeployment,
    redis_client: redis.Redis,
    redis_sentinel_deployment: SentinelDeployment,
) -> None:
    assert redis_deployment is redis_sentinel_deployment
    redis_client.set("app:marker", "sentinel")
    master = redis_sentinel_deployment.info.node(redis_sentinel_deployment.master())
    with node_client(redis_sentinel_deployment.info, master, role="admin") as admin:
        assert admin.get("app:marker") == b"sentinel"  # through Sentinel, to the master


@pytest.mark.parametrize("redis_deployment", ["sentinel"], indirect=True)
def test_indirect_parametrization_gives_the_sessions_sentinel_group(
    redis_deployment: RedisDeployment, redis_sentinel_deployment: SentinelDeployment
) -> None:
    assert redis_deployment is redis_sentinel_deployment
    assert redis_deployment.kind == "sentinel"


def test_the_sentinel_client_is_the_application_and_a_reset_empties_the_group(
    redis_sentinel: redis.Redis, redis_sentinel_deployment: SentinelDeployment
) -> None:
    redis_sentinel.set("app:reset", 1)
    with pytest.raises(redis.exceptions.NoPermissionError):
        redis_sentinel.dbsize()  # the operator's command, refused to the application
    assert _master_keys(redis_sentinel_deployment) >= 1
    redis_sentinel_deployment.reset()  # what the client fixture runs after each test
    assert _master_keys(redis_sentinel_deployment) == 0
