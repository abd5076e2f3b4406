"""What a plan is made of: networks, volumes, containers, jobs and outputs as
plain data, with the labels and names every resource carries."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from infra.core.layout import FIRST_NODE_HOST, Node, Role, fixed_address_capacity
from infra.core.model import Kind, Topology
from infra.core.render import (
    CONF_DIR,
    RenderedFile,
)
from infra.core.secrets import password_names, referenced

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


# A job is a shell and redis-cli: bounded like a node, far below one.
JOB_MEMORY_BYTES = 64 * 1024 * 1024


JOB_PIDS_LIMIT = 64


# How long a backend waits for a node's authenticated health check (local and Pulumi).
READY_TIMEOUT_S = 90
# How often a bring-up tries a starting node's PING from the host. A node answers
# ~20 ms after its start, and a refused connect costs ~0.1 ms (with Docker's userland
# proxy off, as scripts/ensure-docker.sh runs it), so every 10 ms for the first second;
# then every 50 ms (the proxy accepts every connect, so each try is a TLS handshake,
# and a node loading its data answers none). And how often it asks the engine whether
# the node's container died meanwhile (a call per container).
PING_POLL_S = 0.01
PING_POLL_LATER_S = 0.05
PING_FAST_FOR_S = 1.0
ALIVE_EVERY_S = 0.1


def ping_poll_s(waited_s: float) -> float:
    """The pause before the next PING of a node waited for `waited_s` so far."""
    return PING_POLL_S if waited_s < PING_FAST_FOR_S else PING_POLL_LATER_S


# What "ready" means per kind: what `up` (and every bring-up figure) waits for.
READY_MEANS = {
    Kind.SINGLE: "authenticated TLS PING",
    Kind.SENTINEL: "TLS PING on every node, group converged",
    Kind.CLUSTER: "cluster formed, all slots served, every replica linked",
}


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
class InstalledEntry:
    """A folder or file as the config job leaves it in volumes that were empty."""

    path: str  # absolute, inside the config job's container (under JOB_VOLUME_ROOT)
    mode: int
    uid: int  # owner and group
    content: str | None = None  # None: a folder; a file's may hold secret placeholders


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
    # The config job's outcome where every volume it mounts is new: a backend that made
    # them all may extract these into the job's container, created and never started,
    # instead of running it (~0.1 s against a container start beside the nodes').
    # In order; each node's marker (its files are complete) after all the files.
    fresh_install: tuple[InstalledEntry, ...] = ()
    # The same job without its last steps (the function library, the wait until every
    # node is ready), for a backend that reaches every node and does those from the host.
    host_finishes: JobSpec | None = None
    memory_bytes: int = JOB_MEMORY_BYTES
    pids_limit: int = JOB_PIDS_LIMIT  # the local backend; Pulumi's provider has no such limit

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

    @property
    def password_names(self) -> list[str]:
        """The passwords among them, and those the credential files need."""
        return password_names(self.secret_names)

    def container(self, name: str) -> ContainerSpec:
        return next(spec for spec in self.containers if spec.name == name)

    @property
    def start_waves(self) -> tuple[tuple[ContainerSpec, ...], ...]:
        """The nodes in the order a backend starts them, each wave side by side.

        Replicas start last. One that finds its master not yet listening tries again
        only on its next replication tick, up to 1 s later. A Cluster master refuses to
        report `cluster_state:ok` for its first 2 s (Redis's writable delay, counted
        from its own start), and the cluster is ready only once every master is past
        it: started first, masters spend those 2 s while the replicas start, not after
        Docker has started all six (~1.3 s here). Sentinels start with the master: they
        reach each other and the master while the replicas start (measured here, median
        of 5: 2.60 s to ready, against 3.00 s with the sentinels in the second wave and
        3.31 s in a third). A wave waits for Docker's start of the previous wave's data
        nodes only: replicas need their master listening, not the sentinels (2.71 s
        against 2.92 s, medians of 7, one run)."""
        if self.kind is Kind.SINGLE:
            return (self.containers,)
        first = tuple(s for s in self.containers if s.node.role is not Role.REPLICA)
        return first, tuple(s for s in self.containers if s.node.role is Role.REPLICA)


def _digest(data: object) -> str:
    encoded = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def network_name(topology: Topology) -> str:
    return f"{topology.name}-net"


def publish_network_name(topology: Topology) -> str:
    return f"{topology.name}-publish"


def base_labels(topology: Topology) -> dict[str, str]:
    return {LABEL_NAME: topology.name, LABEL_KIND: topology.kind.value}


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
