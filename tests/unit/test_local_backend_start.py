"""LocalBackend.start beside a config job that may still run: what it starts, and
what it says when the job fails (a fake Docker API records the calls)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest
import requests

from infra.backends.local import Created, JobResult, LocalBackend, install_fresh
from infra.backends.local_inventory import Inventory
from infra.core.certs import CertificateSet
from infra.core.errors import DeploymentError
from infra.core.model import Topology
from infra.core.plan import build_plan
from infra.core.plan_specs import Plan
from tests.unit.conftest import TopologyFactory

CertsFor = Callable[[Topology], CertificateSet]


class FakeApi:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.removed: list[str] = []

    def start(self, name: str) -> None:
        self.started.append(name)

    def remove_container(self, name: str, **_: Any) -> None:
        self.removed.append(name)


class FakeClient:
    def __init__(self) -> None:
        self.api = FakeApi()


def _backend() -> tuple[LocalBackend, FakeApi]:
    client = FakeClient()
    return LocalBackend(client), client.api  # type: ignore[arg-type]


def _ended(exit_code: int) -> Future[JobResult]:
    future: Future[JobResult] = Future()
    future.set_result(JobResult("t-config", exit_code, "chown: Operation not permitted", 0.1))
    return future


def _plan(make_topology: TopologyFactory, certificates_for: CertsFor) -> Plan:
    topology = make_topology("sentinel")
    return build_plan(topology, certificates_for(topology), subnet="10.213.7.0/24")


def test_nodes_start_in_waves_and_start_returns_once_the_job_succeeded(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    plan = _plan(make_topology, certificates_for)
    backend, api = _backend()
    backend.start(plan, _ended(0))
    first, replicas = ([spec.name for spec in wave] for wave in plan.start_waves)
    assert sorted(api.started) == sorted(first + replicas)
    master_started = api.started.index(first[0])  # the master leads the first wave
    assert all(api.started.index(replica) > master_started for replica in replicas)


class SlowSentinelsApi(FakeApi):
    """Docker's start of every sentinel returns only once both replicas were started."""

    def __init__(self, replicas: list[str]) -> None:
        super().__init__()
        self.replicas = set(replicas)
        self.replicas_started = threading.Event()

    def start(self, name: str) -> None:
        if "sentinel" in name and not self.replicas_started.wait(timeout=5):
            raise TimeoutError(f"{name}: the replicas waited for the sentinels' start")
        super().start(name)
        if self.replicas <= set(self.started):
            self.replicas_started.set()


def test_the_replicas_wait_for_their_master_start_not_for_the_sentinels(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    plan = _plan(make_topology, certificates_for)
    _, replicas = ([spec.name for spec in wave] for wave in plan.start_waves)
    api = SlowSentinelsApi(replicas)
    client = FakeClient()
    client.api = api
    backend = LocalBackend(client)  # type: ignore[arg-type]
    backend.start(plan, _ended(0))
    # Every node started; the sentinels' starts returned only after the replicas began.
    assert sorted(api.started) == sorted(spec.name for spec in plan.containers)


def test_a_failed_config_job_fails_the_start_with_its_log_and_starts_nothing_more(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    plan = _plan(make_topology, certificates_for)
    backend, api = _backend()
    with pytest.raises(DeploymentError, match=r"(?s)config job t-config exited 1.*chown"):
        backend.start(plan, _ended(1))
    assert api.started == []  # it had ended before the first wave


def test_a_running_job_is_removed_when_the_start_is_interrupted(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    plan = _plan(make_topology, certificates_for)
    backend, api = _backend()
    running: Future[JobResult] = Future()
    removed = api.remove_container

    def remove_container(name: str, **options: Any) -> None:
        removed(name, **options)
        if name == plan.config_job.name and not running.done():
            running.set_exception(DeploymentError("its container went away"))  # its wait ends

    def interrupted(name: str) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the engine starts a node, the job running

    api.remove_container = remove_container  # type: ignore[method-assign]
    api.start = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        backend.start(plan, running)
    assert plan.config_job.name in api.removed


@pytest.mark.parametrize(("existing", "before_the_job_ended"), [(True, 0), (False, 6)])
def test_a_scale_out_starts_its_nodes_only_after_the_job(
    make_topology: TopologyFactory,
    certificates_for: CertsFor,
    monkeypatch: pytest.MonkeyPatch,
    existing: bool,
    before_the_job_ended: int,
) -> None:
    # Existing nodes' config volumes hold the previous files and marker: with any node
    # already there, none starts before the job ended; a fresh deployment's do.
    plan = _plan(make_topology, certificates_for)
    backend, api = _backend()
    running: Future[JobResult] = Future()
    job_done: list[bool] = []
    api.start = lambda name: job_done.append(running.done())  # type: ignore[method-assign]
    monkeypatch.setattr(backend, "create_stopped", lambda *args: running)
    threading.Timer(0.5, running.set_result, [JobResult("t-config", 0, "", 0.5)]).start()
    inventory = Inventory(containers={"unit-data-0": None} if existing else {})  # type: ignore[dict-item]
    backend.create(plan, {}, {}, {}, Created(), inventory)
    assert len(job_done) == len(plan.containers)
    assert job_done.count(False) == before_the_job_ended  # fresh: all six, beside the job


def test_the_copied_config_holds_every_staged_file_and_each_marker_comes_last(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    """A node starts once it sees its marker: every file must be in place before any."""
    job = _plan(make_topology, certificates_for).config_job
    entries = job.fresh_install
    markers = [i for i, entry in enumerate(entries) if entry.path.endswith("/files-installed")]
    assert len(markers) == len(job.mounts) // 2  # one per node (each a config + data volume)
    assert min(markers) == len(entries) - len(markers)
    files = sorted(e.content for e in entries if e.content)  # the markers are empty
    assert files == sorted(upload.content for upload in job.uploads)


@pytest.mark.parametrize(("kept", "runs_the_job"), [((), False), (("data",), True)])
def test_the_job_runs_unless_every_volume_it_mounts_is_new(
    make_topology: TopologyFactory,
    certificates_for: CertsFor,
    monkeypatch: pytest.MonkeyPatch,
    kept: tuple[str, ...],
    runs_the_job: bool,
) -> None:
    """Kept data volumes (`down --keep-data`, a scale-out) hold what Redis and Sentinel
    recorded, which only the job's script knows how to keep."""
    plan = _plan(make_topology, certificates_for)
    backend, _api = _backend()
    existing = Inventory()
    existing.volumes.extend(v.name for v in plan.volumes if v.purpose in kept)
    ran: list[str] = []

    def record(how: str) -> Callable[..., JobResult]:
        def install(*_: Any) -> JobResult:
            ran.append(how)
            return _ended(0).result()

        return install

    def make_volumes(plan: Plan, _labels: Any, created: Created, existing: Inventory) -> None:
        created.volumes.extend(v.name for v in plan.volumes if v.name not in existing.volumes)

    monkeypatch.setattr(backend, "create_volumes", make_volumes)
    monkeypatch.setattr(backend, "create_nodes", lambda *_: None)
    monkeypatch.setattr(backend, "run_job", record("run"))
    monkeypatch.setattr("infra.backends.local.install_fresh", record("copy"))
    backend.create_stopped(plan, {}, {}, {}, Created(), existing).result()
    assert ran == (["run"] if runs_the_job else ["copy"])


class CreateTimesOutApi(FakeApi):
    """Docker made the container, but the answer did not come in time."""

    def create_host_config(self, **options: Any) -> dict[str, Any]:
        return options

    def create_container(self, *_: Any, **__: Any) -> None:
        raise requests.exceptions.ReadTimeout("read timed out")


def test_a_copy_whose_container_create_timed_out_removes_that_container(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    """Left behind, the labelled container would hold the new volumes (the rollback could
    not remove them) and make the next `up` see a deployment that is not there."""
    job = _plan(make_topology, certificates_for).config_job
    api = CreateTimesOutApi()
    with pytest.raises(requests.exceptions.ReadTimeout):
        install_fresh(api, job, {}, {})  # type: ignore[arg-type]
    assert api.removed == [job.name, job.name]  # a leftover of an earlier run, then its own
