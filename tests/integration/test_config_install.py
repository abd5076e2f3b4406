"""Into volumes that are all new, the config job's files are copied in (its container
created, never started) instead of installed by running it; both must leave the very
same folders and files, owner, mode and content included."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest
from docker.types import Mount

from infra.backends.local import Created, LocalBackend, install_fresh, volume_mounts
from infra.backends.local_inventory import Inventory
from infra.core.topology import load_topology
from infra.operations.deploy import prepare
from tests.integration.conftest import unique_name

# Every folder and file under the job's volume mounts: path, mode, owner, size, digest.
SNAPSHOT = (
    "cd /volumes && find . -mindepth 1 | sort | while read -r p; do "
    'printf "%s %s " "$p" "$(stat -c "%a %u:%g %F %s" "$p")"; '
    '[ -f "$p" ] && sha256sum "$p" | cut -c1-16 || echo; done'
)


def _snapshot(engine: docker.DockerClient, job_mounts: list[Mount]) -> str:
    out = engine.containers.run(
        "redis-infra/redis:7.0.15",
        ["sh", "-c", SNAPSHOT],
        user="0:0",
        network_mode="none",
        mounts=job_mounts,
        remove=True,
    )
    return bytes(out).decode()


@pytest.mark.parametrize("kind", ["sentinel", "cluster"])
def test_copying_into_new_volumes_leaves_what_running_the_job_leaves(
    engine: docker.DockerClient, tmp_path: Path, kind: str
) -> None:
    topology = load_topology(kind, unique_name("inst"), {})
    backend = LocalBackend(engine)
    prepared = prepare(topology, Inventory(), backend.used_subnets, tmp_path / "state")
    job = prepared.plan.config_job
    mounts = volume_mounts(job)
    outcomes = []
    for install in (
        lambda: backend.run_job(job, prepared.secrets),
        lambda: install_fresh(engine.api, job, prepared.secrets, {}),
    ):
        created = Created()
        backend.create_volumes(prepared.plan, {}, created, Inventory())
        try:
            assert install().exit_code == 0
            outcomes.append(_snapshot(engine, mounts))
        finally:
            backend.rollback(created)
    ran, copied = outcomes
    assert "files-installed" in ran and "redis.conf" in ran and "server.key" in ran
    assert copied == ran
