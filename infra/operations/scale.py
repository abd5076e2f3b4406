"""`redis-infra scale`: add shards to a running Redis Cluster and rebalance its slots.

The new shards come from the same plan `up` would build for the larger topology, so
the new nodes are exactly what a fresh deployment of that size would run. Nothing
that exists is recreated: existing nodes keep running while the new ones join and
slots (with their keys) move onto them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import docker

from infra.backends.local import Created, LocalBackend
from infra.backends.local_inventory import LABEL_STATE_DIR
from infra.core.connection import ConnectionInfo
from infra.core.errors import ConfigError, DeploymentError
from infra.core.topology import build_topology, deep_merge
from infra.operations.deploy import prepare, run_job_or_fail, state_dir_for, write_connection_files
from infra.operations.observe_cluster import wait_cluster_ready
from infra.operations.readiness import wait_for_ping
from infra.operations.state import StateDir


@dataclass(frozen=True)
class ScaleResult:
    info: ConnectionInfo
    masters_before: int
    masters_after: int
    new_nodes: list[str]
    seconds: float
    seconds_rebalance: float


def scale_cluster(name: str, masters: int, client: docker.DockerClient) -> ScaleResult:
    started = time.monotonic()
    backend = LocalBackend(client)
    inventory = backend.inventory(name)
    if not inventory.containers:
        raise ConfigError.single(
            "--name",
            "--name",
            f"no deployment named {name} on this engine",
            "check the name with `redis-infra status`",
        )
    state_dir = str(state_dir_for(name, inventory))
    settings = StateDir(Path(state_dir)).settings()
    if settings.get("kind") != "cluster":
        raise ConfigError.single(
            "--name",
            "topology",
            f"{name} is a {settings.get('kind')} deployment",
            "scale applies to cluster deployments",
        )
    before = int(settings["cluster"]["masters"])
    if masters <= before:
        raise ConfigError.single(
            "--masters",
            "--masters",
            f"{masters} is not more than the {before} masters running",
            f"ask for {before + 1} or more (scaling in is not supported: it would move every "
            "key off the removed shards first)",
        )
    topology = build_topology(
        deep_merge(settings, {"cluster": {"masters": masters}}),
        name,
        source=f"{state_dir}/topology.json + --masters {masters}",
        base_dir=Path(state_dir),
    )
    prepared = prepare(topology, inventory, backend.used_subnets)
    plan = prepared.plan
    new_nodes = [spec.name for spec in plan.containers if spec.name not in inventory.containers]
    unexpected = [
        difference
        for difference in backend.differences(plan, inventory, prepared.host_ports)
        if not any(node in difference for node in new_nodes)
    ]
    if unexpected:
        raise DeploymentError(
            f"{name} differs from its recorded settings, so it is not scaled:\n  - "
            + "\n  - ".join(unexpected)
        )
    created = Created()
    labels = {LABEL_STATE_DIR: state_dir}
    try:
        backend.create(plan, prepared.secrets, prepared.host_ports, labels, created, inventory)
        wait_for_ping(prepared.info, 60, alive=lambda: backend.check_running(new_nodes))
    except BaseException:
        backend.rollback(created)  # only the new nodes: the running cluster is untouched
        raise
    rebalance_started = time.monotonic()
    try:
        # The bootstrap job converges the cluster to the plan: new shards join, slots move.
        run_job_or_fail(backend, plan.bootstrap_jobs[0], prepared.secrets)
    except DeploymentError as exc:
        raise DeploymentError(
            f"{exc}\nThe new nodes stay (joined or not, holding no data yet); run the same "
            f"`redis-infra scale --name {name} --masters {masters}` again to finish: every "
            "step it already did is skipped."
        ) from exc
    wait_cluster_ready(prepared.info, 120)
    for copy in [None, *prepared.state.copies()]:
        write_connection_files(prepared, copy)
    prepared.state.save_settings(topology.settings)
    return ScaleResult(
        info=prepared.info,
        masters_before=before,
        masters_after=masters,
        new_nodes=new_nodes,
        seconds=time.monotonic() - started,
        seconds_rebalance=time.monotonic() - rebalance_started,
    )
