"""The shipped function library is on every node once a deployment is up: loaded from
the host when every node is published (no job container), by the functions job when
not (what Pulumi always runs); a re-`up` loads it where an interrupted run left it out."""

from __future__ import annotations

import time

import docker

from infra.core.model import OPERATOR_ROLE
from infra.core.plan_specs import tls_cli_args
from infra.core.render import function_library
from infra.operations.client import admin_probe
from infra.operations.deploy import up
from infra.operations.function_library import library_name
from infra.operations.observe_sentinel import reply_fields
from tests.integration.conftest import DeployFactory, Deployment

LIBRARY = library_name(function_library())


def _created_during(engine: docker.DockerClient, name: str, since: float) -> list[str]:
    """The containers of deployment `name` that Docker created since `since`."""
    # The deployment's label is unique to this test, so a wide window picks up nothing
    # else and tolerates a daemon clock a little off the host's.
    events = engine.events(
        since=int(since) - 60,
        until=int(time.time()) + 1,
        filters={"type": "container", "event": "create", "label": f"redis-infra.name={name}"},
        decode=True,
    )
    return sorted(event["Actor"]["Attributes"]["name"] for event in events)


def test_a_published_deployment_gets_the_library_from_the_host(deploy: DeployFactory) -> None:
    since = time.time()
    deployment = deploy("single", "lib")
    # No functions job: the config job and the node, nothing else.
    assert _created_during(deployment.engine, deployment.name, since) == sorted(
        [f"{deployment.name}-config", f"{deployment.name}-redis"]
    )
    client = admin_probe(deployment.info, deployment.info.data_nodes()[0])
    try:
        listed = client.function_list(library=LIBRARY)
        assert [reply_fields(entry)["library_name"] for entry in listed] == [LIBRARY]
    finally:
        client.close()


def _lacking(deployment: Deployment) -> list[str]:
    lacking = []
    for node in deployment.info.data_nodes():
        client = admin_probe(deployment.info, node)
        try:
            if not client.function_list(library=LIBRARY):
                lacking.append(node.name)
        finally:
            client.close()
    return lacking


def test_a_cluster_gets_it_on_every_node_and_a_re_up_puts_back_what_is_missing(
    deploy: DeployFactory,
) -> None:
    since = time.time()
    deployment = deploy("cluster", "libc")
    # The create job forms the cluster; the host loads the library, on replicas too.
    created = _created_during(deployment.engine, deployment.name, since)
    assert [name for name in created if name.endswith(("-functions", "-cluster-create"))] == [
        f"{deployment.name}-cluster-create"
    ]
    assert _lacking(deployment) == []
    # What an `up` killed after the nodes started leaves: a shard without the library
    # (deleted on its master, so on its replica too).
    clients = {
        node.name: admin_probe(deployment.info, node) for node in deployment.info.data_nodes()
    }
    try:
        master, client = next(
            (name, client)
            for name, client in clients.items()
            if client.info("replication")["role"] == "master"
        )
        client.function_delete(LIBRARY)
        assert client.wait(1, 5000) == 1  # its replica has applied it
    finally:
        for client in clients.values():
            client.close()
    lacking = _lacking(deployment)
    assert master in lacking and len(lacking) == 2
    again = up(deployment.topology, deployment.engine)
    assert again.notes == [f"loaded the function library on {', '.join(lacking)}"]
    assert _lacking(deployment) == []


def test_every_node_of_a_sentinel_group_holds_the_library(shared_sentinel: Deployment) -> None:
    for node in shared_sentinel.info.data_nodes():
        client = admin_probe(shared_sentinel.info, node)
        try:
            assert client.function_list(library=LIBRARY), f"{node.name} lacks {LIBRARY}"
        finally:
            client.close()


def test_an_unpublished_deployment_gets_the_library_from_its_job(deploy: DeployFactory) -> None:
    since = time.time()
    deployment = deploy("single", "nolib", publish={"enabled": False})
    created = _created_during(deployment.engine, deployment.name, since)
    assert f"{deployment.name}-functions" in created
    # Nothing reaches the node from the host: ask inside it, as the operator.
    operator = deployment.info.credentials(OPERATOR_ROLE)
    listed = deployment.container().exec_run(
        [
            "redis-cli",
            *tls_cli_args(),
            "--user",
            operator.username,
            "--no-auth-warning",
            "FUNCTION",
            "LIST",
            "LIBRARYNAME",
            LIBRARY,
        ],
        environment={"REDISCLI_AUTH": operator.password},
    )
    assert listed.exit_code == 0 and LIBRARY in listed.output.decode(), listed.output
    # The job's container is gone once `up` returned.
    names = [c.name for c in deployment.engine.containers.list(all=True)]
    assert f"{deployment.name}-functions" not in names
