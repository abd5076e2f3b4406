"""The deployment plan: pure data that both backends translate into their API.

Everything a deployment is (networks, volumes, container hardening, files, ports,
health checks, one-shot jobs, client outputs) is decided here, once. Secrets appear
only as references (`infra.core.secrets`), so the plan's shape never depends on their
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
import ipaddress
import json
import shlex
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from infra.assets import JOBS_DIR
from infra.core.certs import CertificateSet
from infra.core.cluster_jobs import (
    ADMIN_PASSWORD,
    ADMIN_PASSWORD_FILE,
    FUNCTIONS_FILE,
    STAGE_DIR,
    Shard,
    create_script,
    functions_script,
)
from infra.core.layout import FIRST_NODE_HOST, Node, Role, fixed_address_capacity, nodes
from infra.core.memory_budget import SENTINEL_CONTAINER_BYTES
from infra.core.model import Kind, Topology
from infra.core.render import (
    CONF_DIR,
    DATA_DIR,
    HEALTH_PASSWORD_FILE,
    Install,
    RenderedFile,
    function_library,
    render_topology,
)
from infra.core.secrets import referenced

LABEL_NAME = "redis-infra.name"  # every resource of a deployment carries it
LABEL_KIND = "redis-infra.kind"
LABEL_ROLE = "redis-infra.role"
LABEL_NODE = "redis-infra.node"
LABEL_SPEC = "redis-infra.spec-hash"  # hash of the container's spec, secrets excluded
LABEL_SUMMARY = "redis-infra.summary"  # JSON of ContainerSpec.summary(), to explain a change
LABEL_CONFIG = "redis-infra.config-hash"  # hash of the node's rendered files, secrets excluded
LABEL_VOLUME = "redis-infra.volume"  # "data" or "config"

JOB_VOLUME_ROOT = "/volumes"
FUNCTION_NAMES = ("token_bucket", "sliding_window")  # redis/functions/ratelimit.lua


class JobKind(StrEnum):
    CONFIG = "config"
    CLUSTER_CREATE = "cluster-create"
    FUNCTIONS = "functions"


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    internal: bool
    labels: dict[str, str]
    # Bridge driver options (the publish network turns masquerading off).
    options: dict[str, str] = field(default_factory=dict)
    addressing: Addressing | None = None  # fixed node addresses (internal network)


@dataclass(frozen=True)
class Addressing:
    """A subnet whose lower half holds the nodes' fixed addresses, upper half Docker's."""

    subnet: str
    gateway: str
    dynamic_range: str  # where Docker places containers without a fixed address (jobs)
    addresses: dict[str, str]  # node name -> IPv4 address

    @classmethod
    def for_nodes(cls, subnet: str, names: list[str]) -> Addressing:
        network = ipaddress.IPv4Network(subnet)
        _lower, upper = network.subnets(prefixlen_diff=1)
        first = FIRST_NODE_HOST
        if len(names) > fixed_address_capacity(network.prefixlen):
            raise ValueError(f"subnet {subnet} is too small for {len(names)} nodes")
        return cls(
            subnet=str(network),
            gateway=str(network.network_address + 1),
            dynamic_range=str(upper),
            addresses={
                name: str(network.network_address + first + i) for i, name in enumerate(names)
            },
        )


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
    ipv4_address: str | None = None


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
    address: str | None = None  # fixed IP on the internal network (Sentinel, Cluster)


@dataclass(frozen=True)
class Outputs:
    """What clients need; the connection file and Pulumi stack outputs are built from it."""

    name: str
    kind: str
    network: str
    service_name: str | None
    users: dict[str, str]
    endpoints: tuple[NodeEndpoint, ...]
    access: dict[str, object] = field(default_factory=dict)  # what the app may use, for clients


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
            texts.extend(upload.content for upload in job.uploads)
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
    command: tuple[str, ...] = (program, main.container_path)
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


# Shell functions of the config job; files are staged under /stage, installed into volumes.
CONFIG_JOB_FUNCTIONS = (JOBS_DIR / "config-job.sh").read_text(encoding="utf-8")
_INSTALLERS = {
    Install.REPLACE: "install_file",
    Install.KEEP_ROLE: "install_keeping_role",
    Install.KEEP_SENTINEL_STATE: "install_keeping_sentinel_state",
}


def _address_pattern(addresses: list[str]) -> str:
    """An extended regex matching exactly these IPv4 addresses."""
    return "|".join(address.replace(".", r"\.") for address in addresses) or "^$"


def _config_job(
    topology: Topology, containers: list[ContainerSpec], addressing: Addressing | None
) -> JobSpec:
    uploads: list[UploadSpec] = []
    mounts: list[MountSpec] = []
    owner = f"{topology.uid}:{topology.uid}"
    known = addressing.addresses if addressing else {}
    data = [known[s.node.name] for s in containers if s.node.is_data_node and s.node.name in known]
    peers = [known[s.node.name] for s in containers if not s.node.is_data_node]
    script = [
        "set -eu",
        # The staged files hold private keys and passwords: gone however this ends.
        f"trap 'rm -rf {STAGE_DIR}' EXIT",
        "umask 077",
        f"OWNER={owner}",
        f"DATA_NODES={shlex.quote(_address_pattern(data))}",
        f"SENTINELS={shlex.quote(_address_pattern(peers))}",
        CONFIG_JOB_FUNCTIONS.strip(),
    ]
    for spec in containers:
        node = spec.node.name
        roots = {
            "config": f"{JOB_VOLUME_ROOT}/{node}/config",
            "data": f"{JOB_VOLUME_ROOT}/{node}/data",
        }
        volumes = {m.target: m.volume for m in spec.mounts}
        mounts.append(MountSpec(volumes[CONF_DIR], roots["config"], read_only=False))
        # The config volume is rebuilt from scratch, so nothing stale survives in it.
        script.append(f"rm -rf {shlex.quote(roots['config'])}/*")
        directories = {roots["config"]: "0500"}
        if any(f.volume == "data" for f in spec.files):
            mounts.append(MountSpec(volumes[DATA_DIR], roots["data"], read_only=False))
            # A fresh volume mounted here starts root-owned. Owner-only: Redis's CONFIG
            # REWRITE leaves redis.conf (masterauth in it) readable in this folder.
            directories[roots["data"]] = "0700"
        for rendered in spec.files:
            directories.setdefault(
                f"{roots[rendered.volume]}/{rendered.path}".rsplit("/", 1)[0], "0500"
            )
        for directory, mode in sorted(directories.items()):
            script.append(f"own_directory {shlex.quote(directory)} {mode}")
        for rendered in spec.files:
            staged = f"{STAGE_DIR}/{node}/{rendered.path}"
            uploads.append(UploadSpec(staged, rendered.content, 0o400))
            target = f"{roots[rendered.volume]}/{rendered.path}"
            mode = f"{rendered.mode if rendered.volume == 'config' else 0o600:04o}"
            installer = _INSTALLERS[rendered.install]
            script.append(f"{installer} {shlex.quote(staged)} {shlex.quote(target)} {mode}")
    # The staged copies held secrets; under Pulumi the job container outlives this script.
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


def shards_of(containers: list[ContainerSpec], addressing: Addressing) -> list[Shard]:
    """Cluster shards in plan order: (master, replicas) with their fixed addresses."""
    by_shard: dict[int, list[Node]] = {}
    for spec in containers:
        if spec.node.shard is not None:
            by_shard.setdefault(spec.node.shard, []).append(spec.node)
    shards = []
    for members in (by_shard[shard] for shard in sorted(by_shard)):
        pairs = [(node.name, addressing.addresses[node.name]) for node in members]
        shards.append(Shard(master=pairs[0], replicas=tuple(pairs[1:])))
    return shards


def operator_job(
    topology: Topology,
    containers: list[ContainerSpec],
    kind: JobKind,
    script: str,
) -> JobSpec:
    """A one-shot `redis-cli` job on the network, as the operator (admin) user.

    It borrows the first data node's config volume (read-only) for the CA and a
    client certificate, and reads the operator's password from an upload, deleting
    it before doing anything else (under Pulumi the exited container stays, and
    anything left in it can be copied out). It runs as root so that it may delete
    what Docker uploaded as root, with one capability, DAC_READ_SEARCH, to read the
    node's key that belongs to the Redis uid; nothing else.
    """
    data = [spec for spec in containers if spec.node.is_data_node]
    volumes = {m.target: m.volume for m in data[0].mounts}
    return JobSpec(
        name=f"{topology.name}-{kind.value}",
        kind=kind,
        image=topology.image,
        command=("sh", "-c", script),
        user="0:0",
        cap_drop=("ALL",),
        cap_add=("DAC_READ_SEARCH",),
        security_opt=("no-new-privileges:true",),
        network=network_name(topology),
        mounts=(MountSpec(volumes[CONF_DIR], CONF_DIR, read_only=True),),
        uploads=(
            UploadSpec(ADMIN_PASSWORD_FILE, ADMIN_PASSWORD.placeholder, 0o400),
            UploadSpec(FUNCTIONS_FILE, function_library(), 0o444),
        ),
        labels={**base_labels(topology), LABEL_ROLE: kind.value},
        timeout_s=180,
    )


def _job_addresses(containers: list[ContainerSpec], addressing: Addressing | None) -> list[str]:
    """How a job on the network reaches each data node: fixed address, else name."""
    return [
        addressing.addresses[spec.node.name] if addressing else spec.node.name
        for spec in containers
        if spec.node.is_data_node
    ]


def _functions_job(
    topology: Topology, containers: list[ContainerSpec], addressing: Addressing | None
) -> JobSpec:
    """Loads the shipped function library on the master (replicas receive it)."""
    script = functions_script(
        _job_addresses(containers, addressing), tls_cli_args(), topology.users.admin, topology.port
    )
    return operator_job(topology, containers, JobKind.FUNCTIONS, script)


def _cluster_create_job(
    topology: Topology, containers: list[ContainerSpec], addressing: Addressing | None
) -> JobSpec:
    """Forms the cluster over TLS once every node runs, then loads the function library
    on every master; does nothing that is already done."""
    assert addressing is not None
    data = [spec for spec in containers if spec.node.is_data_node]
    script = create_script(
        shards_of(data, addressing), tls_cli_args(), topology.users.admin, topology.port
    )
    return operator_job(topology, data, JobKind.CLUSTER_CREATE, script)


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
