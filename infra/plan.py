"""The deployment plan: pure data that both backends translate into their API.

Everything a deployment is (networks, volumes, container hardening, files, ports,
health checks, one-shot jobs, client outputs) is decided here, once. Secrets appear
only as references (`infra.secrets`), so the plan's shape never depends on their
values and the same plan drives `redis-infra up` and `pulumi up`.

How files reach the nodes: pulumi-docker's `uploads` copies to `/` of a container,
which Docker refuses on a read-only root filesystem. So a one-shot *config job*
container (writable root, no network, only the capabilities it needs) receives
every node's files as uploads under `/stage`, copies them into each node's config
volume with the right owner and modes, and exits 0. Redis containers then mount
their config volume read-only and start after the job succeeded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from infra.certs import CertificateSet
from infra.layout import Node, Role, nodes
from infra.model import Kind, Topology
from infra.render import CONF_DIR, DATA_DIR, RenderedFile, render_topology
from infra.secrets import password_ref, referenced

LABEL_NAME = "redis-infra.name"  # every resource of a deployment carries it
LABEL_KIND = "redis-infra.kind"
LABEL_ROLE = "redis-infra.role"
LABEL_NODE = "redis-infra.node"
LABEL_SPEC = "redis-infra.spec-hash"  # hash of the container's spec, secrets excluded
LABEL_SUMMARY = "redis-infra.summary"  # JSON of ContainerSpec.summary(), to explain a change
LABEL_CONFIG = "redis-infra.config-hash"  # hash of the node's rendered files, secrets excluded
LABEL_VOLUME = "redis-infra.volume"  # "data" or "config"

STAGE_DIR = "/stage"
JOB_VOLUME_ROOT = "/volumes"


class JobKind(StrEnum):
    CONFIG = "config"
    CLUSTER_CREATE = "cluster-create"


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    internal: bool
    labels: dict[str, str]
    # Only for the publish network: no traffic between containers on it and no
    # masquerading, so it carries published ports and nothing else.
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VolumeSpec:
    name: str
    labels: dict[str, str]
    purpose: str  # "data" or "config"


@dataclass(frozen=True)
class MountSpec:
    volume: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class PortSpec:
    container_port: int
    host_ip: str
    host_port: int | None  # None: the backend chooses one once and keeps it


@dataclass(frozen=True)
class NetworkAttachment:
    network: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class HealthcheckSpec:
    test: tuple[str, ...]  # exec form; may hold secret placeholders
    interval_s: int
    timeout_s: int
    retries: int
    start_period_s: int


@dataclass(frozen=True)
class UploadSpec:
    """A file placed into a job container before it starts (pulumi-docker `uploads`)."""

    path: str  # absolute path inside the job container
    content: str  # may hold secret placeholders
    mode: int

    @property
    def holds_secret(self) -> bool:
        return bool(referenced([self.content]))


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    node: Node
    image: str
    command: tuple[str, ...]
    user: str
    read_only: bool
    tmpfs: dict[str, str]
    cap_drop: tuple[str, ...]
    cap_add: tuple[str, ...]
    security_opt: tuple[str, ...]
    memory_bytes: int
    pids_limit: int
    cpus: float | None
    restart: str
    labels: dict[str, str]
    networks: tuple[NetworkAttachment, ...]
    mounts: tuple[MountSpec, ...]
    ports: tuple[PortSpec, ...]
    healthcheck: HealthcheckSpec
    stop_grace_s: int
    files: tuple[RenderedFile, ...]  # delivered by the config job into its volumes

    def summary(self) -> dict[str, object]:
        """The facts a user recognises, to say *what* differs when a spec changes."""
        return {
            "image": self.image,
            "command": " ".join(self.command),
            "user": self.user,
            "memory_bytes": self.memory_bytes,
            "pids_limit": self.pids_limit,
            "cpus": self.cpus,
            "restart": self.restart,
            "published": [f"{p.host_ip}:{p.container_port}" for p in self.ports],
            "networks": [n.network for n in self.networks],
            "files": {f.path: _digest(asdict(f)) for f in self.files},
        }

    @property
    def spec_hash(self) -> str:
        """Identity of everything that decides this container (secrets stay placeholders)."""
        data = asdict(self)
        data["labels"] = {
            k: v for k, v in self.labels.items() if k not in (LABEL_SPEC, LABEL_SUMMARY)
        }
        data["ports"] = [{**p, "host_port": None} for p in data["ports"]]  # chosen by backend
        return _digest(data)


@dataclass(frozen=True)
class JobSpec:
    """A one-shot container that must exit 0 before the deployment goes on."""

    name: str
    kind: JobKind
    image: str
    command: tuple[str, ...]
    user: str
    cap_drop: tuple[str, ...]
    cap_add: tuple[str, ...]
    security_opt: tuple[str, ...]
    network: str | None  # None: no network at all
    mounts: tuple[MountSpec, ...]
    uploads: tuple[UploadSpec, ...]
    labels: dict[str, str]
    timeout_s: int

    @property
    def spec_hash(self) -> str:
        return _digest({k: v for k, v in asdict(self).items() if k != "labels"})


@dataclass(frozen=True)
class NodeEndpoint:
    """How clients reach one node: from the host (published) and inside the network."""

    name: str
    container: str
    role: str
    internal_host: str
    internal_port: int
    published: PortSpec | None
    shard: int | None


@dataclass(frozen=True)
class Outputs:
    """What clients need; the connection file and Pulumi stack outputs are built from it."""

    name: str
    kind: str
    network: str
    service_name: str | None
    users: dict[str, str]
    endpoints: tuple[NodeEndpoint, ...]


@dataclass(frozen=True)
class Plan:
    name: str
    kind: Kind
    image: str
    networks: tuple[NetworkSpec, ...]
    volumes: tuple[VolumeSpec, ...]
    config_job: JobSpec
    containers: tuple[ContainerSpec, ...]
    bootstrap_jobs: tuple[JobSpec, ...]  # after containers are healthy (cluster create)
    outputs: Outputs

    @property
    def secret_names(self) -> list[str]:
        """Every secret the plan refers to: what a backend must provide."""
        texts = [upload.content for upload in self.config_job.uploads]
        for container in self.containers:
            texts.extend(container.healthcheck.test)
        for job in self.bootstrap_jobs:
            texts.extend(job.command)
        return sorted(referenced(texts))

    def container(self, name: str) -> ContainerSpec:
        return next(spec for spec in self.containers if spec.name == name)


def _digest(data: object) -> str:
    encoded = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


# -- building ------------------------------------------------------------------------


def network_name(topology: Topology) -> str:
    return f"{topology.name}-net"


def publish_network_name(topology: Topology) -> str:
    return f"{topology.name}-publish"


def base_labels(topology: Topology) -> dict[str, str]:
    return {LABEL_NAME: topology.name, LABEL_KIND: topology.kind.value}


def build_plan(topology: Topology, certificates: CertificateSet) -> Plan:
    """The complete plan for `topology` with the given public certificates."""
    labels = base_labels(topology)
    networks = [NetworkSpec(network_name(topology), topology.internal_network, labels)]
    if topology.publish.enabled and topology.internal_network:
        # Docker publishes no port of a container that is only on internal networks;
        # a second, isolated bridge carries the published ports.
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
    files = render_topology(topology, certificates)
    volumes: list[VolumeSpec] = []
    containers: list[ContainerSpec] = []
    for node in nodes(topology):
        for purpose, volume in (
            ("config", config_volume(topology, node)),
            ("data", data_volume(topology, node)),
        ):
            volumes.append(VolumeSpec(volume, {**labels, LABEL_VOLUME: purpose}, purpose))
        containers.append(_container(topology, node, files[node.name], networks))
    config_job = _config_job(topology, containers)
    bootstrap = (
        (_cluster_create_job(topology, containers),) if topology.kind is Kind.CLUSTER else ()
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
        outputs=_outputs(topology, containers),
    )


def config_volume(topology: Topology, node: Node) -> str:
    return f"{node.name}-config"


def data_volume(topology: Topology, node: Node) -> str:
    return f"{node.name}-data"


def tls_cli_args(conf_dir: str = CONF_DIR) -> tuple[str, ...]:
    """redis-cli arguments for a TLS connection with the node's own certificate."""
    return (
        "--tls",
        "--cacert",
        f"{conf_dir}/tls/ca.crt",
        "--cert",
        f"{conf_dir}/tls/server.crt",
        "--key",
        f"{conf_dir}/tls/server.key",
    )


def _healthcheck(topology: Topology, node: Node) -> HealthcheckSpec:
    # Authenticated PING over TLS as the PING-only user. Docker only accepts the
    # password on the command line; that user can do nothing but PING.
    test = (
        "CMD",
        "redis-cli",
        *tls_cli_args(),
        "-h",
        "127.0.0.1",
        "-p",
        str(node.port),
        "--user",
        topology.users.health,
        "--pass",
        password_ref("health").placeholder,
        "--no-auth-warning",
        "ping",
    )
    return HealthcheckSpec(test=test, interval_s=5, timeout_s=3, retries=3, start_period_s=10)


def _container(
    topology: Topology, node: Node, files: list[RenderedFile], networks: list[NetworkSpec]
) -> ContainerSpec:
    labels = {**base_labels(topology), LABEL_ROLE: node.role.value, LABEL_NODE: node.name}
    labels[LABEL_CONFIG] = _digest([asdict(f) for f in files])
    if node.role is Role.SENTINEL:
        command: tuple[str, ...] = ("redis-sentinel", f"{DATA_DIR}/sentinel.conf")
    else:
        command = ("redis-server", f"{CONF_DIR}/redis.conf")
    attachments = [NetworkAttachment(networks[0].name, (node.name,))]
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
        memory_bytes=topology.memory.container_limit_bytes,
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


def _config_job(topology: Topology, containers: list[ContainerSpec]) -> JobSpec:
    uploads: list[UploadSpec] = []
    mounts: list[MountSpec] = []
    script = ["set -eu", "umask 077"]
    owner = f"{topology.uid}:{topology.uid}"
    for spec in containers:
        node = spec.node.name
        targets = {
            "config": f"{JOB_VOLUME_ROOT}/{node}/config",
            "data": f"{JOB_VOLUME_ROOT}/{node}/data",
        }
        volumes = {m.target: m.volume for m in spec.mounts}
        mounts.append(MountSpec(volumes[CONF_DIR], targets["config"], read_only=False))
        # Replace the config volume's contents wholesale, so nothing stale survives.
        config_dir = shlex.quote(targets["config"])
        script.append(f"rm -rf {config_dir}/*")
        if any(f.volume == "data" for f in spec.files):
            mounts.append(MountSpec(volumes[DATA_DIR], targets["data"], read_only=False))
        for rendered in spec.files:
            staged = f"{STAGE_DIR}/{node}/{rendered.path}"
            uploads.append(UploadSpec(staged, rendered.content, 0o400))
            target = f"{targets[rendered.volume]}/{rendered.path}"
            if rendered.volume == "data":
                # Sentinel rewrites its file with what it learned (current master,
                # replicas, epochs); a re-run must not roll that back.
                script.append(
                    f"[ -e {shlex.quote(target)} ] || " + _install(staged, target, owner, 0o600)
                )
            else:
                script.append(_install(staged, target, owner, rendered.mode))
        subdirs = sorted(
            {f.path.rsplit("/", 1)[0] for f in spec.files if "/" in f.path and f.volume == "config"}
        )
        for directory in [targets["config"], *(f"{targets['config']}/{d}" for d in subdirs)]:
            script.append(
                f"chown {owner} {shlex.quote(directory)} && chmod 0500 {shlex.quote(directory)}"
            )
    # The staged copies held secrets; the job container outlives this script under Pulumi.
    script.append(f"rm -rf {STAGE_DIR}")
    script.append("echo config job: files installed")
    return JobSpec(
        name=f"{topology.name}-config",
        kind=JobKind.CONFIG,
        image=topology.image,
        command=("sh", "-c", "\n".join(script)),
        user="0:0",  # to hand files to the Redis uid: needs CHOWN, nothing else
        cap_drop=("ALL",),
        cap_add=("CHOWN", "DAC_OVERRIDE", "FOWNER"),
        security_opt=("no-new-privileges:true",),
        network=None,
        mounts=tuple(mounts),
        uploads=tuple(uploads),
        labels={**base_labels(topology), LABEL_ROLE: JobKind.CONFIG.value},
        timeout_s=60,
    )


def _install(source: str, target: str, owner: str, mode: int) -> str:
    src, dst = shlex.quote(source), shlex.quote(target)
    parent = shlex.quote(target.rsplit("/", 1)[0])
    return f"mkdir -p {parent} && cp {src} {dst} && chown {owner} {dst} && chmod {mode:04o} {dst}"


def _cluster_create_job(topology: Topology, containers: list[ContainerSpec]) -> JobSpec:
    """Forms the cluster over TLS once every node runs; does nothing if already formed."""
    cluster = topology.cluster
    assert cluster is not None
    data = [spec for spec in containers if spec.node.is_data_node]
    first = data[0].node
    auth = (
        "--user",
        topology.users.admin,
        "--pass",
        password_ref("admin").placeholder,
        "--no-auth-warning",
    )
    cli = " ".join(shlex.quote(a) for a in ("redis-cli", *tls_cli_args(), *auth))
    addresses = " ".join(f"{spec.node.name}:{spec.node.port}" for spec in data)
    wait_lines = [
        f"until {cli} -h {spec.node.name} -p {spec.node.port} info cluster 2>/dev/null "
        f"| grep -q cluster_enabled:1; do sleep 0.2; done"
        for spec in data
    ]
    script = "\n".join(
        [
            "set -eu",
            *wait_lines,
            # Idempotent: a node that already knows peers or slots belongs to a formed cluster.
            f"if {cli} -h {first.name} -p {first.port} cluster info"
            " | grep -q 'cluster_slots_assigned:16384'; then",
            "  echo cluster already formed; exit 0",
            "fi",
            f"{cli} --cluster create {addresses}"
            f" --cluster-replicas {cluster.replicas_per_master} --cluster-yes",
        ]
    )
    volumes = {m.target: m.volume for m in data[0].mounts}
    return JobSpec(
        name=f"{topology.name}-cluster-create",
        kind=JobKind.CLUSTER_CREATE,
        image=topology.image,
        command=("sh", "-c", script),
        user=f"{topology.uid}:{topology.uid}",
        cap_drop=("ALL",),
        cap_add=(),
        security_opt=("no-new-privileges:true",),
        network=network_name(topology),
        # Borrows the first node's config volume (read-only) for the CA and a client certificate.
        mounts=(MountSpec(volumes[CONF_DIR], CONF_DIR, read_only=True),),
        uploads=(),
        labels={**base_labels(topology), LABEL_ROLE: JobKind.CLUSTER_CREATE.value},
        timeout_s=120,
    )


def _outputs(topology: Topology, containers: list[ContainerSpec]) -> Outputs:
    endpoints = tuple(
        NodeEndpoint(
            name=spec.node.name,
            container=spec.name,
            role=spec.node.role.value,
            internal_host=spec.node.name,
            internal_port=spec.node.port,
            published=spec.ports[0] if spec.ports else None,
            shard=spec.node.shard,
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
    )
