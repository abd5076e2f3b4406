"""No secret left where it need not be: job containers, state folders, the CA.

Under Pulumi an exited job container stays, and `docker cp` copies out whatever it
holds: the jobs are run here the same way (kept after they exit) to look inside.
State folders are the deployment's own: `down` deletes what `up` wrote and nothing
else, survives `down --keep-data`, and a folder or secret file that others could
write or read is refused before any container exists.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from infra.backends.local import LocalBackend
from infra.core.errors import ConfigError
from infra.core.plan_specs import JobSpec
from infra.core.topology import load_topology
from infra.operations.client import node_client
from infra.operations.deploy import Prepared, down, prepare, up
from tests.integration.conftest import DeployFactory, Deployment, unique_name


def _labelled(engine: docker.DockerClient, name: str) -> int:
    selector: dict[str, str | list[str] | bool] = {"label": f"redis-infra.name={name}"}
    return (
        len(engine.containers.list(all=True, filters=selector))
        + len(engine.networks.list(filters=selector))
        + len(engine.volumes.list(filters=selector))
    )


@pytest.fixture(scope="module")
def single(deploy: DeployFactory) -> Deployment:
    return deploy("single", "rest")


def _prepared(deployment: Deployment) -> Prepared:
    backend = LocalBackend(deployment.engine)
    return prepare(deployment.topology, backend.inventory(deployment.name), backend.used_subnets)


def _failing(job: JobSpec, after_line: int) -> JobSpec:
    """The same job, failing at `after_line` of its script (after its uploads arrived)."""
    lines = job.command[2].splitlines()
    script = "\n".join([*lines[:after_line], "false", *lines[after_line:]])
    return dataclasses.replace(job, command=(*job.command[:2], script))


def _stage_left(engine: docker.DockerClient, job: JobSpec) -> list[str]:
    """What a kept job container still holds under /stage (`docker cp` would copy it)."""
    container = engine.containers.get(job.name)
    try:
        stream, _ = container.get_archive("/stage")
        return [f"{len(b''.join(stream))} bytes"]
    except docker.errors.NotFound:
        return []
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("fails", [False, True], ids=["succeeds", "fails"])
def test_a_kept_job_container_holds_no_staged_secret(single: Deployment, fails: bool) -> None:
    prepared = _prepared(single)
    backend = LocalBackend(single.engine)
    config_job = prepared.plan.config_job
    (functions_job,) = prepared.plan.bootstrap_jobs
    for job, fail_at in ((config_job, 2), (functions_job, 2)):
        run = _failing(job, fail_at) if fails else job
        result = backend.run_job(run, prepared.secrets, keep=True)
        assert (result.exit_code != 0) is fails, result.logs
        assert _stage_left(single.engine, job) == [], job.name


def test_up_out_copies_the_file_and_down_deletes_only_what_up_wrote(
    engine: docker.DockerClient, redis_image: str, tmp_path: Path, state_home: Path
) -> None:
    name = unique_name("out")
    folder = tmp_path / "app-config"
    folder.mkdir()
    for mine in ("secrets.json", "topology.json", "notes.txt"):
        (folder / mine).write_text("the user's own file\n")
    (folder / "tls").mkdir()
    (folder / "tls" / "ca.crt").write_text("the user's own CA\n")
    out = folder / "redis.json"
    topology = load_topology("single", name, {"image": redis_image})
    result = up(topology, engine, connection_file=out)
    assert result.connection_file == out and json.loads(out.read_text())["name"] == name
    state = state_home / name
    assert (state / "secrets.json").exists() and (state / "operator.json").exists()
    down(name, engine, keep_data=False)
    assert not out.exists() and not state.exists()
    assert sorted(p.name for p in folder.iterdir()) == [
        "notes.txt",
        "secrets.json",
        "tls",
        "topology.json",
    ]
    assert (folder / "tls" / "ca.crt").read_text() == "the user's own CA\n"


@pytest.fixture
def other_state_home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "elsewhere"
    home.mkdir(mode=0o700)
    before = os.environ["REDIS_INFRA_STATE_HOME"]
    os.environ["REDIS_INFRA_STATE_HOME"] = str(home)
    yield home
    os.environ["REDIS_INFRA_STATE_HOME"] = before


def test_kept_data_remembers_its_state_folder(
    engine: docker.DockerClient, redis_image: str, state_home: Path, other_state_home: Path
) -> None:
    """After `down --keep-data` nothing runs, yet the next `up` (here with another state
    home) finds the passwords and CA the kept data belongs to, not new ones."""
    name = unique_name("kept")
    topology = load_topology("single", name, {"image": redis_image})
    os.environ["REDIS_INFRA_STATE_HOME"] = str(state_home)
    try:
        first = up(topology, engine)
        node_client(first.info, first.info.data_nodes()[0]).set("session:kept", "yes")
        down(name, engine, keep_data=True)
        os.environ["REDIS_INFRA_STATE_HOME"] = str(other_state_home)
        second = up(topology, engine)
        assert second.connection_file.parent == state_home / name
        assert second.info.credentials("app") == first.info.credentials("app")
        assert second.info.tls.ca_file == first.info.tls.ca_file
        client = node_client(second.info, second.info.data_nodes()[0])
        assert client.get("session:kept") == b"yes"
        client.close()
        down(name, engine, keep_data=True)
        # Its state folder lost (a restore gone wrong): no new secrets for the old data.
        moved = state_home / f"{name}.moved"
        (state_home / name).rename(moved)
        with pytest.raises(ConfigError, match=r"no longer holds them.*restore"):
            up(topology, engine)
        moved.rename(state_home / name)
    finally:
        down(name, engine, keep_data=False)
    assert _labelled(engine, name) == 0
    assert not (state_home / name).exists()


def test_a_state_folder_others_can_write_is_refused_before_anything_exists(
    engine: docker.DockerClient, redis_image: str, other_state_home: Path
) -> None:
    name = unique_name("shared")
    folder = other_state_home / name
    folder.mkdir()
    folder.chmod(0o777)
    topology = load_topology("single", name, {"image": redis_image})
    with pytest.raises(ConfigError, match=r"writable by others.*chmod go-w"):
        up(topology, engine)
    folder.chmod(0o700)
    # A planted secrets file others may read: its passwords may be known.
    secrets = folder / "secrets.json"
    secrets.write_text(json.dumps({"app_password": "planted-by-someone-else-0123456789"}))
    secrets.chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable or writable by others"):
        up(topology, engine)
    assert _labelled(engine, name) == 0
