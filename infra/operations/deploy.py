"""`up`, `down` and `status` for the local backend: the steps around the Docker calls.

Order matters for safety: everything that can be wrong with the input (topology,
secrets, certificates, image, ports, an existing deployment that differs) is
found before the first resource is created, and a failed first deployment removes
exactly what it created.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path

import docker

from infra.backends.image import ensure_image_available
from infra.backends.local import Created, JobResult, LocalBackend
from infra.backends.local_inventory import LABEL_STATE_DIR, Inventory, nodes_on_other_image
from infra.core.certs_brought import tls_bundle
from infra.core.connection import (
    ConnectionInfo,
    build_connection_info,
    read_connection_file,
    tls_paths,
)
from infra.core.errors import ConfigError, DeploymentError
from infra.core.layout import single_engine_only
from infra.core.model import Topology
from infra.core.plan import build_plan, fixed_addresses, needs_fixed_addresses
from infra.core.plan_specs import (
    LABEL_ROLE,
    LABEL_VOLUME,
    READY_TIMEOUT_S,
    JobKind,
    JobSpec,
    Plan,
)
from infra.operations.function_library import (
    container_jobs,
    host_loads_library,
    load_library,
    nodes_lacking_library,
)
from infra.operations.observe_sentinel import node_role
from infra.operations.readiness import wait_for_ping, wait_topology_ready
from infra.operations.state import StateDir, default_state_dir, port_in_use


class DeploymentDiffersError(DeploymentError):
    """`up` found the deployment already there, but not as the plan says."""

    def __init__(self, name: str, differences: list[str], connection_file: Path) -> None:
        self.differences = differences
        lines = [f"deployment {name} exists and differs from what was asked; nothing was changed:"]
        lines += [f"  - {difference}" for difference in differences]
        lines.append(
            f"Fix: to apply the change and keep the data, run `redis-infra down --name {name} "
            f"--keep-data`, then this `redis-infra up` again (connection file: {connection_file}); "
            "a scaled cluster needs --set cluster.masters=<its masters> instead"
        )
        super().__init__("\n".join(lines))


@dataclass
class UpResult:
    info: ConnectionInfo
    connection_file: Path
    created: bool  # False: the deployment was already there, as planned
    seconds_total: float
    seconds_start_to_ready: float | None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Prepared:
    """Everything `up` needs, resolved before touching the engine."""

    topology: Topology
    state: StateDir
    plan: Plan
    secrets: dict[str, str]
    host_ports: dict[str, int]
    info: ConnectionInfo


def prepare(
    topology: Topology,
    inventory: Inventory,
    used_subnets: Callable[[], list[IPv4Network]],
    state_path: Path | None = None,
) -> Prepared:
    """Secrets, subnet, certificates, plan, ports and connection info for `topology`,
    kept in `state_path` (default: where the deployment's labels or the state home say)."""
    single_engine_only(topology)
    state = StateDir(state_path or state_dir_for(topology.name, inventory)).create()
    subnet = None
    if needs_fixed_addresses(topology) and topology.subnet is None:
        subnet = state.subnet(used_subnets())
    # Certificates cover the fixed addresses too: Sentinel announces masters by address.
    bundle = tls_bundle(topology, state.tls_dir, fixed_addresses(topology, subnet))
    plan = build_plan(topology, bundle.certificates, subnet)
    secrets = {**state.secrets(plan.password_names), **bundle.private_keys}
    missing = sorted(set(plan.secret_names) - set(secrets))
    if missing:  # pragma: no cover - a renderer referring to a secret nobody provides
        raise DeploymentError(f"plan refers to secrets nobody provides: {', '.join(missing)}")
    wanted_ports = {spec.name: spec.ports[0].host_port for spec in plan.containers if spec.ports}
    host_ip = topology.publish.host_ip
    host_ports = state.host_ports(wanted_ports, host_ip) if wanted_ports else {}
    certificates = bundle.certificates
    info = build_connection_info(
        plan.outputs, tls_paths(certificates), secrets, host_ports, topology.settings
    )
    return Prepared(topology, state, plan, secrets, host_ports, info)


def state_dir_for(name: str, inventory: Inventory) -> Path:
    """The deployment's state folder: where its containers or kept volumes say, else the
    default one. A deployment whose recorded folder is gone is not given new secrets."""
    recorded = inventory.state_dir()
    if recorded is None:
        return default_state_dir(name)
    path = Path(recorded)
    if not (path / "secrets.json").exists():
        what = "containers" if inventory.containers else "kept data volumes"
        raise ConfigError.single(
            str(path),
            "state folder",
            f"deployment {name} has {what} whose passwords and certificates were kept in "
            f"{path}, which no longer holds them; new ones would not match its data and "
            "Sentinel state, and clients trusting the old CA would break",
            f"restore {path} from your backup, or remove the deployment with "
            f"`redis-infra down --name {name}` (this deletes its kept data)",
        )
    return path


def up(
    topology: Topology,
    client: docker.DockerClient,
    *,
    connection_file: Path | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> UpResult:
    """Deploy `topology`, or confirm it is deployed as planned; write the connection file."""
    started = time.monotonic()
    backend = LocalBackend(client)
    inventory = backend.inventory(topology.name)
    prepared = prepare(topology, inventory, backend.used_subnets)
    image_id = ensure_image_available(client, topology.image)
    out = connection_file.expanduser().resolve() if connection_file else None
    if inventory.containers:
        return _confirm_existing(
            backend, prepared, inventory, out, started, ready_timeout_s, image_id
        )
    for spec in prepared.plan.containers:
        port = prepared.host_ports.get(spec.name)
        if port is not None and port_in_use(topology.publish.host_ip, port):
            raise ConfigError.single(
                "publish",
                f"{spec.name} host port",
                f"{topology.publish.host_ip}:{port} is already in use by another program",
                "free the port, or set publish.base_port to a free range "
                f"(or delete {prepared.state.path / 'allocations.json'} to pick new ports)",
            )
    created = Created()
    extra_labels = {LABEL_STATE_DIR: str(prepared.state.path)}
    installing: Future[JobResult] | None = None
    try:
        installing = backend.create_stopped(
            prepared.plan, prepared.secrets, prepared.host_ports, extra_labels, created, inventory
        )
        containers_started = _wait_ready(
            backend,
            prepared,
            ready_timeout_s,
            start=lambda: backend.start(prepared.plan, installing),
        )
        seconds_to_ready = time.monotonic() - containers_started
    except BaseException:
        try:
            if installing is not None:  # its volumes cannot go while it runs
                backend.abandon_config(prepared.plan, installing)
        finally:
            backend.rollback(created)
        raise
    written = write_connection_files(prepared, out)
    prepared.state.save_settings(topology.settings)
    notes = []
    kept = [
        v
        for v in inventory.volumes
        if inventory.volume_labels.get(v, {}).get(LABEL_VOLUME) == "data"
    ]
    if kept:  # a config volume left behind was rebuilt, not reused
        notes.append(f"reused {len(kept)} kept volume(s): data from before is back")
    return UpResult(
        prepared.info, written, True, time.monotonic() - started, seconds_to_ready, notes
    )


def write_connection_files(prepared: Prepared, copy: Path | None) -> Path:
    """The application's file (and a copy where asked), the operator's files beside it."""
    state = prepared.state
    prepared.info.write(state.connection_file)
    prepared.info.write_operator_files(state.path)
    if copy is None:
        return state.connection_file
    prepared.info.write(copy)
    state.record_copy(copy)
    return copy


def _wait_ready(
    backend: LocalBackend,
    prepared: Prepared,
    timeout_s: float,
    *,
    fresh: bool = True,
    start: Callable[[], None] | None = None,
) -> float:
    """`start` the nodes, if asked, then wait until every node answers, the bootstrap
    jobs (cluster create) ran and the topology is whole, then (every node published)
    load the function library from here; when the nodes began to start."""
    deadline = time.monotonic() + timeout_s
    names = [spec.name for spec in prepared.plan.containers]
    info = prepared.info
    # Fresh containers must not stop or restart while starting: fail at once if they do.
    alive = (lambda: backend.check_running(names)) if fresh else None
    published = any(node.host is not None for node in info.nodes)
    library_from_host = fresh and host_loads_library(prepared.plan, info)
    jobs = container_jobs(prepared.plan, info) if fresh else ()
    # The bootstrap jobs (cluster create, the function library unless the host loads
    # it) start with the nodes: each waits for the nodes it needs, and its container's
    # own start (~0.3 s here) overlaps theirs instead of following it.
    cancelled = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(_run_jobs, backend, jobs, prepared.secrets, cancelled)
        try:
            started = time.monotonic()  # as the fixtures count: from the first node's start
            if start is not None:
                start()
            if published:
                wait_for_ping(info, timeout_s, alive=alive)
            else:  # nothing published: Docker's health check (an authenticated TLS PING) decides
                backend.wait_healthy(names, timeout_s)
            running.result()  # each job has its own timeout (JobSpec.timeout_s)
        except BaseException:
            _end_jobs(backend, jobs, running, cancelled)
            raise
    if published:
        wait_topology_ready(info, max(deadline - time.monotonic(), 10.0), alive)
    if library_from_host:
        load_library(info, max(deadline - time.monotonic(), 10.0), alive)
    return started


def _run_jobs(
    backend: LocalBackend,
    jobs: tuple[JobSpec, ...],
    secrets: dict[str, str],
    cancelled: threading.Event,
) -> None:
    for job in jobs:
        if cancelled.is_set():
            return
        run_job_or_fail(backend, job, secrets)


def _end_jobs(
    backend: LocalBackend,
    jobs: tuple[JobSpec, ...],
    running: Future[None],
    cancelled: threading.Event,
) -> None:
    """A node failed (or Ctrl-C) while a job waits for it: no job starts any more, and
    the running one's container is removed (its wait then returns) until the thread
    is done, so nothing is left behind and nothing waits out its timeout."""
    cancelled.set()
    while not running.done():
        for job in jobs:
            backend.remove_container(job.name)
        with contextlib.suppress(FutureTimeout):
            running.exception(timeout=0.5)


def run_job_or_fail(backend: LocalBackend, job: JobSpec, secrets: dict[str, str]) -> JobResult:
    result = backend.run_job(job, secrets)
    if result.exit_code != 0:
        raise DeploymentError(f"job {job.name} exited {result.exit_code}:\n{result.logs.strip()}")
    return result


def _confirm_existing(
    backend: LocalBackend,
    prepared: Prepared,
    inventory: Inventory,
    out: Path | None,
    started: float,
    ready_timeout_s: float,
    image_id: str,
) -> UpResult:
    differences = backend.differences(prepared.plan, inventory, prepared.host_ports)
    if differences:
        raise DeploymentDiffersError(
            prepared.topology.name, differences, out or prepared.state.connection_file
        )
    notes: list[str] = []
    stopped = [
        name
        for name, container in inventory.containers.items()
        if container.status != "running"
        and container.labels.get(LABEL_ROLE) not in {kind.value for kind in JobKind}
    ]
    for name in stopped:
        backend.client.containers.get(name).start()
    if stopped:
        notes.append(f"started stopped container(s): {', '.join(stopped)}")
    _wait_ready(backend, prepared, ready_timeout_s, fresh=False)
    if host_loads_library(prepared.plan, prepared.info):
        # The host loads it once the nodes are ready: an `up` killed before that
        # (no rollback runs then) left the nodes without it.
        lacking = nodes_lacking_library(prepared.info)
        if lacking:
            load_library(prepared.info, ready_timeout_s)
            notes.append(f"loaded the function library on {', '.join(lacking)}")
    # The id `up` found as it began: a rebuild or pull since then is for the next `up`.
    outdated = nodes_on_other_image(inventory, image_id)
    if outdated:
        name, runs = prepared.topology.name, "runs" if len(outdated) == 1 else "run"
        notes.append(
            f"{', '.join(outdated)} {runs} an older image than the one "
            f"{prepared.topology.image} names now (the tag was rebuilt or pulled since "
            "the containers were made). To move every node to it, keeping the data: "
            f"`redis-infra down --name {name} --keep-data`, then the same `up` again "
            "(the nodes are down meanwhile)"
        )
    notes = notes or ["already deployed as planned: nothing changed"]
    written = write_connection_files(prepared, out)
    return UpResult(prepared.info, written, False, time.monotonic() - started, None, notes)


@dataclass
class DownResult:
    name: str
    removed: Inventory
    kept_volumes: list[str]
    state_dir: Path | None


def down(name: str, client: docker.DockerClient, *, keep_data: bool) -> DownResult:
    """Remove everything labelled with `name`; keep data volumes (and secrets) if asked."""
    backend = LocalBackend(client)
    before = backend.inventory(name)
    state_dir = Path(before.state_dir() or default_state_dir(name))
    removed = backend.remove(name, keep_data=keep_data)
    after = backend.inventory(name)
    if not keep_data:
        # The passwords and certificates of a deleted deployment protect nothing.
        StateDir(state_dir).remove(name)
    return DownResult(name, removed, after.volumes, state_dir)


@dataclass(frozen=True)
class NodeStatus:
    container: str
    role: str  # role at deployment; the live role can differ after a failover
    state: str
    health: str
    published: str
    live_role: str = "-"  # what the node says now (INFO replication), if reachable


def status(name: str, client: docker.DockerClient) -> list[NodeStatus]:
    """Docker's view of every container of deployment `name`."""
    inventory = LocalBackend(client).inventory(name)
    live: dict[str, str] = {}
    if inventory.containers:
        with contextlib.suppress(ConfigError):  # no state folder here: Docker's view only
            info = deployment_info(name, client)
            for node in info.data_nodes():
                if node.host is not None:
                    role = node_role(info, node.name)
                    live[node.container] = (
                        ("replica" if role.role == "slave" else role.role)
                        if role
                        else "unreachable"
                    )
    rows = []
    for container_name, container in sorted(inventory.containers.items()):
        state = container.attrs.get("State", {})
        ports = container.attrs.get("HostConfig", {}).get("PortBindings") or {}
        published = ", ".join(
            f"{binding['HostIp']}:{binding['HostPort']}->{port}"
            for port, bindings in ports.items()
            for binding in bindings or []
        )
        rows.append(
            NodeStatus(
                container=container_name,
                role=container.labels.get(LABEL_ROLE, "?"),
                state=state.get("Status", "?"),
                health=state.get("Health", {}).get("Status", "-"),
                published=published or "-",
                live_role=live.get(container_name, "-"),
            )
        )
    return rows


def state_of(name: str, client: docker.DockerClient) -> StateDir:
    """The state folder of deployment `name` on this machine."""
    return StateDir(state_dir_for(name, LocalBackend(client).inventory(name)))


def connection_file_for(name: str, client: docker.DockerClient) -> Path:
    """Where `up` wrote deployment `name`'s (application) connection file."""
    return state_of(name, client).connection_file


def deployment_info(
    name: str, client: docker.DockerClient, *, breakglass: bool = False
) -> ConnectionInfo:
    """The connection file with the operator's credentials (and break-glass, if asked)."""
    state = state_of(name, client)
    return read_connection_file(
        state.connection_file,
        operator_file=state.operator_file,
        breakglass_file=state.breakglass_file if breakglass else None,
    )
