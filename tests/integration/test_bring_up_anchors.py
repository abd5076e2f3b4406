"""The anchors bring-up figures are judged against run and clean up after themselves:
native redis-server processes (same TLS, same readiness) and Docker's own floor."""

from __future__ import annotations

import secrets
import subprocess
import tempfile
from typing import Any

import docker
import pytest

from infra.core.plan_specs import LABEL_NAME
from infra.core.topology import load_topology
from infra.operations import measure, native_bring_up
from infra.operations.measure import docker_floor, hardened_floor
from infra.operations.native_bring_up import measure_native


def _servers() -> set[str]:
    """Native servers the anchor may have started: Redis retitles its process as
    `<tmp>/redis-server 127.0.0.1:<port>`, the link in the anchor's temporary folder."""
    found = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True)
    temp = tempfile.gettempdir()
    return {
        pid
        for pid, _, args in (line.strip().partition(" ") for line in found.stdout.splitlines())
        if args.startswith(temp) and "/redis-server " in args
    }


@pytest.mark.parametrize("kind", ["single", "sentinel", "cluster"])
def test_the_native_anchor_reaches_the_same_readiness_and_leaves_nothing(kind: str) -> None:
    before = _servers()
    seen: list[set[str]] = []
    original = native_bring_up._until

    def until(check: Any, watched: Any, timeout_s: float = 60.0) -> None:
        original(check, watched, timeout_s)
        seen.append(_servers() - before)  # while they run, they are found

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(native_bring_up, "_until", until)
        result = measure_native(kind, masters=3, node_timeout_ms=1000)
    assert seen and len(seen[-1]) == result.nodes
    assert result.kind == kind and result.seconds_to_ready > 0
    assert result.nodes == {"single": 1, "sentinel": 6, "cluster": 6}[kind]
    assert _servers() <= before  # every process it started is gone


def test_the_docker_floor_is_one_pong_and_leaves_no_container(
    engine: docker.DockerClient, redis_image: str
) -> None:
    assert docker_floor(engine, redis_image) > 0
    assert (
        engine.containers.list(all=True, filters={"label": "redis-infra.name=measure-floor"}) == []
    )


def test_the_same_containers_floor_runs_the_deployments_own_containers_and_removes_them(
    engine: docker.DockerClient, redis_image: str
) -> None:
    """The floor is only Docker's cost of *our* containers if they are ours: hardened
    as `up` makes them, on both networks, published on loopback."""
    name = f"floor-{secrets.token_hex(3)}"
    topology = load_topology("sentinel", name, {})
    label: dict[str, str | list[str] | bool] = {"label": f"{LABEL_NAME}={name}"}
    seen: list[dict[str, Any]] = []
    original = measure._first_pong

    def first_pong(port: int, started: float, host: str = "127.0.0.1") -> None:
        original(port, started, host)
        if not seen:  # every container runs by now
            seen.extend(c.attrs for c in engine.containers.list(all=True, filters=label))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(measure, "_first_pong", first_pong)
        assert hardened_floor(engine, topology) > 0
    assert len(seen) == 6  # master, 2 replicas, 3 sentinels: no config job, nothing else
    for attrs in seen:
        host = attrs["HostConfig"]
        assert (
            attrs["State"]["Running"]
            and attrs["Config"]["User"] == f"{topology.uid}:{topology.uid}"
        )
        assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
        assert len(attrs["NetworkSettings"]["Networks"]) == 2
        assert {b["HostIp"] for bs in host["PortBindings"].values() for b in bs} == {"127.0.0.1"}
        assert attrs["Config"]["Cmd"][0] == "redis-server"
    assert engine.containers.list(all=True, filters=label) == []
    assert engine.networks.list(filters=label) == []
    assert engine.volumes.list(filters=label) == []
