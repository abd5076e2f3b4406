"""Who loads the function library: the host when it reaches every node, else the job."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from infra.core.certs import CertificateSet
from infra.core.connection import ConnectionInfo, NodeAddress, TlsPaths
from infra.core.model import Topology
from infra.core.plan import build_plan
from infra.core.plan_specs import JobKind, Plan
from infra.core.render import function_library
from infra.operations.function_library import container_jobs, host_loads_library, library_name
from tests.unit.conftest import TopologyFactory

CertsFor = Callable[[Topology], CertificateSet]


def _plan(make_topology: TopologyFactory, certs: CertsFor, kind: str) -> Plan:
    topology = make_topology(kind, "f")
    return build_plan(topology, certs(topology), subnet="10.213.9.0/24")


def _info(plan: Plan, unpublished: frozenset[str] = frozenset()) -> ConnectionInfo:
    nodes = tuple(
        NodeAddress(
            name=spec.node.name,
            container=spec.name,
            role=spec.node.role.value,
            host=None if spec.node.name in unpublished else "127.0.0.1",
            port=None if spec.node.name in unpublished else 30000 + index,
            internal=f"{spec.node.name}:6379",
        )
        for index, spec in enumerate(plan.containers)
    )
    return ConnectionInfo(plan.name, plan.kind.value, "f-net", TlsPaths("ca.crt"), {}, nodes)


@pytest.mark.parametrize("kind", ["single", "sentinel"])
def test_the_host_loads_the_library_when_it_reaches_every_node(
    make_topology: TopologyFactory, certificates_for: CertsFor, kind: str
) -> None:
    plan = _plan(make_topology, certificates_for, kind)
    assert [job.kind for job in plan.bootstrap_jobs] == [JobKind.FUNCTIONS]  # Pulumi's
    published = _info(plan)
    assert host_loads_library(plan, published) and container_jobs(plan, published) == ()
    # One node the host cannot reach (a sentinel counts: readiness reads them): the job.
    last = plan.containers[-1].node.name
    partly = _info(plan, frozenset({last}))
    assert not host_loads_library(plan, partly)
    assert container_jobs(plan, partly) == plan.bootstrap_jobs


def test_a_cluster_create_job_leaves_the_library_and_the_wait_to_a_host_that_reaches_all(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    plan = _plan(make_topology, certificates_for, "cluster")
    (create,) = plan.bootstrap_jobs  # Pulumi's: it forms, loads and waits for ready
    full = create.command[-1].splitlines()
    assert full[-3].startswith("load_functions ") and full[-2].startswith("wait_ready ")
    info = _info(plan)
    assert host_loads_library(plan, info)
    (forms,) = container_jobs(plan, info)
    assert forms.kind is JobKind.CLUSTER_CREATE and forms.name == create.name
    steps = forms.command[-1].splitlines()[:-1]  # its last line says what it left
    assert steps == full[: len(steps)] and full[len(steps) :][0].startswith("load_functions ")
    assert steps[-1].startswith("fi") and "wait_agreement" in steps[-2]  # slot map agreed
    # One node the host cannot reach: the whole job.
    partly = _info(plan, frozenset({plan.containers[-1].node.name}))
    assert not host_loads_library(plan, partly)
    assert container_jobs(plan, partly) == plan.bootstrap_jobs


def test_the_library_name_is_the_one_the_shipped_library_declares() -> None:
    assert library_name(function_library()) == "ratelimit"
    assert library_name("#!lua name=other\nredis.register_function('f', ...)") == "other"
