"""The deployment plan: pure data that both backends translate into their API.

Everything a deployment is (networks, volumes, container hardening, files, ports,
health checks, one-shot jobs, client outputs) is decided here, once. Secrets appear
only as references (`infra.core.secrets`), so the plan's shape never depends on their
values and the same plan drives `redis-infra up` and `pulumi up`.

How files reach the nodes: pulumi-docker's `uploads` copies to `/` of a container,
which Docker refuses on a read-only root filesystem. So a one-shot *config job*
container (writable root, no network, only the capabilities it needs) receives
every node's files as uploads under `/stage`, copies them into each node's config
volume with the right owner and modes, writes a marker last, and exits 0. Redis
containers mount their config volume read-only and start Redis only once the marker
is there, so a backend may start them while the job runs (Pulumi starts them after).

The plan's data types are in plan_specs, its jobs in plan_jobs; this module decides.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import asdict

from infra.core.certs import CertificateSet
from infra.core.layout import Node, Role, nodes
from infra.core.memory_budget import SENTINEL_CONTAINER_BYTES
from infra.core.model import Kind, Topology
from infra.core.plan_jobs import (
    _cluster_create_job,
    _config_job,
    _functions_job,
)
from infra.core.plan_specs import (
    FUNCTION_NAMES,
    LABEL_CONFIG,
    LABEL_NODE,
    LABEL_ROLE,
    LABEL_SPEC,
    LABEL_SUMMARY,
    LABEL_VOLUME,
    Addressing,
    ContainerSpec,
    HealthcheckSpec,
    MountSpec,
    NetworkAttachment,
    NetworkSpec,
    NodeEndpoint,
    Outputs,
    Plan,
    PortSpec,
    VolumeSpec,
    _digest,
    base_labels,
    config_volume,
    data_volume,
    network_name,
    publish_network_name,
    tls_cli_args,
)
from infra.core.render import (
    CONF_DIR,
    DATA_DIR,
    FILES_INSTALLED,
    HEALTH_PASSWORD_FILE,
    RenderedFile,
    render_topology,
)


def needs_fixed_addresses(topology: Topology) -> bool:
    """Replicated kinds keep talking to nodes that are down; single needs none."""
    return topology.kind is not Kind.SINGLE or topology.subnet is not None


def fixed_addresses(topology: Topology, subnet: str | None) -> dict[str, str]:
    """Node name -> fixed IP (empty when the topology needs none): certificates cover them."""
    chosen = topology.subnet or subnet
    if not needs_fixed_addresses(topology) or chosen is None:
        return {}
    return Addressing.for_nodes(chosen, [node.name for node in nodes(topology)]).addresses


def build_plan(topology: Topology, certificates: CertificateSet, subnet: str | None = None) -> Plan:
    """The complete plan for `topology` with the given public certificates.

    `subnet` is the backend's choice when the topology names none (see
    `needs_fixed_addresses`); the topology's own subnet always wins.
    """
    labels = base_labels(topology)
    chosen = topology.subnet or subnet
    addressing = None
    if needs_fixed_addresses(topology):
        if chosen is None:
            raise ValueError(f"{topology.kind.value} topology {topology.name} needs a subnet")
        addressing = Addressing.for_nodes(chosen, [node.name for node in nodes(topology)])
    networks = [
        NetworkSpec(
            network_name(topology), topology.internal_network, labels, addressing=addressing
        )
    ]
    if topology.publish.enabled and topology.internal_network:
        # Docker publishes no port of a container that is only on internal networks;
        # a second bridge, holding only this deployment's containers, carries them.
        # No masquerading (no route out) and no traffic between its containers: nodes
        # talk to each other by fixed address on the internal network only.
        networks.append(
            NetworkSpec(
                publish_network_name(topology),
                False,
                labels,
                {
                    "com.docker.network.bridge.enable_icc": "false",
                    "com.docker.network.bridge.enable_ip_masquerade": "false",
                },
            )
        )
    files = render_topology(topology, certificates, addressing.addresses if addressing else {})
    volumes: list[VolumeSpec] = []
    containers: list[ContainerSpec] = []
    for node in nodes(topology):
        for purpose, volume in (
            ("config", config_volume(topology, node)),
            ("data", data_volume(topology, node)),
        ):
            volumes.append(VolumeSpec(volume, {**labels, LABEL_VOLUME: purpose}, purpose))
        containers.append(_container(topology, node, files[node.name], networks, addressing))
    config_job = _config_job(topology, containers, addressing)
    bootstrap = (
        (_cluster_create_job(topology, containers, addressing),)
        if topology.kind is Kind.CLUSTER
        else (_functions_job(topology, containers, addressing),)
    )
    return Plan(
        name=topology.name,
        kind=topology.kind,
        image=topology.image,
        networks=tuple(networks),
        volumes=tuple(volumes),
        config_job=config_job,
        containers=tuple(containers),
        bootstrap_jobs=bootstrap,
        outputs=_outputs(topology, containers, addressing),
    )


def _healthcheck(topology: Topology, node: Node) -> HealthcheckSpec:
    # Authenticated PING over TLS as the PING-only user, its password read from the
    # config volume: a command line is readable by every host user (`ps`) and by
    # `docker inspect`, an owner-only file in the container is not.
    cli = " ".join(
        shlex.quote(part)
        for part in (
            "redis-cli",
            *tls_cli_args(),
            "-h",
            "127.0.0.1",
            "-p",
            str(node.port),
            "--user",
            topology.users.health,
            "--no-auth-warning",
            "ping",
        )
    )
    password = f"{CONF_DIR}/{HEALTH_PASSWORD_FILE}"
    test = ("CMD-SHELL", f'REDISCLI_AUTH="$(cat {password})" {cli} | grep -q PONG')
    return HealthcheckSpec(test=test, interval_s=5, timeout_s=3, retries=3, start_period_s=10)


# How long a node waits for the config job's files before it exits (and its restart
# policy tries again): the job's own timeout is 60 s.
FILES_WAIT_POLLS = 6000  # of 0.02 s: 120 s


def _wait_for_files_then(program: str, config_path: str) -> tuple[str, ...]:
    """The node's command: Redis once the config job has installed every file, so the
    node starts beside the job rather than after it (~0.3 s each here). Until then a
    TERM ends the wait (PID 1 has no default handler); then Redis is PID 1 itself."""
    marker = shlex.quote(f"{CONF_DIR}/{FILES_INSTALLED}")
    give_up = f"no config files after {FILES_WAIT_POLLS // 50} s: did the config job fail?"
    script = (
        "trap 'exit 143' TERM; polls=0; "
        f"until [ -e {marker} ]; do "
        f'[ "$polls" -lt {FILES_WAIT_POLLS} ] || '
        f"{{ echo {shlex.quote(give_up)} >&2; exit 1; }}; "
        "polls=$((polls + 1)); sleep 0.02; done; "
        f"exec {program} {shlex.quote(config_path)}"
    )
    return ("sh", "-c", script)


def _container(
    topology: Topology,
    node: Node,
    files: list[RenderedFile],
    networks: list[NetworkSpec],
    addressing: Addressing | None,
) -> ContainerSpec:
    labels = {**base_labels(topology), LABEL_ROLE: node.role.value, LABEL_NODE: node.name}
    labels[LABEL_CONFIG] = _digest([asdict(f) for f in files])
    main = next(f for f in files if f.path in ("redis.conf", "sentinel.conf"))
    program = "redis-sentinel" if node.role is Role.SENTINEL else "redis-server"
    command = _wait_for_files_then(program, main.container_path)
    address = addressing.addresses[node.name] if addressing else None
    attachments = [NetworkAttachment(networks[0].name, (node.name,), address)]
    attachments += [NetworkAttachment(n.name, ()) for n in networks[1:]]
    ports: tuple[PortSpec, ...] = ()
    if topology.publish.enabled:
        base = topology.publish.base_port
        host_port = base + node.index if base is not None else None
        ports = (PortSpec(node.port, topology.publish.host_ip, host_port),)
    spec = ContainerSpec(
        name=node.name,
        node=node,
        image=topology.image,
        command=command,
        user=f"{topology.uid}:{topology.uid}",
        read_only=True,
        tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},  # noqa: S108 - a private tmpfs
        cap_drop=("ALL",),
        cap_add=(),
        security_opt=("no-new-privileges:true",),
        memory_bytes=(
            SENTINEL_CONTAINER_BYTES
            if node.role is Role.SENTINEL
            else topology.memory.container_limit_bytes
        ),
        pids_limit=topology.limits.pids,
        cpus=topology.limits.cpus,
        restart="unless-stopped",
        labels=labels,
        networks=tuple(attachments),
        mounts=(
            MountSpec(config_volume(topology, node), CONF_DIR, read_only=True),
            MountSpec(data_volume(topology, node), DATA_DIR, read_only=False),
        ),
        ports=ports,
        healthcheck=_healthcheck(topology, node),
        stop_grace_s=30,  # time for a final AOF fsync / RDB save on shutdown
        files=tuple(files),
    )
    return _with_spec_label(spec)


def _with_spec_label(spec: ContainerSpec) -> ContainerSpec:
    labels = {
        **spec.labels,
        LABEL_SPEC: spec.spec_hash,
        LABEL_SUMMARY: json.dumps(spec.summary(), sort_keys=True),
    }
    return dataclasses.replace(spec, labels=labels)


def _outputs(
    topology: Topology, containers: list[ContainerSpec], addressing: Addressing | None
) -> Outputs:
    endpoints = tuple(
        NodeEndpoint(
            name=spec.node.name,
            container=spec.name,
            role=spec.node.role.value,
            internal_host=spec.node.name,
            internal_port=spec.node.port,
            published=spec.ports[0] if spec.ports else None,
            shard=spec.node.shard,
            address=addressing.addresses[spec.node.name] if addressing else None,
        )
        for spec in containers
    )
    return Outputs(
        name=topology.name,
        kind=topology.kind.value,
        network=network_name(topology),
        service_name=topology.sentinel.service_name if topology.sentinel else None,
        users=topology.users.by_role(),
        endpoints=endpoints,
        access={
            "channels": list(topology.access.app_channels),
            "max_channel_length": topology.access.max_channel_length,
            "eval": topology.access.app_eval,
            "functions": list(FUNCTION_NAMES),
        },
    )
