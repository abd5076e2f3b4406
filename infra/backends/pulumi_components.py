"""Pulumi backend: ComponentResources that turn a plan into pulumi-docker resources.

Each plan item becomes one resource with the same inputs the local backend gives
the Docker API. Secrets arrive as Pulumi secret Outputs and are only ever applied
over file *contents* and the health check, so they stay marked secret in state.

Arguments checked against what the provider really does (not only against mocks):
- `uploads` copy an archive to `/`, which Docker refuses for a read-only root
  filesystem; files therefore go to the config job (writable root, no network),
  which installs them into volumes the Redis containers mount read-only.
- The provider does not fail a job that exits non-zero (it records `exit_code`),
  so the component checks the code and makes Redis containers depend on that check.
- There is no pids limit argument: RLIMIT_NPROC (`ulimits nproc`) is the nearest,
  and it counts the Redis uid's processes host-wide, not per container.
- Containers have fixed names: replacements must delete first (`delete_before_replace`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pulumi
import pulumi_docker as docker

from infra.core.connection import (
    TlsPaths,
    pinned_role_info,
)
from infra.core.model import APP_ROLE
from infra.core.plan_specs import READY_TIMEOUT_S, ContainerSpec, JobSpec, MountSpec, Plan
from infra.core.secrets import password_ref, referenced, resolve
from infra.core.sizes import to_mebibytes

LABEL_CONFIG_JOB = "redis-infra.config-job"


@dataclass
class RedisDeploymentArgs:
    plan: Plan
    # Secret name (app_password, tls_key:<node>, ...) -> its value as a secret Output.
    secrets: Mapping[str, pulumi.Input[str]]
    tls: TlsPaths  # where clients on this machine find the CA and client certificate


class JobFailedError(Exception):
    """A one-shot job container exited non-zero during `pulumi up`."""


def _labels(labels: Mapping[str, str], cls: Any) -> list[Any]:
    return [cls(label=key, value=value) for key, value in sorted(labels.items())]


def _volumes(mounts: Sequence[MountSpec]) -> list[docker.ContainerVolumeArgs]:
    return [
        docker.ContainerVolumeArgs(
            volume_name=m.volume, container_path=m.target, read_only=m.read_only
        )
        for m in mounts
    ]


def _mounts(mounts: Sequence[MountSpec]) -> list[docker.ContainerMountArgs]:
    # no_copy, as in the other backends (local.volume_mounts): the image's folder,
    # owner and mode included, must not land on what the config job set up.
    return [
        docker.ContainerMountArgs(
            target=m.target,
            type="volume",
            source=m.volume,
            read_only=m.read_only,
            volume_options=docker.ContainerMountVolumeOptionsArgs(no_copy=True),
        )
        for m in mounts
    ]


def _check_job(name: str) -> Any:
    """Raise if the job exited non-zero; else its container id (or "ok" without one)."""

    def check(values: list[Any]) -> str:
        exit_code, logs, *job_id = values
        if exit_code is not None and exit_code != 0:
            raise JobFailedError(f"job container {name} exited {exit_code}:\n{logs or '(no logs)'}")
        return str(job_id[0]) if job_id and job_id[0] else "ok"

    return check


class RedisDeployment(pulumi.ComponentResource):
    """Networks, volumes, the config job and the Redis containers of one plan."""

    TYPE: ClassVar[str] = "redis-infra:index:RedisDeployment"

    def __init__(
        self, name: str, args: RedisDeploymentArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(self.TYPE, name, None, opts)
        self._secrets = args.secrets
        plan = args.plan
        # Named Docker objects cannot exist twice: a replacement must remove the old one first.
        replace = pulumi.ResourceOptions(parent=self, delete_before_replace=True)

        self.networks = {
            spec.name: docker.Network(
                spec.name,
                name=spec.name,
                driver="bridge",
                internal=spec.internal,
                options=spec.options or None,
                ipam_configs=[
                    docker.NetworkIpamConfigArgs(
                        subnet=spec.addressing.subnet,
                        ip_range=spec.addressing.dynamic_range,
                        gateway=spec.addressing.gateway,
                    )
                ]
                if spec.addressing
                else None,
                labels=_labels(spec.labels, docker.NetworkLabelArgs),
                opts=replace,
            )
            for spec in plan.networks
        }
        self.volumes = {
            spec.name: docker.Volume(
                spec.name,
                name=spec.name,
                labels=_labels(spec.labels, docker.VolumeLabelArgs),
                # Replacing a data volume would drop the data: refuse unless asked.
                opts=pulumi.ResourceOptions(parent=self, protect=spec.purpose == "data"),
            )
            for spec in plan.volumes
        }
        self.config_job = self._job(plan.config_job, depends_on=list(self.volumes.values()))
        # The Redis containers carry the config job's id: a new certificate or password
        # replaces the job (its uploads changed), and then every node that reads those
        # files, since Redis 7.0 keeps the old ones in memory until it restarts.
        job_ok = pulumi.Output.all(
            self.config_job.exit_code, self.config_job.container_logs, self.config_job.id
        ).apply(_check_job(plan.config_job.name))
        self.containers = {
            spec.name: self._container(
                spec, job_ok, depends_on=[self.config_job, *self.networks.values()]
            )
            for spec in plan.containers
        }
        self.bootstrap_jobs = [
            self._job(job, depends_on=list(self.containers.values())) for job in plan.bootstrap_jobs
        ]
        for job, spec in zip(self.bootstrap_jobs, plan.bootstrap_jobs, strict=True):
            pulumi.Output.all(job.exit_code, job.container_logs).apply(_check_job(spec.name))

        # The application's connection file, exactly as `redis-infra up` writes it (one
        # writer for both): secret, since it holds the application's password.
        def connection_file(password: str) -> dict[str, Any]:
            return pinned_role_info(plan.outputs, args.tls, APP_ROLE, password).to_json()

        app_password = args.secrets[password_ref(APP_ROLE).name]
        self.connection: pulumi.Output[dict[str, Any]] = pulumi.Output.secret(
            pulumi.Output.from_input(app_password).apply(connection_file)
        )
        self.register_outputs({"connection": self.connection, "network": plan.outputs.network})

    # -- translation --------------------------------------------------------------------

    def _secret_text(self, text: str) -> pulumi.Input[str]:
        """`text` with its placeholders resolved; a secret Output if it held any."""
        names = sorted(referenced([text]))
        if not names:
            return text
        values = pulumi.Output.all(*(self._secrets[name] for name in names))
        resolved = values.apply(lambda vs: resolve(text, dict(zip(names, vs, strict=True))))
        return pulumi.Output.secret(resolved)

    def _job(self, job: JobSpec, depends_on: list[pulumi.Resource]) -> docker.Container:
        uploads = [
            docker.ContainerUploadArgs(
                file=upload.path,
                content=self._secret_text(upload.content),
                permissions=f"{upload.mode:04o}",
            )
            for upload in job.uploads
        ]
        return docker.Container(
            job.name,
            name=job.name,
            image=job.image,
            command=[self._secret_text(part) for part in job.command],
            user=job.user,
            capabilities=docker.ContainerCapabilitiesArgs(
                drops=list(job.cap_drop), adds=list(job.cap_add)
            ),
            security_opts=list(job.security_opt),
            network_mode=None if job.network else "none",
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=job.network)]
            if job.network
            else None,
            volumes=_volumes(job.mounts),
            uploads=uploads or None,
            labels=_labels(job.labels, docker.ContainerLabelArgs),
            memory=to_mebibytes(job.memory_bytes),
            must_run=False,  # a job runs once and exits ...
            attach=True,  # ... and `pulumi up` waits for it
            logs=True,
            restart="no",
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=depends_on,
                delete_before_replace=True,
                # As long as the local backend lets the job run, no longer.
                custom_timeouts=pulumi.CustomTimeouts(create=f"{job.timeout_s}s"),
            ),
        )

    def _container(
        self, spec: ContainerSpec, job_ok: pulumi.Output[str], depends_on: list[pulumi.Resource]
    ) -> docker.Container:
        health = spec.healthcheck
        labels = _labels(spec.labels, docker.ContainerLabelArgs)
        labels.append(docker.ContainerLabelArgs(label=LABEL_CONFIG_JOB, value=job_ok))
        memory_mb = to_mebibytes(spec.memory_bytes)
        return docker.Container(
            spec.name,
            name=spec.name,
            hostname=spec.node.name,
            image=spec.image,
            command=list(spec.command),
            user=spec.user,
            read_only=spec.read_only,
            tmpfs=dict(spec.tmpfs),
            capabilities=docker.ContainerCapabilitiesArgs(
                drops=list(spec.cap_drop), adds=list(spec.cap_add)
            ),
            security_opts=list(spec.security_opt),
            memory=memory_mb,
            memory_swap=memory_mb,  # no swap
            ulimits=[
                docker.ContainerUlimitArgs(name="nproc", soft=spec.pids_limit, hard=spec.pids_limit)
            ],
            cpus=str(spec.cpus) if spec.cpus else None,
            restart=spec.restart,
            labels=labels,
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(
                    name=a.network, aliases=list(a.aliases) or None, ipv4_address=a.ipv4_address
                )
                for a in spec.networks
            ],
            mounts=_mounts(spec.mounts),
            ports=[
                docker.ContainerPortArgs(
                    internal=p.container_port, external=p.host_port, ip=p.host_ip
                )
                for p in spec.ports
            ]
            or None,
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=[self._secret_text(part) for part in health.test],
                interval=f"{health.interval_s}s",
                timeout=f"{health.timeout_s}s",
                retries=health.retries,
                start_period=f"{health.start_period_s}s",
            ),
            stop_timeout=spec.stop_grace_s,
            destroy_grace_seconds=spec.stop_grace_s,
            wait=True,  # `pulumi up` returns once the authenticated TLS health check passes
            wait_timeout=READY_TIMEOUT_S,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=depends_on,
                delete_before_replace=True,
                # The spec hash covers the rendered files, so a config change recreates the node.
                replace_on_changes=["labels"],
            ),
        )


class RedisSingle(RedisDeployment):
    """One hardened Redis server."""

    TYPE = "redis-infra:index:RedisSingle"


class RedisSentinel(RedisDeployment):
    """A master, its replicas and the Sentinels that fail it over."""

    TYPE = "redis-infra:index:RedisSentinel"


class RedisCluster(RedisDeployment):
    """A sharded Redis Cluster, formed by a one-shot job that must exit 0."""

    TYPE = "redis-infra:index:RedisCluster"


COMPONENTS: dict[str, type[RedisDeployment]] = {
    "single": RedisSingle,
    "sentinel": RedisSentinel,
    "cluster": RedisCluster,
}
