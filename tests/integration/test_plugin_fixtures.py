"""The pytest plugin as an application's suite meets it: inner pytest runs (pytester)
that use the fixtures, a run killed mid-test whose containers the next run sweeps, and
a suite attached to a deployment that exists already."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from infra.backends.local_inventory import LABEL_STATE_DIR
from infra.core.plan_specs import LABEL_NAME
from infra.testing import SingleDeployment
from infra.testing.sweep import OWNER_LABEL

APP_SUITE = """
import pytest
from infra.testing.plugin import redis_deployment_factory

small_single = redis_deployment_factory("single", settings={"memory.maxmemory": "64mb"})


def test_a_write(redis_single):
    redis_single.set("app:visits", 1)
    assert redis_single.get("app:visits") == b"1"


def test_the_next_test_starts_empty(redis_single):
    assert redis_single.get("app:visits") is None  # the fixture flushed after the last


@pytest.mark.redis_topology("single")
def test_marker_gives_the_sessions_deployment(redis_client, redis_deployment,
                                              redis_single_deployment):
    assert redis_deployment is redis_single_deployment
    assert redis_client.ping()


def test_a_factory_fixture_has_its_settings(small_single, redis_single_deployment):
    assert small_single.name != redis_single_deployment.name
    with small_single.client() as r:
        assert r.info("memory")["maxmemory"] == 64 * 1024 * 1024
"""

KILLED_SUITE = """
import os, signal

def test_dies_holding_a_deployment(redis_single_deployment):
    print("DEPLOYMENT", redis_single_deployment.name, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""

ATTACHED_SUITE = """
def test_uses_the_existing_deployment(redis_single_deployment, redis_single):
    assert redis_single_deployment.name == "{name}"
    assert redis_single.get("app:kept") == b"yes"
"""


def _labelled(engine: docker.DockerClient, label: str) -> list[str]:
    return [str(c.name) for c in engine.containers.list(all=True, filters={"label": label})]


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
    labels = engine.containers.get(left[0]).labels
    assert OWNER_LABEL in labels
    secrets_folder = Path(labels[LABEL_STATE_DIR])
    assert (secrets_folder / "secrets.json").exists()  # the dead run's passwords, on disk

    pytester.makepyfile(test_app=APP_SUITE)
    result = pytester.runpytest_inprocess("-p", "redis_infra", "test_app.py")
    assert _labelled(engine, f"{LABEL_NAME}={name}") == []  # swept as the run started
    assert not secrets_folder.exists()
    result.assert_outcomes(passed=4)
    # ... and the run removed its own deployments when it ended.
    assert [c for c in _labelled(engine, OWNER_LABEL) if c.startswith("tc-sin")] == []


def test_a_suite_attaches_to_a_deployment_through_its_connection_file(
    pytester: pytest.Pytester, engine: docker.DockerClient, redis_image: str
) -> None:
    with SingleDeployment(redis_image) as existing:
        existing.client().set("app:kept", "yes")
        pytester.makepyfile(test_attached=ATTACHED_SUITE.format(name=existing.name))
        result = pytester.runpytest_inprocess(
            "-p", "redis_infra", f"--redis-infra-connection={existing.connection_file}"
        )
        result.assert_outcomes(passed=1)
        # Attached, not owned: the suite's end left it running (its data flushed).
        assert existing.client().ping()
        assert Path(existing.connection_file).exists()
