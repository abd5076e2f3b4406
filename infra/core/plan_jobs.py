"""The one-shot jobs of a plan: the config job that installs every node's files, and
the operator jobs that form a Cluster or load the function library."""

from __future__ import annotations

import shlex
from dataclasses import replace

from infra.assets import JOBS_DIR
from infra.core.cluster_jobs import (
    ADMIN_PASSWORD,
    ADMIN_PASSWORD_FILE,
    FUNCTIONS_FILE,
    STAGE_DIR,
    SentinelGroup,
    Shard,
    create_script,
    functions_script,
)
from infra.core.layout import Node, Role
from infra.core.model import Topology
from infra.core.plan_specs import (
    JOB_VOLUME_ROOT,
    LABEL_ROLE,
    Addressing,
    ContainerSpec,
    InstalledEntry,
    JobKind,
    JobSpec,
    MountSpec,
    UploadSpec,
    base_labels,
    network_name,
    tls_cli_args,
)
from infra.core.render import (
    CONF_DIR,
    DATA_DIR,
    FILES_INSTALLED,
    Install,
    function_library,
)

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
    # What the script leaves in empty volumes, from the same steps (see fresh_install).
    fresh: list[InstalledEntry] = []
    markers: list[InstalledEntry] = []
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
    sentinel_files = [
        f"{JOB_VOLUME_ROOT}/{spec.node.name}/data/{rendered.path}"
        for spec in containers
        for rendered in spec.files
        if rendered.install is Install.KEEP_SENTINEL_STATE
    ]
    if sentinel_files:  # before any file is installed: was any sentinel's state recorded?
        script.append(f"note_recorded_sentinels {' '.join(map(shlex.quote, sentinel_files))}")
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
        if DATA_DIR in volumes:
            mounts.append(MountSpec(volumes[DATA_DIR], roots["data"], read_only=False))
            # A fresh volume starts root-owned: nodes mount theirs no_copy (nothing of
            # the image's folder is copied in). Owner-only: Redis's CONFIG REWRITE leaves
            # redis.conf (masterauth in it) readable in this folder.
            directories[roots["data"]] = "0700"
        for rendered in spec.files:
            directories.setdefault(
                f"{roots[rendered.volume]}/{rendered.path}".rsplit("/", 1)[0], "0500"
            )
        for directory, mode in sorted(directories.items()):
            script.append(f"own_directory {shlex.quote(directory)} {mode}")
            fresh.append(InstalledEntry(directory, int(mode, 8), topology.uid))
        for rendered in spec.files:
            staged = f"{STAGE_DIR}/{node}/{rendered.path}"
            uploads.append(UploadSpec(staged, rendered.content, 0o400))
            target = f"{roots[rendered.volume]}/{rendered.path}"
            mode = f"{rendered.mode if rendered.volume == 'config' else 0o600:04o}"
            installer = _INSTALLERS[rendered.install]
            script.append(f"{installer} {shlex.quote(staged)} {shlex.quote(target)} {mode}")
            # Into an empty volume every installer is a copy: nothing recorded to keep.
            fresh.append(InstalledEntry(target, int(mode, 8), topology.uid, rendered.content))
        # Last, once every file of the node is in place: the node waits for it.
        marker = f"{roots['config']}/{FILES_INSTALLED}"
        script.append(f"mark_installed {shlex.quote(marker)}")
        markers.append(InstalledEntry(marker, 0o400, topology.uid, ""))
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
        fresh_install=(*fresh, *markers),
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
    """Loads the shipped function library on the master (replicas receive it); in a
    Sentinel group, waits until every sentinel sees every replica and sentinel."""
    group = None
    if topology.sentinel is not None:
        group = SentinelGroup(
            addresses=tuple(
                addressing.addresses[spec.node.name] if addressing else spec.node.name
                for spec in containers
                if spec.node.role is Role.SENTINEL
            ),
            port=topology.sentinel.port,
            service_name=topology.sentinel.service_name,
            replicas=topology.sentinel.replicas,
        )
    script = functions_script(
        _job_addresses(containers, addressing),
        tls_cli_args(),
        topology.users.admin,
        topology.port,
        group,
    )
    return operator_job(topology, containers, JobKind.FUNCTIONS, script)


def _cluster_create_job(
    topology: Topology, containers: list[ContainerSpec], addressing: Addressing | None
) -> JobSpec:
    """Forms the cluster over TLS once every node runs, then loads the function library
    on every master; does nothing that is already done."""
    assert addressing is not None
    data = [spec for spec in containers if spec.node.is_data_node]
    shards = shards_of(data, addressing)
    admin, port = topology.users.admin, topology.port
    job = operator_job(
        topology, data, JobKind.CLUSTER_CREATE, create_script(shards, tls_cli_args(), admin, port)
    )
    forms_only = create_script(shards, tls_cli_args(), admin, port, finish=False)
    return replace(job, host_finishes=replace(job, command=("sh", "-c", forms_only)))
