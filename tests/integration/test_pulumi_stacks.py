"""dev, staging and prod as `pulumi up` would make them from Pulumi.<stack>.yaml alone
(no certificate, no password set by hand), side by side on one engine next to a
local deployment, each verified through its own `connection` output."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from infra.core.connection import ConnectionInfo, read_connection_file
from infra.core.layout import STACK_SUBNET_POOL
from infra.operations.deploy import down
from infra.operations.stack_connection import write_stack_connection
from infra.operations.verify import Check, verify
from tests.integration.conftest import DeployFactory
from tests.integration.other_clients import assert_seed_operations_work
from tests.integration.pulumi_applied import REPO, stack_config

STACKS = ("dev", "staging", "prod")


def _name(stack: str) -> str:
    return stack_config(stack)["redis-infra:name"]


@dataclass
class AppliedStack:
    folder: Path  # what `connection --from-stack` wrote
    resources: int
    seconds: float  # `pulumi up`, applied
    failed: list[Check]  # `redis-infra verify` at once after it, through the output


@pytest.fixture(scope="module")
def stacks(
    engine: docker.DockerClient, redis_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, AppliedStack]]:
    """Every stack applied, side by side (each in its own process: Pulumi's mocks are
    per process), each verified the moment its `pulumi up` returned."""
    for stack in STACKS:  # a run killed before its teardown leaves these behind
        down(_name(stack), engine, keep_data=False)
    applied: dict[str, AppliedStack] = {}
    base = tmp_path_factory.mktemp("stacks")
    logs = {stack: (base / f"{stack}.log").open("w") for stack in STACKS}
    running = {
        stack: subprocess.Popen(
            [sys.executable, "-m", "tests.integration.pulumi_applied", stack, str(base / stack)],
            cwd=REPO,
            stdout=logs[stack],  # a file: a full pipe would block it
            stderr=subprocess.STDOUT,
        )
        for stack in STACKS
    }
    try:
        while running:
            for stack, process in list(running.items()):
                if process.poll() is None:
                    continue
                del running[stack]
                log = (base / f"{stack}.log").read_text(errors="replace")
                assert process.returncode == 0, f"stack {stack} failed:\n{log[-3000:]}"
                result = json.loads((base / stack).read_text())
                folder = _connection_folder(stack, result["outputs"], tmp_path_factory)
                failed = [c for c in verify(_read(folder), engine) if not c.passed]
                applied[stack] = AppliedStack(
                    folder, result["resources"], result["seconds"], failed
                )
                print(
                    f"stack {stack}: {result['resources']} resources in {result['seconds']:.1f} s"
                )
            time.sleep(0.05)
        yield applied
    finally:
        for process in running.values():
            process.kill()
        for handle in logs.values():
            handle.close()
        for stack in STACKS:
            down(_name(stack), engine, keep_data=False)


def _read(folder: Path) -> ConnectionInfo:
    return read_connection_file(
        folder / "connection.json",
        operator_file=folder / "operator.json",
        breakglass_file=folder / "breakglass.json",
    )


def _connection_folder(
    stack: str, outputs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """What `redis-infra connection --from-stack STACK --out DIR` writes, through a
    `pulumi` that prints these outputs as the real CLI does."""
    base = tmp_path_factory.mktemp(f"stack-{stack}")
    fake = base / "pulumi"
    fake.write_text(
        "#!/bin/sh\n"
        f'[ "$*" = "stack output --json --show-secrets --stack {stack}" ] || exit 3\n'
        f"cat <<'EOF'\n{json.dumps(outputs)}\nEOF\n"
    )
    fake.chmod(0o700)
    write_stack_connection(stack, base / "files", pulumi=str(fake), operator=True)
    return base / "files"


@pytest.mark.parametrize("stack", STACKS)
def test_each_stack_verifies_through_its_connection_output_once_up_returns(
    stacks: dict[str, AppliedStack], stack: str
) -> None:
    assert stacks[stack].failed == []
    assert _read(stacks[stack].folder).name == _name(stack)


def test_the_stacks_and_a_local_deployment_live_side_by_side(
    stacks: dict[str, AppliedStack], engine: docker.DockerClient, deploy: DeployFactory
) -> None:
    local = deploy("single", "beside")
    subnets = {}
    for stack in STACKS:
        info = _read(stacks[stack].folder)
        network = engine.networks.get(info.network)
        subnets[stack] = network.attrs["IPAM"]["Config"][0]["Subnet"]
    local_network = engine.networks.get(local.info.network).attrs["IPAM"]["Config"][0]["Subnet"]
    assert len({*subnets.values(), local_network}) == 4
    # Stacks fix theirs in the stacks' range; a local `up` never picks from it.
    fixed = [ipaddress.ip_network(subnets[stack]) for stack in ("staging", "prod")]
    assert all(net.subnet_of(STACK_SUBNET_POOL) for net in fixed)  # type: ignore[arg-type]
    assert not ipaddress.ip_network(local_network).overlaps(STACK_SUBNET_POOL)
    failed = [check for check in verify(local.info, engine) if not check.passed]
    assert failed == [], failed
    # A client from another ecosystem on the stack-made Sentinel group, from its output.
    assert_seed_operations_work(stacks["staging"].folder / "connection.json")
