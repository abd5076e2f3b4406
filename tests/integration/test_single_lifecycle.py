"""`up`, re-`up`, `down` and the CLI around them, on a real engine."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from infra.backends.local import LocalBackend
from infra.core.connection import read_connection_file
from infra.core.errors import DeploymentError, EngineError
from infra.core.plan_specs import LABEL_NAME, LABEL_VOLUME
from infra.core.topology import load_topology
from infra.operations import deploy as deploy_operations
from infra.operations.client import node_client
from infra.operations.deploy import DeploymentDiffersError, down, up
from tests.integration.conftest import DeployFactory, unique_name


def _labelled(engine: docker.DockerClient, name: str) -> list[str]:
    selector: dict[str, str | list[str] | bool] = {"label": f"redis-infra.name={name}"}
    return (
        [f"container {c.name}" for c in engine.containers.list(all=True, filters=selector)]
        + [f"network {n.name}" for n in engine.networks.list(filters=selector)]
        + [f"volume {v.name}" for v in engine.volumes.list(filters=selector)]
    )


def test_up_again_changes_nothing_and_a_change_is_explained(deploy: DeployFactory) -> None:
    deployment = deploy("single", "again")
    container_id = deployment.container().id
    again = up(deployment.topology, deployment.engine, connection_file=deployment.connection_file)
    assert not again.created and "nothing changed" in again.notes[0]
    assert deployment.container().id == container_id

    changed = load_topology(
        "single",
        deployment.name,
        {"image": deployment.topology.image, "memory": {"maxmemory": "300mb"}},
    )
    with pytest.raises(DeploymentDiffersError) as caught:
        up(changed, deployment.engine, connection_file=deployment.connection_file)
    message = str(caught.value)
    assert "memory_bytes 1326448640 -> 1418723328" in message  # auto: 1265 -> 1353 MiB
    assert "rendered files differ: redis.conf" in message
    assert "--keep-data" in message
    # Nothing was touched: same container, still running with the old limit.
    container = deployment.container()
    assert container.id == container_id and container.status == "running"
    assert container.attrs["HostConfig"]["Memory"] == 1265 * 1024**2


def test_up_again_says_when_the_image_moved_and_its_fix_moves_the_node(
    engine: docker.DockerClient, redis_image: str
) -> None:
    # A throwaway tag of the Redis image; a commit of a container made from it is a new
    # image (another id, the same files), as a rebuild or a pull of the tag would be.
    name = unique_name("moved")
    reference = f"redis-infra/redis:it-moved-{name[-6:]}"
    engine.images.get(redis_image).tag(reference)
    topology = load_topology("single", name, {"image": reference})
    scratch = engine.containers.create(reference, command=["true"])
    try:
        first = up(topology, engine)
        node = first.info.data_nodes()[0]
        node_client(first.info, node).set("session:kept", "yes")
        made_from = engine.containers.get(node.container).attrs["Image"]
        repository, tag = reference.split(":")
        moved = scratch.commit(repository=repository, tag=tag).id
        assert moved is not None and moved != made_from

        again = up(topology, engine)
        assert not again.created
        (note,) = again.notes
        assert note.startswith(f"{node.container} runs an older image than the one {reference}")
        assert f"down --name {name} --keep-data" in note
        assert engine.containers.get(node.container).attrs["Image"] == made_from  # untouched

        # The fix the note gives: the node runs the moved image, with its data.
        down(name, engine, keep_data=True)
        fixed = up(topology, engine)
        assert engine.containers.get(node.container).attrs["Image"] == moved
        assert node_client(fixed.info, fixed.info.data_nodes()[0]).get("session:kept") == b"yes"
        assert up(topology, engine).notes == ["already deployed as planned: nothing changed"]
    finally:
        down(name, engine, keep_data=False)
        scratch.remove()
        # By name: the moved image goes with its only tag, the Redis image keeps its own.
        engine.images.remove(reference)


def test_connection_file_has_what_clients_need(deploy: DeployFactory) -> None:
    deployment = deploy("single", "conn")
    path = deployment.connection_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["name"] == deployment.name and data["topology"] == "single"
    for key in ("ca_file", "cert_file", "key_file"):
        assert Path(data["tls"][key]).is_absolute() and Path(data["tls"][key]).is_file()
    assert set(data["users"]) == {"app"}  # the operator's credentials are elsewhere
    assert data["users"]["app"]["username"] == "app" and len(data["users"]["app"]["password"]) >= 32
    assert data["access"] == {
        "channels": ["app:*"],
        "max_channel_length": 64,
        "eval": False,
        "functions": ["token_bucket", "sliding_window"],
    }
    (node,) = data["nodes"]
    assert node["name"] == node["container"] == f"{deployment.name}-redis"
    assert node["role"] == "master" and node["host"] == "127.0.0.1"
    assert node["internal"] == f"{deployment.name}-redis:6379"
    client = node_client(read_connection_file(path), node["name"])
    assert client.ping()


def _in_volume(
    engine: docker.DockerClient, image: str, volume: str, script: str, mode: str = "rw"
) -> str:
    """Run `script` as root in a throwaway container with `volume` at /v; its output."""
    output = engine.containers.run(
        image,
        ["sh", "-c", script],
        volumes={volume: {"bind": "/v", "mode": mode}},
        user="0:0",
        remove=True,
    )
    return bytes(output).decode()


def test_bad_input_and_missing_image_create_nothing(
    engine: docker.DockerClient, redis_image: str, tmp_path: Path
) -> None:
    name = unique_name("nothing")
    missing = load_topology("single", name, {"image": "redis-infra/redis:does-not-exist"})
    with pytest.raises(EngineError, match=r"redis-infra image build"):
        up(missing, engine, connection_file=tmp_path / "c.json")
    assert _labelled(engine, name) == []
    unpullable = load_topology("single", name, {"image": "registry.invalid/redis:7"})
    with pytest.raises(EngineError, match=r"cannot be pulled.*redis-infra image build"):
        up(unpullable, engine, connection_file=tmp_path / "c.json")
    assert _labelled(engine, name) == []


def test_failed_start_removes_what_it_created(
    engine: docker.DockerClient, probe_image: str, tmp_path: Path
) -> None:
    name = unique_name("fail")
    # An image without redis-server: the config job runs (a shell is all it needs), then
    # the node's shell finds no Redis to start and exits.
    topology = load_topology("single", name, {"image": probe_image})
    try:
        with pytest.raises(DeploymentError, match=r"stopped|restarting") as caught:
            up(topology, engine, connection_file=tmp_path / "c.json", ready_timeout_s=60)
        assert "redis-server: not found" in str(caught.value)  # its log explains why
        assert _labelled(engine, name) == []
    finally:
        down(name, engine, keep_data=False)  # only if the assertions failed


def test_a_uid_of_the_users_choosing_owns_the_data_folder(deploy: DeployFactory) -> None:
    # The image's /data belongs to uid 999; a node mounts its volumes no_copy and the
    # config job hands the folder to the topology's uid, so Redis can write its AOF.
    deployment = deploy("single", "uid", uid=12345)
    client = node_client(deployment.info, deployment.info.data_nodes()[0])
    client.set("session:owned", "yes")
    listed = deployment.container().exec_run(["ls", "-ldn", "/data", "/data/appendonlydir"])
    folders = {line.split()[-1]: line.split() for line in listed.output.decode().splitlines()}
    assert folders["/data"][0] == "drwx------" and folders["/data"][2] == "12345"
    assert folders["/data/appendonlydir"][2] == "12345"  # Redis made it: it could write


def test_a_config_volume_left_behind_is_rebuilt_before_its_node_starts(
    engine: docker.DockerClient,
    redis_image: str,
    probe_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a `down` cut short leaves: the config volume, with an earlier run's marker
    # and a redis.conf that serves plaintext. A node started beside the job must not
    # run on it: the deployment comes up on its own files, TLS only. The job is slowed
    # by 2 s, so the node surely starts while it runs.
    real_prepare = deploy_operations.prepare

    def slow_config_job(*args: Any, **kwargs: Any) -> deploy_operations.Prepared:
        prepared = real_prepare(*args, **kwargs)
        job = prepared.plan.config_job
        slow = dataclasses.replace(job, command=(*job.command[:2], f"sleep 2\n{job.command[2]}"))
        plan = dataclasses.replace(prepared.plan, config_job=slow)
        return dataclasses.replace(prepared, plan=plan)

    monkeypatch.setattr(deploy_operations, "prepare", slow_config_job)
    name = unique_name("stale")
    volume = f"{name}-redis-config"
    topology = load_topology("single", name, {"image": redis_image})
    try:
        engine.volumes.create(volume, labels={LABEL_NAME: name, LABEL_VOLUME: "config"})
        planted = "echo 'port 6379' > /v/redis.conf && : > /v/files-installed"
        _in_volume(engine, probe_image, volume, planted)
        result = up(topology, engine, connection_file=tmp_path / "c.json", ready_timeout_s=30)
        # On the planted file Redis would serve plaintext: this TLS PING would fail.
        assert node_client(result.info, result.info.data_nodes()[0]).ping()
        assert result.notes == []  # rebuilt, not "reused kept volumes"
    finally:
        down(name, engine, keep_data=False)


def test_a_volume_of_the_same_name_that_is_not_ours_is_refused_and_left_as_it_was(
    engine: docker.DockerClient, redis_image: str, probe_image: str, tmp_path: Path
) -> None:
    # Docker's volume create hands back a volume that already has the name, whatever
    # its labels: without a check, the node would run on someone else's data (and a
    # rollback would delete it).
    name = unique_name("foreign")
    volume = f"{name}-redis-data"
    engine.volumes.create(volume, labels={"owner": "another-app"})
    try:
        _in_volume(engine, probe_image, volume, "echo theirs > /v/keep-me")
        topology = load_topology("single", name, {"image": redis_image})
        with pytest.raises(DeploymentError, match=rf"volume {volume}: .*docker volume rm"):
            up(topology, engine, connection_file=tmp_path / "c.json", ready_timeout_s=30)
        assert _labelled(engine, name) == []  # what this run made is gone
        assert engine.volumes.get(volume).attrs["Labels"] == {"owner": "another-app"}
        assert _in_volume(engine, probe_image, volume, "cat /v/keep-me", mode="ro") == "theirs\n"
    finally:
        down(name, engine, keep_data=False)  # only if the assertions failed
        engine.volumes.get(volume).remove(force=True)


def _exit_codes(engine: docker.DockerClient, container: str, since: float) -> list[str]:
    """The exit code of each time `container` died since `since`, as Docker recorded it."""
    # The name is unique to this test, so a wide window picks up nothing else and
    # tolerates a daemon clock a little off the host's.
    events = engine.events(
        since=int(since) - 60,
        until=int(time.time()) + 1,
        filters={"type": "container", "event": "die", "container": container},
        decode=True,
    )
    return [event["Actor"]["Attributes"]["exitCode"] for event in events]


def test_down_keep_data_then_up_brings_the_data_back(
    engine: docker.DockerClient, redis_image: str, tmp_path: Path
) -> None:
    name = unique_name("keep")
    topology = load_topology("single", name, {"image": redis_image})
    out = tmp_path / "connection.json"
    try:
        first = up(topology, engine, connection_file=out)
        node_client(first.info, first.info.data_nodes()[0]).set("session:kept", "yes")
        since = time.time()
        kept = down(name, engine, keep_data=True)
        # Stopped, not killed: Redis exited 0 after flushing its AOF (a SIGKILL is 137,
        # and can lose the last acknowledged writes).
        assert _exit_codes(engine, f"{name}-redis", since) == ["0"]
        assert kept.kept_volumes == [f"{name}-redis-data"]
        assert not LocalBackend(engine).inventory(name).containers
        second = up(topology, engine, connection_file=out)
        assert second.info.users["app"].password == first.info.users["app"].password
        assert second.info.data_nodes()[0].port == first.info.data_nodes()[0].port
        assert node_client(second.info, second.info.data_nodes()[0]).get("session:kept") == b"yes"
    finally:
        down(name, engine, keep_data=False)
    assert _labelled(engine, name) == []
    assert not out.exists()  # the secrets of a deleted deployment are gone too


def test_cli_up_status_down(engine: docker.DockerClient, redis_image: str, tmp_path: Path) -> None:
    name = unique_name("cli")
    out = tmp_path / "conn.json"
    cli = [sys.executable, "-m", "infra.cli"]
    env = {**os.environ, "REDIS_INFRA_STATE_HOME": str(tmp_path / "state")}
    try:
        done = subprocess.run(
            [*cli, "up", "--topology", "single", "--name", name, "--out", str(out)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert f"single deployment '{name}' is up" in done.stdout
        assert "bring-up:" in done.stdout and str(out) in done.stdout
        status = subprocess.run(
            [*cli, "status", "--name", name, "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        rows = json.loads(status.stdout)
        assert [(r["container"], r["state"]) for r in rows] == [(f"{name}-redis", "running")]
        verified = subprocess.run(
            [*cli, "verify", "--name", name], capture_output=True, text=True, env=env, timeout=60
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "all 10 checks passed" in verified.stdout
        again = subprocess.run(
            [
                *cli,
                "up",
                "--topology",
                "single",
                "--name",
                name,
                "--out",
                str(out),
                "--set",
                "memory.maxmemory=200mb",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert again.returncode == 3 and "differs" in again.stderr
    finally:
        gone = subprocess.run(
            [*cli, "down", "--name", name], capture_output=True, text=True, env=env, timeout=120
        )
    assert (
        gone.returncode == 0 and "removed 1 container(s), 2 network(s), 2 volume(s)" in gone.stdout
    )
    assert _labelled(engine, name) == []


def test_verify_notices_a_weakened_deployment_under_python_optimize(
    deploy: DeployFactory, state_home: Path
) -> None:
    from infra.operations.verify import verify

    deployment = deploy("single", "weak")
    assert all(check.passed for check in verify(deployment.info))
    glass = node_client(deployment.info, deployment.info.data_nodes()[0], role="breakglass")
    glass.acl_setuser("app", enabled=True, commands=["+flushall"])  # someone loosened the ACL
    glass.acl_setuser("bench-dead01", enabled=True, nopass=True)  # a killed bench's user
    glass.config_set("appendonly", "no")  # ... and turned persistence off
    failed = [check for check in verify(deployment.info) if not check.passed]
    assert [check.name for check in failed] == [
        f"{deployment.name}-redis: app least privilege",
        f"{deployment.name}-redis: users",
        f"{deployment.name}-redis: persistence",
    ]
    assert "FLUSHALL" in failed[0].detail and "bench-dead01" in failed[1].detail
    assert "AOF is off" in failed[2].detail
    # `verify` rests on no `assert`: with assertions stripped it still fails.
    done = subprocess.run(
        [sys.executable, "-O", "-m", "infra.cli", "verify", "--name", deployment.name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.count("[FAILED]") == 3
    glass.config_set("appendonly", "yes")
    glass.acl_deluser("bench-dead01")
    glass.close()
