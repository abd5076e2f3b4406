"""Bring-up figures: deploy a topology N times from scratch and report the timings."""

from __future__ import annotations

import dataclasses
import secrets
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import docker

from infra.backends.local import Created, LocalBackend
from infra.backends.local_inventory import Inventory
from infra.core.errors import DeploymentError
from infra.core.model import Topology
from infra.core.plan_specs import ContainerSpec
from infra.core.topology import load_topology
from infra.operations.deploy import down, prepare, up
from infra.operations.native_bring_up import AnchorError, measure_native


@dataclass(frozen=True)
class BringUpRun:
    seconds_total: float  # `up` from call to return (validation, config job, containers, ready)
    seconds_start_to_ready: float  # containers started -> every node answers a TLS PING
    seconds_down: float


def docker_floor(client: docker.DockerClient, image: str, count: int = 1) -> float:
    """What Docker itself costs: `docker run` of `count` containers of the image at once
    (as a deployment starts its nodes) until each answers its first plaintext PONG."""
    ports = []
    for _ in range(count):  # free loopback ports, as Docker would pick them
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    started = time.monotonic()

    def run(port: int) -> Any:
        return client.containers.run(
            image,
            # Inside the container's own network namespace; published on loopback only.
            "redis-server --port 6379 --bind 0.0.0.0 --protected-mode no --save '' --appendonly no",
            detach=True,
            ports={"6379/tcp": ("127.0.0.1", port)},
            labels={"redis-infra.name": "measure-floor"},
        )

    with ThreadPoolExecutor(max_workers=count) as pool:
        containers = list(pool.map(run, ports))
    try:
        for port in ports:
            _first_pong(port, started)
        return time.monotonic() - started
    finally:
        for container in containers:
            container.remove(force=True)


def _first_pong(port: int, started: float, host: str = "127.0.0.1") -> None:
    while True:
        try:
            with socket.create_connection((host, port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        if time.monotonic() - started > 30:
            raise AnchorError(f"Docker's floor: the image answered no PING within 30 s on {port}")
        time.sleep(0.005)


def hardened_floor(client: docker.DockerClient, topology: Topology) -> float:
    """What Docker costs for the deployment's own containers: the plan's volumes,
    networks and node containers (its image, user, read-only root, dropped capabilities,
    limits, health check, both networks, loopback ports), made as `up` makes them and
    started all at once, but each running a bare redis-server (no config job, TLS, ACL
    or replication) until every published node answers its first plaintext PONG.

    Beside `docker_floor` (a plain `docker run`), it separates what the hardening costs
    in Docker from what the deployment's own steps cost."""
    backend = LocalBackend(client)
    created = Created()
    with tempfile.TemporaryDirectory() as state:
        prepared = prepare(topology, Inventory(), backend.used_subnets, Path(state) / "floor")
        plan = dataclasses.replace(
            prepared.plan,
            containers=tuple(
                dataclasses.replace(spec, command=_bare_redis(spec))
                for spec in prepared.plan.containers
            ),
        )
        ports = [prepared.host_ports[spec.name] for spec in plan.containers if spec.ports]
        try:
            started = time.monotonic()
            backend.create_volumes(plan, {}, created, Inventory())
            backend.create_nodes(
                plan, prepared.secrets, prepared.host_ports, {}, created, Inventory()
            )
            with ThreadPoolExecutor(max_workers=len(plan.containers)) as pool:
                list(pool.map(backend.api.start, [spec.name for spec in plan.containers]))
            for port in ports:
                _first_pong(port, started, topology.publish.host_ip)
            return time.monotonic() - started
        finally:
            backend.rollback(created)


def _bare_redis(spec: ContainerSpec) -> tuple[str, ...]:
    port = spec.ports[0].container_port if spec.ports else 6379
    return (
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "0.0.0.0",  # noqa: S104 - the container's own namespace; ports publish on loopback
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
    )


BringUp = Callable[[docker.DockerClient, Topology], BringUpRun]


def cli_bring_up(client: docker.DockerClient, topology: Topology) -> BringUpRun:
    """One `redis-infra up` from scratch, and its `down`."""
    with tempfile.TemporaryDirectory() as directory:
        try:
            result = up(topology, client, connection_file=Path(directory) / "c.json")
        finally:
            started = time.monotonic()
            down(topology.name, client, keep_data=False)
    if result.seconds_start_to_ready is None:  # pragma: no cover - a fresh `up` times it
        raise DeploymentError("a fresh deployment reported no start-to-ready time")
    return BringUpRun(
        result.seconds_total, result.seconds_start_to_ready, time.monotonic() - started
    )


def measure_bring_up(
    client: docker.DockerClient,
    topology_name: str,
    runs: int,
    overrides: dict[str, Any],
    *,
    native: bool = False,
    bring_up: BringUp = cli_bring_up,
) -> dict[str, Any]:
    """Deploy and remove `topology_name` `runs` times (`bring_up`: the CLI's `up` by
    default, or the test fixtures'); medians and every run, as data. With `native`,
    each run is followed by the same topology as native processes (`native_bring_up`)
    and Docker's own floor, so the figures sit side by side."""
    results: list[BringUpRun] = []
    anchors: list[float] = []
    floors: list[float] = []
    floors_all: list[float] = []  # as many containers as the topology has, at once
    floors_hardened: list[float] = []  # the deployment's own containers, bare Redis in them
    for _ in range(runs):
        name = f"measure-{secrets.token_hex(3)}"
        topology = load_topology(topology_name, name, overrides)
        results.append(bring_up(client, topology))
        if native:
            cluster = topology.cluster
            anchors.append(
                measure_native(
                    topology.kind.value,
                    masters=cluster.masters if cluster else 3,
                    node_timeout_ms=cluster.node_timeout_ms if cluster else 5000,
                ).seconds_to_ready
            )
            floors.append(docker_floor(client, topology.image))
            nodes = _node_count(topology)  # one node: the same figure, not measured twice
            floors_all.append(
                docker_floor(client, topology.image, nodes) if nodes > 1 else floors[-1]
            )
            floors_hardened.append(
                hardened_floor(client, load_topology(topology_name, f"{name}-f", overrides))
            )
    extra: dict[str, Any] = {}
    if native:
        median_native = statistics.median(anchors)
        median_total = statistics.median(r.seconds_total for r in results)
        extra = {
            "median_seconds_native": median_native,
            "median_seconds_docker_floor": statistics.median(floors),
            "median_seconds_docker_floor_all_nodes": statistics.median(floors_all),
            "median_seconds_docker_floor_same_containers": statistics.median(floors_hardened),
            "nodes": _node_count(topology),
            "ratio_total_vs_native": median_total / median_native,
            "native_each": anchors,
            "docker_floor_each": floors,
            "docker_floor_all_nodes_each": floors_all,
            "docker_floor_same_containers_each": floors_hardened,
        }
    return {
        **extra,
        "topology": topology_name,
        "kind": topology.kind.value,
        "runs": runs,
        "median_seconds_total": statistics.median(r.seconds_total for r in results),
        "median_seconds_start_to_ready": statistics.median(
            r.seconds_start_to_ready for r in results
        ),
        "median_seconds_down": statistics.median(r.seconds_down for r in results),
        "each": [asdict(r) for r in results],
    }


def _node_count(topology: Topology) -> int:
    if topology.cluster:
        return topology.cluster.masters * (1 + topology.cluster.replicas_per_master)
    if topology.sentinel:
        return 1 + topology.sentinel.replicas + topology.sentinel.sentinels
    return 1


def measure_scale_out(
    client: docker.DockerClient, name: str, masters: int, keys: int
) -> dict[str, Any]:
    """Write `keys` keys over every slot, scale the cluster, read them all back."""
    from infra.core.connection import read_connection_file
    from infra.operations.client import cluster_client
    from infra.operations.deploy import connection_file_for
    from infra.operations.scale import scale_cluster

    info = read_connection_file(connection_file_for(name, client))
    writer = cluster_client(info)
    prefix = f"scale-{secrets.token_hex(3)}"
    started = time.monotonic()
    for start in range(0, keys, 2000):
        pipe = writer.pipeline()
        for i in range(start, min(start + 2000, keys)):
            pipe.set(f"{prefix}:{i}", i)
        pipe.execute()
    seconds_write = time.monotonic() - started
    writer.close()
    result = scale_cluster(name, masters, client)
    reader = cluster_client(result.info)
    missing = 0
    for start in range(0, keys, 2000):
        pipe = reader.pipeline()
        numbers = range(start, min(start + 2000, keys))
        for i in numbers:
            pipe.get(f"{prefix}:{i}")
        missing += sum(
            1 for i, value in zip(numbers, pipe.execute(), strict=True) if value != str(i).encode()
        )
    reader.close()
    return {
        "deployment": name,
        "masters_before": result.masters_before,
        "masters_after": result.masters_after,
        "keys": keys,
        "keys_missing_after": missing,
        "seconds_writing_keys": round(seconds_write, 3),
        "seconds_scale_total": round(result.seconds, 3),
        "seconds_join_and_rebalance": round(result.seconds_rebalance, 3),
        "new_nodes": result.new_nodes,
    }
