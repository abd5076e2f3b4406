"""A hardened Redis deployment as a testcontainers object, for application test suites
(the topologies are in `topologies.py`).

    with SentinelDeployment().with_setting("sentinel.down_after_ms", 1000) as group:
        r = group.client()                       # follows the master through Sentinel
        r.set("app:session:1", "alice")
        old = group.master()
        group.kill(old)
        new = group.wait_for_new_master(old)

Each object follows testcontainers' conventions: a constructor and `with_*` builders
that return the object, `start()` / `stop()`, and a context manager that removes
every container, network and volume even when the start fails. Underneath is the
same plan the CLI and the Pulumi program deploy (TLS on, default user off, the
production ACLs, non-root read-only containers), translated by the testcontainers
backend; passwords and certificates live in a private temporary folder that `stop()`
deletes.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import docker
from docker.models.containers import Container
from redis.cluster import RedisCluster
from testcontainers.core.waiting_utils import WaitStrategy

import redis
from infra.backends.docker_engine import docker_client
from infra.backends.image import DEFAULT_IMAGE, build_image, ensure_image_available
from infra.backends.local_inventory import LABEL_STATE_DIR, Inventory, read_inventory, used_subnets
from infra.backends.testcontainers_backend import (
    ContainerLogWait,
    HealthcheckLogWait,
    TestcontainersBackend,
)
from infra.core.connection import OPERATOR_FILE, ConnectionInfo, read_connection_file
from infra.core.errors import ConfigError, DeploymentError, EngineError
from infra.core.model import Topology
from infra.core.plan_specs import READY_TIMEOUT_S
from infra.core.topology import deep_merge, load_topology
from infra.operations.client import connect, no_retry, node_client
from infra.operations.deploy import Prepared, prepare, write_connection_files
from infra.operations.drills.base import Drill
from infra.operations.drills.faults import Faults
from infra.operations.drills.report import DrillReport, WriteOutcome, write_outcome
from infra.operations.drills.run import DRILLS
from infra.operations.drills.writer import SequencedWriter, WriteLog, WriteTarget
from infra.operations.function_library import container_jobs, host_loads_library, load_library
from infra.operations.readiness import wait_topology_ready
from infra.testing.sweep import OWNER_LABEL, owner_label, private_home, remove_deployment

RedisClient = redis.Redis | RedisCluster


def _dotted(path: str, value: Any) -> dict[str, Any]:
    """`"sentinel.down_after_ms", 1000` as the nested mapping the topology loader merges."""
    nested: Any = value
    for part in reversed(path.split(".")):
        nested = {part: nested}
    return dict(nested)


class RedisDeployment:
    """One deployment of a topology; subclasses fix the kind."""

    kind: ClassVar[str] = ""

    def __init__(self, image: str = DEFAULT_IMAGE, *, topology: str | Path | None = None) -> None:
        self.image = image
        self.topology_source = str(topology) if topology is not None else self.kind
        self.name = f"tc-{self.kind[:3]}-{secrets.token_hex(3)}"
        self.overrides: dict[str, Any] = {}
        self.settings_source = "with_setting()"  # where the settings came from, for errors
        self.ready_timeout_s = float(READY_TIMEOUT_S)
        self._docker: docker.DockerClient | None = None
        self._backend: TestcontainersBackend | None = None
        self._home: Path | None = None
        self._info: ConnectionInfo | None = None
        self._faults: Faults | None = None
        self.topology: Topology | None = None  # as validated at start (None: attached)
        self._connection_file: Path | None = None
        self.seconds_to_ready: float | None = None  # from start() to ready
        self.seconds_start_to_ready: float | None = None  # from the first node's start

    # -- builders ---------------------------------------------------------------------

    def with_setting(self, path: str, value: Any) -> Self:
        """A topology setting by its dotted path, as `--set` takes it."""
        if not isinstance(path, str) or not path:
            raise ConfigError.single(
                str(path), "setting", "is not a dotted path", 'name it like "sentinel.quorum"'
            )
        self.overrides = deep_merge(self.overrides, _dotted(path, value))
        return self

    def with_settings(self, settings: Mapping[str, Any]) -> Self:
        """Several settings: dotted paths or nested sections."""
        for key, value in settings.items():
            self.with_setting(key, value)
        return self

    def with_name(self, name: str) -> Self:
        """The prefix of every container, network and volume (default: a unique one)."""
        self.name = name
        return self

    def with_ready_timeout(self, seconds: float) -> Self:
        self.ready_timeout_s = seconds
        return self

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Validate, plan, create and wait until ready (what `redis-infra up` waits for).

        Bad settings raise ConfigError before any container exists; any later failure
        removes everything made so far before it propagates."""
        if self._info is not None:
            raise DeploymentError(f"{self.name} is started already; stop() it first")
        topology = load_topology(
            self.topology_source,
            self.name,
            {"image": self.image, **self.overrides},
            override_source=self.settings_source,
        )
        self.topology = topology
        engine = self._docker = docker_client()
        taken = read_inventory(engine, self.name)
        if not taken.empty:  # never touch, let alone remove, what someone else runs
            raise ConfigError.single(
                "with_name",
                "name",
                f"a deployment named {self.name} exists on this engine already",
                "pick another name (or leave the default, which is unique)",
            )
        _ensure_image(engine, topology.image)
        self._home = private_home()  # 0700, removed by stop() (or by a later sweep)
        started = time.monotonic()
        try:
            prepared = prepare(
                topology, Inventory(), lambda: used_subnets(engine), self._home / self.name
            )
            labels = {LABEL_STATE_DIR: str(prepared.state.path), OWNER_LABEL: owner_label()}
            self._backend = TestcontainersBackend(engine, labels)
            self._info = prepared.info
            self._create(prepared, self._backend)
            self._connection_file = write_connection_files(prepared, None)
            prepared.state.save_settings(topology.settings)  # what `scale` grows from
        except BaseException:
            self.stop()
            raise
        ready = time.monotonic()
        self.seconds_to_ready = ready - started
        if self._backend.nodes_started_at is not None:
            self.seconds_start_to_ready = ready - self._backend.nodes_started_at
        return self

    @classmethod
    def attach(
        cls,
        connection_file: str | os.PathLike[str],
        operator_file: str | os.PathLike[str] | None = None,
    ) -> Self:
        """An existing deployment (one a CI job brought up once), through its connection
        file; the operator file beside it (as `up` writes it) enables reset and faults.
        `stop()` leaves an attached deployment alone."""
        path = Path(connection_file).expanduser().resolve()
        beside = path.with_name(OPERATOR_FILE)
        operator = Path(operator_file) if operator_file else (beside if beside.exists() else None)
        info = read_connection_file(path, operator_file=operator)
        if cls.kind and info.topology != cls.kind:
            raise ConfigError.single(
                str(path),
                "topology",
                f"deployment {info.name} is a {info.topology} deployment, not {cls.kind}",
                f"attach it as a {info.topology} deployment",
            )
        deployment = cls()
        deployment.name, deployment._info, deployment._connection_file = info.name, info, path
        with contextlib.suppress(EngineError):  # faults need the engine; clients do not
            deployment._docker = docker_client()
        return deployment

    def _create(self, prepared: Prepared, backend: TestcontainersBackend) -> None:
        """Nodes in the plan's waves, each waited for, the bootstrap jobs beside them; then the
        topology's own readiness (what `redis-infra up` waits for)."""
        info, timeout = prepared.info, self.ready_timeout_s
        waits: dict[str, WaitStrategy] = {}
        for spec in prepared.plan.containers:
            if info.node(spec.node.name).host is not None:
                waits[spec.name] = ContainerLogWait(
                    "authenticated TLS PING", _pings(info, spec.node.name), timeout
                )
            else:  # not reachable from here: Docker's health check (the same PING) decides
                waits[spec.name] = HealthcheckLogWait().with_startup_timeout(math.ceil(timeout))
        # The function library comes from here when every node is published (as `up`
        # does it): the plan without that job container.
        plan = replace(prepared.plan, bootstrap_jobs=container_jobs(prepared.plan, info))
        backend.create(plan, prepared.secrets, prepared.host_ports, waits)
        if any(node.host is not None for node in info.nodes):
            wait_topology_ready(info, timeout, self._alive)
        if host_loads_library(prepared.plan, info):
            load_library(info, timeout, self._alive)

    def _alive(self) -> None:
        """Raise with the log of a node that stopped or restarted while starting."""
        engine = self._engine()
        for name in self._backend.nodes if self._backend else ():
            state = engine.api.inspect_container(name)
            running = state["State"].get("Running") and not state["State"].get("Restarting")
            if not running or state.get("RestartCount", 0):
                logs = bytes(engine.api.logs(name, tail=40)).decode(errors="replace")
                raise DeploymentError(f"container {name} stopped or restarted:\n{logs}")

    def stop(self) -> None:
        """Remove every container, network and volume, and the secrets folder (an attached
        deployment is not ours to remove: only forget it)."""
        home, backend, engine = self._home, self._backend, self._docker
        self._backend, self._home, self._info, self._connection_file = None, None, None, None
        self._faults = None
        if home is None:
            return
        try:
            # First whatever carries the name (start() made sure it was free), made by
            # anyone: a scale-out, or the local backend's `up` recreating containers;
            # then this backend's own objects; the secrets last, whatever failed before.
            if engine is not None:
                remove_deployment(engine, self.name)
        finally:
            try:
                if backend is not None:
                    backend.stop()
            finally:
                shutil.rmtree(home, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what a test uses ---------------------------------------------------------------

    @property
    def info(self) -> ConnectionInfo:
        """The connection details with the operator's credentials (for fault helpers)."""
        if self._info is None:
            raise DeploymentError(f"{type(self).__name__} {self.name} is not started")
        return self._info

    @property
    def connection_file(self) -> Path:
        """The application's connection file, as `redis-infra up` writes it."""
        if self._connection_file is None:
            raise DeploymentError(f"{type(self).__name__} {self.name} is not started")
        return self._connection_file

    def client(self, role: str = "app", **options: Any) -> RedisClient:
        """A redis-py client from the host as the application (or `role`) would use it."""
        return connect(self.info, role=role, **options)

    def reset(self) -> None:
        """Delete every key (operator FLUSHALL on each master); the function library and
        the deployment stay. Replicas follow through replication."""
        if "admin" not in self.info.users:
            raise DeploymentError(
                f"resetting {self.name} needs the operator's credentials: attach it with "
                "the operator.json `redis-infra up` wrote beside its connection file"
            )
        for node in self.masters():
            admin = node_client(self.info, self.info.node(node), role="admin", retry=no_retry())
            try:
                admin.flushall()
            finally:
                admin.close()

    def masters(self) -> list[str]:
        return [self.info.data_nodes()[0].name]

    def master(self) -> str:
        """The node that takes writes now."""
        return self.masters()[0]

    # -- faults (the drills' own) -----------------------------------------------------------

    @property
    def engine(self) -> docker.DockerClient:
        """The Docker engine that runs the deployment."""
        return self._engine()

    def _engine(self) -> docker.DockerClient:
        if self._docker is None:
            raise EngineError("faults and drills need the Docker engine that runs the deployment")
        return self._docker

    @property
    def faults(self) -> Faults:
        """One for the deployment's life: a partition and its heal share what it knows."""
        if self._faults is None:
            self._faults = Faults.of(self._engine(), self.info)
        return self._faults

    def container_of(self, node: str) -> str:
        return self.info.node(node).container

    def container(self, node: str | None = None) -> Container:
        """The Docker container of `node` (default: the first data node)."""
        return self._engine().containers.get(
            self.container_of(node or self.info.data_nodes()[0].name)
        )

    def kill(self, node: str) -> None:
        """SIGKILL the node's process (the container stays, stopped)."""
        self.faults.kill(self.container_of(node))

    def pause(self, node: str) -> None:
        self.faults.pause(self.container_of(node))

    def unpause(self, node: str) -> None:
        self.faults.unpause(self.container_of(node))

    def partition(self, node: str) -> None:
        """Cut the node off the deployment's network (its published port still answers)."""
        self.faults.partition(self.container_of(node))

    def heal(self, node: str) -> None:
        self.faults.heal(self.container_of(node), node)

    def restart(self, node: str) -> None:
        """A clean restart: SIGTERM, then start."""
        self.faults.restart(self.container_of(node))

    def start_node(self, node: str) -> None:
        """Start a killed node again."""
        self.faults.start(self.container_of(node))

    def restore(self) -> None:
        """Undo every fault: unpause, reconnect and start every node."""
        for node in self.info.nodes:
            self.faults.restore(node.container, node.name)

    def wait_for_new_master(self, old: str, timeout_s: float = 30.0) -> str:
        """Until a node other than `old` takes writes (for Sentinel: every reachable
        sentinel names it, so any client is sent there); its name."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(DeploymentError, redis.RedisError, OSError):
                now = self._master_now(avoid=old)
                if now and now != old:
                    return now
            time.sleep(0.05)
        raise DeploymentError(f"no master other than {old} within {timeout_s:.0f} s")

    def _master_now(self, avoid: str) -> str | None:
        raise DeploymentError(f"a {self.kind} deployment has no failover")

    def wait_converged(self, timeout_s: float = 60.0) -> None:
        """Until the deployment is whole again (every node back, every replica linked)."""
        wait_topology_ready(self.info, timeout_s)

    # -- acknowledged-write accounting ------------------------------------------------------

    def _drill(self) -> Drill:
        return DRILLS[self.kind](self.info, self._engine())

    def _target(self) -> WriteTarget:
        return self._drill().target()

    @contextlib.contextmanager
    def writes(
        self, rate_per_s: float = 500.0, max_seconds: float = 120.0
    ) -> Iterator[SequencedWriter]:
        """Sequence-numbered writes in the background, never retried, while the block
        runs; `lost_writes(writer.log)` afterwards counts the acknowledged ones lost."""
        writer = SequencedWriter(
            self._target(),
            f"tc:{{w-{secrets.token_hex(3)}}}",
            rate_per_s=rate_per_s,
            max_seconds=max_seconds,
        ).start()
        try:
            yield writer
        finally:
            writer.stop()

    def lost_writes(self, log: WriteLog, fault_at_s: float = 0.0) -> WriteOutcome:
        """What the writer was told against what the data holds now."""
        read, _delete, close = self._drill().reader()
        try:
            return write_outcome(log, read, fault_at_s)
        finally:
            close()

    def drill(self, scenario: str) -> DrillReport:
        """One of `redis-infra drill`'s scenarios, with its report."""
        return self._drill().run(scenario)


def _pings(info: ConnectionInfo, node: str) -> Callable[[], bool]:
    """A readiness check: the node answers an authenticated TLS PING (as its health
    check does), from the host through its published port."""
    address = info.node(node)

    def ready() -> bool:
        client = node_client(info, address, socket_timeout=1.0, retry=no_retry())
        try:
            return bool(client.ping())
        except redis.AuthenticationError as exc:
            raise DeploymentError(f"{node} refused the app user's password: {exc}") from exc
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False
        finally:
            client.close()

    return ready


def _ensure_image(engine: docker.DockerClient, image: str) -> None:
    """The project's own image is built here on first use; any other must be there (or
    pullable), else the error says how to get it."""
    if image == DEFAULT_IMAGE:
        try:
            engine.images.get(image)
        except docker.errors.ImageNotFound:
            build_image(engine, image)
        return
    ensure_image_available(engine, image)
