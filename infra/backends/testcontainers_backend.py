"""Testcontainers backend: a plan in, testcontainers objects out.

The third thin backend, beside the local one (docker SDK) and Pulumi: each network is
a testcontainers `Network`, each job and node a `DockerContainer` built from the
plan's specs, so the hardening (users, capabilities, read-only root, limits, health
check, loopback-only ports) is the plan's, decided once. Files reach a job as one
archive copied in before start, like pulumi-docker's uploads; the config job is not
run at all: every volume here is new, so its files are copied into its container,
created and never started (local.install_fresh). Nodes are created and
started side by side, in the plan's waves (replicas last); each start waits on the
node's wait strategy, whose timeout error carries the node's log.

Ryuk is turned off (testcontainers' reaper needs an image from a registry); the
fixtures' label sweep removes what a killed run leaves. What testcontainers cannot
express is left out, and said here: its create call has no stop timeout, so a node
stops within Docker's default 10 s instead of the plan's grace (test data is small;
the local and Pulumi backends keep the grace).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
from docker.constants import DEFAULT_DOCKER_API_VERSION
from docker.types import EndpointConfig
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.docker_client import DockerClient as TestcontainersClient
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import HealthcheckWaitStrategy
from testcontainers.core.waiting_utils import WaitStrategy, WaitStrategyTarget

from infra.backends.local import (
    NANOSECONDS,
    PARALLEL_DOCKER_CALLS,
    JobResult,
    create_volume,
    health_check,
    install_fresh,
    network_options,
    remove_container,
    upload_archive,
    volume_mounts,
)
from infra.core.errors import DeploymentError, ReadinessTimeoutError
from infra.core.plan_specs import (
    ALIVE_EVERY_S,
    ContainerSpec,
    JobSpec,
    NetworkAttachment,
    NetworkSpec,
    Plan,
    VolumeSpec,
    ping_poll_s,
)
from infra.core.secrets import resolve

LOG_TAIL = 40  # lines of a node's log in a wait error

# What each testcontainers object passes to the docker.DockerClient it makes. Each
# makes its own and, by default, asks the engine its API version first (~10 ms here,
# two per node, one per network and job, before the nodes can start): the backend
# names the version its own client already agreed on.
EngineOptions = Mapping[str, Any] | None


def engine_options(client: docker.DockerClient) -> dict[str, Any]:
    return {"version": client.api.api_version}


def network_object(
    spec: NetworkSpec, labels: Mapping[str, str], engine: EngineOptions = None
) -> Network:
    options = network_options(spec)
    network = Network(
        docker_client_kw=dict(engine or {}),
        docker_network_kw={**options, "labels": {**spec.labels, **labels}},
    )
    network.name = spec.name  # the plan names it (peers and `down` find it by that)
    return network


class _PrepareThenStart(TestcontainersClient):
    """What must happen between create and start: attach the node's other networks
    (Docker API 1.41 takes one at create time, and a node must be on all of them when
    Redis starts: its published port is on the second), and copy a job's files in as
    one archive (testcontainers' with_copy_into_container copies one file per call)."""

    def __init__(
        self,
        attachments: tuple[NetworkAttachment, ...] = (),
        archive: bytes | None = None,
        engine: EngineOptions = None,
    ) -> None:
        super().__init__(**(engine or {}))
        self.attachments, self.archive = attachments, archive
        self.started = threading.Event()  # the engine started it (its wait may go on)

    def start(self, container: Any) -> None:
        for attachment in self.attachments:
            self.client.api.connect_container_to_network(
                container.id, attachment.network, aliases=list(attachment.aliases) or None
            )
        if self.archive is not None:
            container.put_archive("/", self.archive)
        super().start(container)
        self.started.set()


class PlanNode(DockerContainer):
    """A testcontainers container made from one ContainerSpec of the plan."""

    def __init__(
        self,
        spec: ContainerSpec,
        secrets: Mapping[str, str],
        host_port: int | None,
        labels: Mapping[str, str],
        wait: WaitStrategy,
        engine: EngineOptions = None,
    ) -> None:
        super().__init__(
            spec.image, docker_client_kw=dict(engine or {}), name=spec.name, _wait_strategy=wait
        )
        self.spec = spec
        self.image = spec.image  # the plan's, never behind a hub prefix from the environment
        self._docker = _PrepareThenStart(attachments=spec.networks[1:], engine=engine)
        first = spec.networks[0]
        self.with_command(list(spec.command)).with_kwargs(
            hostname=spec.node.name,
            user=spec.user,
            labels={**spec.labels, **labels},
            mounts=volume_mounts(spec),
            read_only=spec.read_only,
            cap_drop=list(spec.cap_drop),
            cap_add=list(spec.cap_add) or None,
            security_opt=list(spec.security_opt),
            mem_limit=spec.memory_bytes,
            memswap_limit=spec.memory_bytes,  # no swap: a swapping Redis is a slow Redis
            pids_limit=spec.pids_limit,
            nano_cpus=int(spec.cpus * NANOSECONDS) if spec.cpus else None,
            restart_policy={"Name": spec.restart},
            healthcheck=health_check(spec, secrets),
            network=first.network,
            networking_config={
                first.network: EndpointConfig(
                    DEFAULT_DOCKER_API_VERSION,
                    aliases=list(first.aliases),
                    ipv4_address=first.ipv4_address,
                )
            },
        )
        self.tmpfs.update(spec.tmpfs)
        for port in spec.ports:
            # Bound to the plan's host address only (with_bind_ports binds every address).
            binding: Any = (port.host_ip, host_port)
            self.ports[f"{port.container_port}/tcp"] = binding


def job_container(
    job: JobSpec,
    secrets: Mapping[str, str],
    labels: Mapping[str, str],
    engine: EngineOptions = None,
) -> DockerContainer:
    container = (
        DockerContainer(job.image, docker_client_kw=dict(engine or {}))
        .with_name(job.name)
        .with_command([resolve(part, secrets) for part in job.command])
        .with_kwargs(
            user=job.user,
            labels={**job.labels, **labels},
            mounts=volume_mounts(job),
            cap_drop=list(job.cap_drop),
            cap_add=list(job.cap_add) or None,
            security_opt=list(job.security_opt),
            # `network`, not network_mode: testcontainers adds a network of its own
            # when none is named (when it runs inside a container).
            network=job.network or "none",
            pids_limit=job.pids_limit,
            mem_limit=job.memory_bytes,
        )
    )
    container.image = job.image  # the plan's, never behind a hub prefix from the environment
    if job.uploads:
        files = {u.path: (resolve(u.content, secrets), u.mode) for u in job.uploads}
        container._docker = _PrepareThenStart(archive=upload_archive(files), engine=engine)
    return container


class ContainerLogWait(WaitStrategy):
    """Wraps a readiness check as a testcontainers wait strategy: polls `ready` until it
    holds, fails at once if the container stops or restarts, and times out with its log."""

    def __init__(self, what: str, ready: Callable[[], bool], timeout_s: float) -> None:
        super().__init__()
        self.what = what
        self.ready = ready
        # testcontainers keeps whole seconds: round up, so 0.5 s is not "no wait at all".
        self.with_startup_timeout(math.ceil(timeout_s))  # the loop's pauses: ping_poll_s

    def wait_until_ready(self, container: WaitStrategyTarget) -> None:
        wrapped = container.get_wrapped_container()
        began = reloaded = time.monotonic()
        deadline = began + self._startup_timeout
        while not self.ready():
            if time.monotonic() - reloaded >= ALIVE_EVERY_S:  # an engine call: not every poll
                wrapped.reload()
                reloaded = time.monotonic()
                # A fresh node that exited once is failing (its restart policy hides it).
                if wrapped.status not in ("created", "running") or wrapped.attrs["RestartCount"]:
                    raise DeploymentError(
                        f"{wrapped.name} stopped before {self.what} (exit code "
                        f"{wrapped.attrs['State'].get('ExitCode')}):\n{_tail(wrapped)}"
                    )
                if time.monotonic() > deadline:
                    raise ReadinessTimeoutError(
                        f"{wrapped.name}: no {self.what} within {self._startup_timeout:.0f} s; "
                        f"its log:\n{_tail(wrapped)}"
                    )
            time.sleep(ping_poll_s(time.monotonic() - began))


class HealthcheckLogWait(HealthcheckWaitStrategy):
    """testcontainers' wait for Docker's health check (for a node not reachable from
    here), whose timeout carries the container's log as ContainerLogWait's does."""

    def wait_until_ready(self, container: WaitStrategyTarget) -> None:
        try:
            super().wait_until_ready(container)
        except TimeoutError:
            wrapped = container.get_wrapped_container()
            health = (wrapped.attrs.get("State") or {}).get("Health") or {}
            raise ReadinessTimeoutError(
                f"{wrapped.name}: Docker's health check (an authenticated TLS PING) did not "
                f"pass within {self._startup_timeout:.0f} s (status: "
                f"{health.get('Status', 'none')}); its log:\n{_tail(wrapped)}"
            ) from None
        except RuntimeError as exc:  # testcontainers' "reported unhealthy" (with its output)
            wrapped = container.get_wrapped_container()
            raise DeploymentError(f"{wrapped.name}: {exc}\nIts log:\n{_tail(wrapped)}") from None


def _engine_started(node: DockerContainer, starting: Future[None]) -> None:
    """Until Docker started `node` (not until it is ready: an unpublished node's wait is
    the 5 s health check); its start's error, if it failed first."""
    engine = node._docker
    assert isinstance(engine, _PrepareThenStart)
    while not engine.started.wait(0.02):
        if starting.done():
            starting.result()
            return


def _start(node: DockerContainer) -> None:
    """Start one node; the engine's refusal (say, no such program in the image) becomes
    an error that names the node."""
    try:
        node.start()
    except docker.errors.APIError as exc:
        raise DeploymentError(f"{node._name} could not start: {exc.explanation or exc}") from exc


@contextlib.contextmanager
def _ryuk_off() -> Iterator[None]:
    """Ryuk, testcontainers' reaper, is an image pulled from a registry (none may be
    reachable, as here); the label sweep (infra.testing.sweep) replaces it for these
    containers. Only while they start: the application's own containers keep the
    setting it chose."""
    before = testcontainers_config.ryuk_disabled
    testcontainers_config.ryuk_disabled = True
    try:
        yield
    finally:
        testcontainers_config.ryuk_disabled = before


def _tail(container: Any) -> str:
    try:
        return bytes(container.logs(tail=LOG_TAIL)).decode(errors="replace").strip()
    except docker.errors.APIError as exc:
        return f"(no logs: {exc})"


@dataclass
class TestcontainersBackend:
    """The containers of one plan, made and removed as testcontainers objects."""

    __test__ = False  # not a pytest test class, whatever its name says

    client: docker.DockerClient
    labels: dict[str, str]  # beside the plan's own: the state folder, the fixture owner
    networks: list[Network] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    nodes: dict[str, PlanNode] = field(default_factory=dict)
    nodes_started_at: float | None = None  # monotonic clock, as the first node starts

    @property
    def engine(self) -> dict[str, Any]:
        return engine_options(self.client)

    def create(
        self,
        plan: Plan,
        secrets: Mapping[str, str],
        host_ports: Mapping[str, int],
        waits: Mapping[str, WaitStrategy],
    ) -> None:
        """Volumes, the config job beside the networks; then, while it runs (each node
        waits for its last file), the nodes started side by side in the plan's waves
        (Plan.start_waves), each returning once its wait strategy holds, while the
        plan's bootstrap jobs (cluster create; the function library unless the caller
        took that job out to load it from the host) run beside them: each
        waits for the nodes it needs, so its own container start overlaps theirs. On
        any failure the caller calls stop(), which removes what this made."""
        with _ryuk_off():
            for volume in plan.volumes:
                self._create_volume(volume)
            # Every volume is new, so the config job's files are copied in, not installed
            # by running it (local.install_fresh); the networks are made meanwhile.
            pool = ThreadPoolExecutor(max_workers=PARALLEL_DOCKER_CALLS)
            installing = pool.submit(
                install_fresh, self.client.api, plan.config_job, secrets, self.labels
            )
            made = [
                pool.submit(network_object(network, self.labels, self.engine).create)
                for network in plan.networks
            ]
            try:
                for network in made:
                    network.result()  # a network that could not be made
                for spec in plan.containers:
                    self.nodes[spec.name] = PlanNode(
                        spec,
                        secrets,
                        host_ports.get(spec.name),
                        self.labels,
                        waits[spec.name],
                        self.engine,
                    )
                waves = [[self.nodes[spec.name] for spec in wave] for wave in plan.start_waves]
                self._start_side_by_side(waves, plan, installing, secrets)
            finally:
                while not installing.done():  # a failure before the nodes' start: end it
                    self._remove(plan.config_job.name)
                    wait([installing], timeout=0.5)
                pool.shutdown(wait=True)
                # Every network made is recorded, whatever failed, so stop() removes it.
                self.networks += [n.result() for n in made if n.exception() is None]

    def _start_side_by_side(
        self,
        waves: list[list[PlanNode]],
        plan: Plan,
        installing: Future[Any],
        secrets: Mapping[str, str],
    ) -> None:
        jobs = plan.bootstrap_jobs
        names = [plan.config_job.name, *self.nodes, *(job.name for job in jobs)]
        cancelled = threading.Event()
        pool = ThreadPoolExecutor(max_workers=PARALLEL_DOCKER_CALLS + 1)
        futures: list[Future[Any]] = [installing]
        self.nodes_started_at = time.monotonic()
        try:
            futures.append(pool.submit(self._run_jobs, jobs, secrets, cancelled))
            for wave in waves:  # the next wave once the engine started this one's nodes
                if installing.done() and installing.exception() is not None:
                    break  # no node more: the job's error is raised below
                starting = [pool.submit(_start, node) for node in wave]
                futures += starting
                # The next wave waits for this one's data nodes only (the replicas for
                # their master), not for the sentinels starting beside it.
                for node, future in zip(wave, starting, strict=True):
                    if node.spec.node.is_data_node:
                        _engine_started(node, future)
            # The first failure counts (a failed config job leaves the nodes waiting, a
            # failed node leaves the jobs waiting): raised before anything is awaited.
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in [f for f in futures if f in done] + futures:
                future.result()
        except BaseException:
            # A node that failed (or Ctrl-C) leaves the others and the jobs waiting:
            # nothing new starts, and removing the containers ends every wait at once.
            cancelled.set()
            pool.shutdown(wait=False, cancel_futures=True)
            while not all(future.done() for future in futures):
                for name in names:
                    self._remove(name)
                time.sleep(0.2)
            raise
        finally:
            pool.shutdown(wait=True)

    def _run_jobs(
        self, jobs: tuple[JobSpec, ...], secrets: Mapping[str, str], cancelled: threading.Event
    ) -> None:
        for job in jobs:
            if cancelled.is_set():
                return
            self.run_job(job, secrets)

    def _remove(self, name: str) -> None:
        remove_container(self.client.api, name)  # gone, or going (a job's own stop())

    def _create_volume(self, spec: VolumeSpec) -> None:
        create_volume(self.client, spec, self.labels)
        self.volumes.append(spec.name)

    def run_job(self, job: JobSpec, secrets: Mapping[str, str]) -> JobResult:
        """Run a one-shot job to completion; a non-zero exit raises with its log."""
        started = time.monotonic()
        container = job_container(job, secrets, self.labels, self.engine)
        try:
            container.start()
            wrapped = container.get_wrapped_container()
            try:
                exit_code = int(wrapped.wait(timeout=job.timeout_s).get("StatusCode", -1))
            except Exception as exc:  # requests' ReadTimeout, surfaced as a clear failure
                raise DeploymentError(
                    f"job {job.name} did not finish within {job.timeout_s} s ({exc}):\n"
                    f"{_tail(wrapped)}"
                ) from exc
            logs = bytes(wrapped.logs()).decode(errors="replace")
        finally:
            with contextlib.suppress(docker.errors.APIError):
                container.stop()
        if exit_code != 0:
            raise DeploymentError(f"job {job.name} exited {exit_code}:\n{logs.strip()}")
        return JobResult(job.name, exit_code, logs, time.monotonic() - started)

    def stop(self) -> None:
        """Remove every node, network and volume this backend made (data included)."""
        for node in self.nodes.values():
            with contextlib.suppress(docker.errors.APIError):
                node.stop(force=True, delete_volume=False)
        for network in self.networks:
            with contextlib.suppress(docker.errors.APIError, AssertionError):
                network.remove()
        for volume in self.volumes:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.volumes.get(volume).remove(force=True)
        self.nodes.clear()
        self.networks.clear()
        self.volumes.clear()
