"""The shipped function library is on every node once a deployment is up: loaded from
the host when every node is published (no job container), by the functions job when
not (what Pulumi always runs)."""

from __future__ import annotations

import time

import docker

from infra.core.model import OPERATOR_ROLE
from infra.core.plan_specs import tls_cli_args
from infra.core.render import function_library
from infra.operations.client import admin_probe
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
