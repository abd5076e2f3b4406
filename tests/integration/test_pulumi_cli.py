"""The real `pulumi stack init STACK && pulumi up` of dev, staging and prod, where
the Pulumi CLI exists: nothing set by hand, then the stack's files written with
`redis-infra connection --from-stack` and `redis-infra verify` run through them.

The Pulumi CLI and its provider plugins are downloaded binaries that this project's
build machines cannot fetch, so here the test is skipped; the program is covered by
tests/unit/test_pulumi_backend.py (Pulumi's mocks) and by
tests/integration/test_pulumi_stacks.py (the same stacks applied to the engine).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("pulumi") is None,
    reason="needs the Pulumi CLI (not installable here: no registry ships it); "
    "the program is verified with Pulumi's mocks in tests/unit/test_pulumi_backend.py "
    "and applied to the engine in tests/integration/test_pulumi_stacks.py",
)


def _run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_pulumi_up_alone_brings_up_a_verified_stack(
    redis_image: str, tmp_path: Path, stack: str
) -> None:
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{tmp_path}",
        "PULUMI_CONFIG_PASSPHRASE": "it",
    }
    cli = [sys.executable, "-m", "infra.cli"]
    _run(["pulumi", "stack", "init", stack], env)
    try:
        _run(["pulumi", "up", "--yes", "--stack", stack], env)  # and nothing before it
        out = tmp_path / "files"
        _run([*cli, "connection", "--from-stack", stack, "--out", str(out), "--operator"], env)
        _run(
            [
                *cli,
                "verify",
                "--name",
                f"trackeep-{stack}",
                "--connection",
                str(out / "connection.json"),
                "--operator",
                str(out / "operator.json"),
            ],
            env,
        )
    finally:
        _run(["pulumi", "state", "unprotect", "--all", "--yes", "--stack", stack], env)
        _run(["pulumi", "destroy", "--yes", "--stack", stack], env)
        _run(["pulumi", "stack", "rm", "--yes", "--stack", stack], env)
