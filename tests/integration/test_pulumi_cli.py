"""The real `pulumi up` of the dev stack, where the Pulumi CLI exists.

The Pulumi CLI and its docker provider plugin are downloaded binaries that this
project's build machines cannot fetch, so here the test is skipped and the
program is covered by tests/unit/test_pulumi_backend.py (Pulumi's mocks). On a
machine with the CLI it deploys the single topology with a local state backend,
proves it with `redis-infra verify`, and destroys it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import docker
import pytest

from infra.core.certs import ensure_certificates
from infra.core.connection import read_connection_file
from infra.core.private_files import write_private_json
from infra.core.secrets import generate_password
from infra.core.topology import load_topology
from infra.operations.client import node_client
from tests.integration.conftest import unique_name

PROJECT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("pulumi") is None,
    reason="needs the Pulumi CLI (not installable here: no registry ships it); "
    "the program is verified with Pulumi's mocks in tests/unit/test_pulumi_backend.py",
)


def _pulumi(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        ["pulumi", *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"pulumi {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_pulumi_up_deploys_what_the_plan_says(
    engine: docker.DockerClient, redis_image: str, tmp_path: Path
) -> None:
    name, stack = unique_name("pulumi"), f"it{os.getpid()}"
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{tmp_path}",
        "PULUMI_CONFIG_PASSPHRASE": "it",
    }
    tls_dir = tmp_path / "certs"
    overrides = {"publish": {"base_port": 26379}, "image": redis_image}
    ensure_certificates(load_topology("single", name, overrides), tls_dir)
    _pulumi(["stack", "init", stack], env)
    try:
        _pulumi(["config", "set", "redis-infra:topology", "single", "--stack", stack], env)
        _pulumi(["config", "set", "redis-infra:name", name, "--stack", stack], env)
        _pulumi(["config", "set", "redis-infra:tlsDir", str(tls_dir), "--stack", stack], env)
        _pulumi(
            [
                "config",
                "set",
                "--path",
                "redis-infra:overrides.publish.base_port",
                "26379",
                "--stack",
                stack,
            ],
            env,
        )
        _pulumi(
            [
                "config",
                "set",
                "--path",
                "redis-infra:overrides.image",
                redis_image,
                "--stack",
                stack,
            ],
            env,
        )
        passwords = {
            key: generate_password()
            for key in (
                "appPassword",
                "adminPassword",
                "breakglassPassword",
                "healthPassword",
                "replicationPassword",
            )
        }
        for key, value in passwords.items():
            _pulumi(
                ["config", "set", "--secret", f"redis-infra:{key}", value, "--stack", stack], env
            )
        _pulumi(["up", "--yes", "--stack", stack], env)
        outputs = json.loads(
            _pulumi(["stack", "output", "--json", "--show-secrets", "--stack", stack], env)
        )
        # The output is a connection file as it is: no hand-built ConnectionInfo.
        connection_file = tmp_path / "connection.json"
        write_private_json(connection_file, outputs["connection"])
        info = read_connection_file(connection_file)
        node = outputs["connection"]["nodes"][0]
        assert node_client(info, info.nodes[0]).ping()
        container = engine.containers.get(node["container"])
        assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True
    finally:
        _pulumi(["state", "unprotect", "--all", "--yes", "--stack", stack], env)
        _pulumi(["destroy", "--yes", "--stack", stack], env)
        _pulumi(["stack", "rm", "--yes", "--stack", stack], env)
