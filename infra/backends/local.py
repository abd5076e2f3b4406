"""Local backend: translate a plan into Docker API calls (docker SDK).

It mirrors what the Pulumi backend asks pulumi-docker to do, call for call where
it matters: files reach a job container as an archive copied to `/` before it
starts (pulumi-docker `uploads`), Redis containers mount their config volume
read-only, and every resource carries the `redis-infra.name` label so `down`
finds all of it.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import tarfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
from docker.types import Healthcheck, IPAMConfig, IPAMPool, Mount

from infra.backends.docker_engine import remove_network
from infra.backends.local_inventory import (
    Inventory,
    differences,
    read_inventory,
    used_subnets,
)
from infra.core.errors import DeploymentError
from infra.core.plan_specs import (
    LABEL_VOLUME,
    ContainerSpec,
    InstalledEntry,
    JobSpec,
    NetworkSpec,
    Plan,
    VolumeSpec,
)
from infra.core.secrets import resolve

NANOSECONDS = 1_000_000_000
PARALLEL_DOCKER_CALLS = 8


@dataclass(frozen=True)
class JobResult:
    name: str
    exit_code: int
    logs: str
    seconds: float


@dataclass
class Created:
    """Resources one `create` (or `create_stopped`) call made, so a failed run can remove
    exactly those."""

    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)


def upload_archive(files: Mapping[str, tuple[str, int]]) -> bytes:
    """A tar of absolute paths, extracted at `/` as pulumi-docker's uploads are."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, (content, mode) in sorted(files.items()):
            data = content.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def installed_archive(entries: Sequence[InstalledEntry], secrets: Mapping[str, str]) -> bytes:
    """A tar of the entries, in order, with their owner and mode, extracted at `/`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.path.lstrip("/"))
            info.mode, info.mtime = entry.mode, time.time()
            info.uid = info.gid = entry.uid
            if entry.content is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                data = resolve(entry.content, secrets).encode()
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def create_job_container(
    api: docker.APIClient, job: JobSpec, secrets: Mapping[str, str], labels: Mapping[str, str]
) -> None:
    host_config = api.create_host_config(
        mounts=volume_mounts(job),
        cap_drop=list(job.cap_drop),
        cap_add=list(job.cap_add) or None,
        security_opt=list(job.security_opt),
        network_mode=job.network or "none",
        pids_limit=job.pids_limit,
        mem_limit=job.memory_bytes,
    )
    api.create_container(
        job.image,
        command=[resolve(part, secrets) for part in job.command],
        name=job.name,
        user=job.user,
        labels={**job.labels, **labels},
        host_config=host_config,
    )


def install_fresh(
    api: docker.APIClient, job: JobSpec, secrets: Mapping[str, str], labels: Mapping[str, str]
) -> JobResult:
    """The config job's outcome in volumes that are all new, without running it: its
    container, created and never started (so its volumes are mounted for the copy, and
    no process or network namespace is made), takes the files as one archive and goes.
    Docker keeps each entry's owner and mode; the markers come last, so a node started
    meanwhile finds its files complete once it sees its marker."""
    started = time.monotonic()
    remove_container(api, job.name)  # a leftover of an interrupted run
    try:  # a create that timed out may still have made the container: remove it too
        create_job_container(api, job, secrets, labels)
        api.put_archive(job.name, "/", installed_archive(job.fresh_install, secrets))
    finally:
        remove_container(api, job.name)
    logs = "config: files copied into the new volumes\n"
    return JobResult(job.name, 0, logs, time.monotonic() - started)


def remove_container(api: docker.APIClient, name: str) -> None:
    """Force-remove a container (not its volumes); gone already, or going, is fine."""
    try:
        api.remove_container(name, force=True, v=False)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):  # someone else is removing it
            raise


def create_volume(client: docker.DockerClient, spec: VolumeSpec, labels: Mapping[str, str]) -> None:
    """Create a planned volume. Docker hands back a volume that already has the name,
    whatever its labels: one that is not this deployment's is refused, not written to."""
    asked = {**spec.labels, LABEL_VOLUME: spec.purpose, **labels}
    volume = client.volumes.create(name=spec.name, labels=asked)
    if not asked.items() <= (volume.attrs.get("Labels") or {}).items():
        raise DeploymentError(
            f"volume {spec.name}: it exists and is not this deployment's (its labels are "
            f"not {LABEL_VOLUME}={spec.purpose} and this deployment's). Fix: remove it "
            f"(docker volume rm {spec.name}) if nothing needs it, or choose another name"
        )


def network_options(spec: NetworkSpec) -> dict[str, Any]:
    """The docker SDK's `networks.create` arguments for a planned network (but its name)."""
    ipam = None
    if spec.addressing is not None:
        pool = IPAMPool(
            subnet=spec.addressing.subnet,
            iprange=spec.addressing.dynamic_range,
            gateway=spec.addressing.gateway,
        )
        ipam = IPAMConfig(pool_configs=[pool])
    return {
        "driver": "bridge",
        "internal": spec.internal,
        "labels": spec.labels,
        "options": spec.options or None,
        "ipam": ipam,
        "check_duplicate": True,
    }


def _config_failed(installing: Future[JobResult]) -> bool:
    if not installing.done():
        return False
    return installing.exception() is not None or installing.result().exit_code != 0


def volume_mounts(spec: ContainerSpec | JobSpec) -> list[Mount]:
    # no_copy: creating a container would copy the image's folder, owner and mode
    # included, into an empty volume, undoing the config job's owner-only folders if
    # the node is created while the job runs.
    return [
        Mount(m.target, m.volume, type="volume", read_only=m.read_only, no_copy=True)
        for m in spec.mounts
    ]


def health_check(spec: ContainerSpec, secrets: Mapping[str, str]) -> Healthcheck:
    """The plan's health check, its secret placeholders resolved."""
    health = spec.healthcheck
    return Healthcheck(
        test=[resolve(part, secrets) for part in health.test],
        interval=health.interval_s * NANOSECONDS,
        timeout=health.timeout_s * NANOSECONDS,
        retries=health.retries,
        start_period=health.start_period_s * NANOSECONDS,
    )


class LocalBackend:
    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.api = client.api

    # -- reading --------------------------------------------------------------------

    def inventory(self, name: str) -> Inventory:
        return read_inventory(self.client, name)

    def used_subnets(self) -> list[ipaddress.IPv4Network]:
        return used_subnets(self.client)

    def differences(
        self, plan: Plan, inventory: Inventory, host_ports: Mapping[str, int]
    ) -> list[str]:
        return differences(plan, inventory, host_ports)

    # -- creating -------------------------------------------------------------------

    def create(
        self,
        plan: Plan,
        secrets: Mapping[str, str],
        host_ports: Mapping[str, int],
        extra_labels: Mapping[str, str],
        created: Created,
        existing: Inventory,
    ) -> None:
        """Create networks, volumes and containers and start them; record what was made.

        Where nodes existed before (a scale-out), every node starts only once the config
        job ended: the old ones' config volumes hold the previous run's files and marker."""
        installing = self.create_stopped(plan, secrets, host_ports, extra_labels, created, existing)
        try:
            self.start(plan, installing, after_config=bool(existing.containers))
        except BaseException:
            self.abandon_config(plan, installing)  # done already, unless Ctrl-C came first
            raise

    def create_stopped(
        self,
        plan: Plan,
        secrets: Mapping[str, str],
        host_ports: Mapping[str, int],
        extra_labels: Mapping[str, str],
        created: Created,
        existing: Inventory,
    ) -> Future[JobResult]:
        """Volumes, then the config job beside the networks, then the node containers
        (created, not started); record what was made. Returns the config job, maybe
        still running: a node waits for its last file, so `start` need not wait."""
        self.create_volumes(plan, extra_labels, created, existing)
        # Volumes this run made are empty: their files need no job run (install_fresh).
        fresh = {m.volume for m in plan.config_job.mounts} <= set(created.volumes)
        installer = ThreadPoolExecutor(max_workers=1)
        installing: Future[JobResult] = installer.submit(
            self.install_config, plan.config_job, secrets, fresh=fresh
        )
        installer.shutdown(wait=False)  # the future outlives this call
        try:
            self.create_nodes(plan, secrets, host_ports, extra_labels, created, existing)
        except BaseException:  # a failure or Ctrl-C: the job must not outlive the run
            self.abandon_config(plan, installing)
            raise
        return installing

    def create_volumes(
        self,
        plan: Plan,
        extra_labels: Mapping[str, str],
        created: Created,
        existing: Inventory,
    ) -> None:
        """The plan's volumes that do not exist yet (kept data stays); record them."""
        for volume in plan.volumes:
            if volume.name in existing.volumes and not existing.containers:
                if volume.purpose != "config":
                    continue  # kept data (down --keep-data)
                # A config volume that outlived its node (a `down` cut short) holds a
                # previous run's files and marker: a node started beside the job would
                # run on them. It is rebuilt from scratch anyway.
                self._remove_volume(volume.name)
            elif volume.name in existing.volumes:
                continue
            self._create_volume(volume, extra_labels)
            created.volumes.append(volume.name)

    def create_nodes(
        self,
        plan: Plan,
        secrets: Mapping[str, str],
        host_ports: Mapping[str, int],
        extra_labels: Mapping[str, str],
        created: Created,
        existing: Inventory,
    ) -> None:
        """The plan's networks, then its node containers (created, not started), side by
        side; record what was made, in plan order, however this ends."""
        # The nodes' volumes are mounted no_copy (see volume_mounts). Docker creates
        # containers concurrently (one after another cost ~0.3 s each).
        todo = [spec for spec in plan.containers if spec.name not in existing.containers]
        made: list[str] = []  # appended by the workers the moment Docker made each one
        pool = ThreadPoolExecutor(max_workers=PARALLEL_DOCKER_CALLS)
        try:
            networks = [
                pool.submit(self._create_network, network, created)
                for network in plan.networks
                if network.name not in existing.networks
            ]
            for future in networks:
                future.result()
            creating = [
                pool.submit(self._create_container, spec, secrets, host_ports, extra_labels, made)
                for spec in todo
            ]
            for future in creating:
                future.result()
        except BaseException:  # a failure or Ctrl-C: queue nothing more
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)
            # In plan order, so a failed run removes exactly what it created.
            created.containers.extend(spec.name for spec in todo if spec.name in made)
            created.networks.sort(key=[n.name for n in plan.networks].index)

    def start(
        self,
        plan: Plan,
        installing: Future[JobResult] | None = None,
        *,
        after_config: bool = False,
    ) -> None:
        """Start every node container of the plan, wave after wave (Plan.start_waves),
        each wave side by side; if `installing` (the config job) is given, return only
        once it ended well. A fresh node waits for the job's last file, so it may start
        while the job runs; `after_config` waits for the job first."""
        if installing is not None and after_config:
            self.finish_config(plan, installing)
            installing = None
        try:
            with ThreadPoolExecutor(max_workers=PARALLEL_DOCKER_CALLS) as pool:
                started: list[Future[None]] = []
                for wave in plan.start_waves:
                    if installing is not None and _config_failed(installing):
                        break  # no node more: finish_config says why
                    starting = [(spec, pool.submit(self.api.start, spec.name)) for spec in wave]
                    started += [future for _, future in starting]
                    # The next wave waits for this one's data nodes only (the replicas
                    # for their master), not for the sentinels starting beside it.
                    for spec, future in starting:
                        if spec.node.is_data_node:
                            future.result()
                for future in started:
                    future.result()
        except BaseException:
            if installing is not None:
                self.abandon_config(plan, installing)
            raise
        if installing is not None:
            self.finish_config(plan, installing)

    def finish_config(self, plan: Plan, installing: Future[JobResult]) -> None:
        """Until the config job ended; raise with its log unless it succeeded."""
        try:
            result = installing.result()
        except BaseException:  # its own failure, or Ctrl-C while waiting for it
            self.abandon_config(plan, installing)
            raise
        if result.exit_code != 0:
            raise DeploymentError(
                f"config job {result.name} exited {result.exit_code}:\n{result.logs.strip()}"
            )

    def abandon_config(self, plan: Plan, installing: Future[JobResult]) -> None:
        """A run that fails (or Ctrl-C) while the config job may still run: removing its
        container ends the job's wait at once; then until its thread is done."""
        while not installing.done():
            self.remove_container(plan.config_job.name)
            with contextlib.suppress(FutureTimeout, Exception):
                installing.exception(timeout=0.5)

    def _create_network(self, spec: NetworkSpec, created: Created) -> None:
        self.client.networks.create(spec.name, **network_options(spec))
        created.networks.append(spec.name)

    def _create_volume(self, spec: VolumeSpec, extra_labels: Mapping[str, str]) -> None:
        create_volume(self.client, spec, extra_labels)

    def _create_container(
        self,
        spec: ContainerSpec,
        secrets: Mapping[str, str],
        host_ports: Mapping[str, int],
        extra_labels: Mapping[str, str],
        made: list[str],
    ) -> None:
        port_bindings: dict[int | str, Any] = {
            f"{port.container_port}/tcp": (port.host_ip, host_ports[spec.name])
            for port in spec.ports
        }
        host_config = self.api.create_host_config(
            mounts=volume_mounts(spec),
            port_bindings=port_bindings or None,
            read_only=spec.read_only,
            tmpfs=dict(spec.tmpfs),
            cap_drop=list(spec.cap_drop),
            cap_add=list(spec.cap_add) or None,
            security_opt=list(spec.security_opt),
            mem_limit=spec.memory_bytes,
            memswap_limit=spec.memory_bytes,  # no swap: a swapping Redis is a slow Redis
            pids_limit=spec.pids_limit,
            nano_cpus=int(spec.cpus * NANOSECONDS) if spec.cpus else None,
            restart_policy={"Name": spec.restart},
            network_mode=spec.networks[0].network,
        )
        first = spec.networks[0]
        networking = self.api.create_networking_config(
            # The stub says EndpointConfig; the API takes {network name: EndpointConfig}.
            {
                first.network: self.api.create_endpoint_config(
                    aliases=list(first.aliases), ipv4_address=first.ipv4_address
                )
            }  # type: ignore[arg-type]
        )
        self.api.create_container(
            spec.image,
            command=list(spec.command),
            name=spec.name,
            hostname=spec.node.name,
            user=spec.user,
            labels={**spec.labels, **extra_labels},
            ports=[port.container_port for port in spec.ports] or None,
            host_config=host_config,
            networking_config=networking,
            healthcheck=health_check(spec, secrets),
            stop_timeout=spec.stop_grace_s,
        )
        made.append(spec.name)  # before anything else can fail: rollback must see it
        for attachment in spec.networks[1:]:
            self.api.connect_container_to_network(
                spec.name, attachment.network, aliases=list(attachment.aliases) or None
            )

    def install_config(self, job: JobSpec, secrets: Mapping[str, str], *, fresh: bool) -> JobResult:
        """The config job's files: extracted, where every volume it mounts is new
        (`fresh`), else the job run."""
        if fresh and job.fresh_install:
            return install_fresh(self.api, job, secrets, {})
        return self.run_job(job, secrets)

    def run_job(self, job: JobSpec, secrets: Mapping[str, str], *, keep: bool = False) -> JobResult:
        """Run a one-shot job container to completion and remove it.

        `keep` leaves the exited container, as pulumi-docker does, to check what it holds.
        """
        started = time.monotonic()
        self.remove_container(job.name)  # a leftover from an interrupted run
        create_job_container(self.api, job, secrets, {})
        try:
            container = self.client.containers.get(job.name)
            if job.uploads:
                files = {u.path: (resolve(u.content, secrets), u.mode) for u in job.uploads}
                container.put_archive("/", upload_archive(files))
            container.start()
            try:
                status = container.wait(timeout=job.timeout_s)
                exit_code = int(status.get("StatusCode", -1))
            except Exception as exc:  # requests' ReadTimeout, surfaced as a clear failure
                exit_code = -1
                logs = container.logs().decode(errors="replace")
                raise DeploymentError(
                    f"job {job.name} did not finish within {job.timeout_s} s ({exc}):\n{logs}"
                ) from exc
            logs = container.logs().decode(errors="replace")
        finally:
            if not keep:
                self.remove_container(job.name)
        return JobResult(job.name, exit_code, logs, time.monotonic() - started)

    # -- waiting --------------------------------------------------------------------

    def wait_healthy(self, names: list[str], timeout_s: float) -> None:
        """Until Docker reports every container healthy; logs of the laggards on timeout."""
        deadline = time.monotonic() + timeout_s
        pending = list(names)
        while pending:
            for name in list(pending):
                state = self.api.inspect_container(name)["State"]
                if not state.get("Running"):
                    raise DeploymentError(
                        f"container {name} stopped (exit code {state.get('ExitCode')}):\n"
                        f"{self.logs(name)}"
                    )
                if state.get("Health", {}).get("Status") == "healthy":
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                details = "\n".join(f"--- {name}:\n{self.logs(name)}" for name in pending)
                raise DeploymentError(
                    f"not healthy after {timeout_s:.0f} s: {', '.join(pending)}\n{details}"
                )
            if pending:
                time.sleep(0.25)

    def check_running(self, names: list[str]) -> None:
        """Raise, with the container's log, if one of `names` stopped or restarted."""
        for name in names:
            details = self.api.inspect_container(name)
            state, restarts = details["State"], details.get("RestartCount", 0)
            if not state.get("Running") or state.get("Restarting") or restarts:
                status = "restarting" if state.get("Restarting") or restarts else "stopped"
                raise DeploymentError(
                    f"container {name} {status} (exit code {state.get('ExitCode')}):\n"
                    f"{self.logs(name)}"
                )

    def logs(self, name: str, tail: int = 40) -> str:
        try:
            return bytes(self.api.logs(name, tail=tail)).decode(errors="replace").strip()
        except docker.errors.APIError as exc:
            return f"(no logs: {exc})"

    # -- removing -------------------------------------------------------------------

    def remove(self, name: str, *, keep_data: bool) -> Inventory:
        """Remove every labelled container and network, and the volumes unless data is kept."""
        inventory = self.inventory(name)
        if keep_data:
            # Removing a running container kills it (SIGKILL), and Redis loses what its
            # AOF has not written yet: with everysec it answers a write while a slow fsync
            # postpones the write (up to 2 s). `docker stop` sends SIGTERM and waits the
            # container's stop grace, so Redis flushes and fsyncs the AOF as it exits.
            with ThreadPoolExecutor(max_workers=PARALLEL_DOCKER_CALLS) as pool:
                list(pool.map(self._stop_container, inventory.containers))
        for container_name in inventory.containers:
            self.remove_container(container_name)
        for network in inventory.networks:
            self._remove_network(network)
        kept: list[str] = []
        for volume_name in inventory.volumes:
            volume = self.client.volumes.get(volume_name)
            if keep_data and volume.attrs.get("Labels", {}).get(LABEL_VOLUME) == "data":
                kept.append(volume_name)
                continue
            volume.remove(force=True)
        inventory.volumes = [v for v in inventory.volumes if v not in kept]
        return inventory

    def rollback(self, created: Created) -> None:
        """Undo one failed `create`: only what it made, never what existed before."""
        for name in created.containers:
            self.remove_container(name)
        for network in created.networks:
            self._remove_network(network)
        for volume in created.volumes:
            self._remove_volume(volume)

    def _remove_volume(self, name: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.volumes.get(name).remove(force=True)

    def _stop_container(self, name: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.api.stop(name)  # its own StopTimeout (ContainerSpec.stop_grace_s)

    def remove_container(self, name: str) -> None:
        remove_container(self.api, name)

    def _remove_network(self, name: str) -> None:
        remove_network(self.client, name)
