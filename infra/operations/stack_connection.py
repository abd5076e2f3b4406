"""`redis-infra connection --from-stack STACK`: the connection files of a Pulumi-made
deployment, written from the stack's outputs (which hold them exactly as `redis-infra
up` writes them), so verify, drill, load and status work on it as on a local one."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from infra.core.connection import (
    BREAKGLASS_FILE,
    BREAKGLASS_OUTPUT,
    CONNECTION_FILE,
    CONNECTION_OUTPUT,
    OPERATOR_FILE,
    OPERATOR_OUTPUT,
    read_connection_file,
)
from infra.core.errors import ConfigError, DeploymentError
from infra.core.private_files import ensure_private_dir, write_private_json

FILES = {
    CONNECTION_OUTPUT: CONNECTION_FILE,
    OPERATOR_OUTPUT: OPERATOR_FILE,
    BREAKGLASS_OUTPUT: BREAKGLASS_FILE,
}


def stack_outputs(stack: str, pulumi: str = "pulumi") -> dict[str, object]:
    """`pulumi stack output --json --show-secrets`, run in this folder (the project's)."""
    program = shutil.which(pulumi)
    if program is None:
        raise ConfigError.single(
            "--from-stack",
            stack,
            "needs the Pulumi CLI to read the stack's outputs, and none is on PATH",
            "install the Pulumi CLI (https://www.pulumi.com/docs/install/), then run again",
        )
    # The secrets travel on stdout only, never on a command line or in a file of Pulumi's.
    done = subprocess.run(
        [program, "stack", "output", "--json", "--show-secrets", "--stack", stack],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise DeploymentError(
            f"pulumi could not read the outputs of stack {stack!r}: {done.stderr.strip()} "
            "(run this in the Pulumi project's folder, after `pulumi up`)"
        )
    try:
        outputs = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise DeploymentError(f"pulumi printed no JSON for stack {stack!r}: {exc}") from exc
    if not isinstance(outputs, dict):
        raise DeploymentError(f"pulumi printed no outputs object for stack {stack!r}")
    return outputs


def write_stack_connection(stack: str, out: Path, pulumi: str = "pulumi") -> Path:
    """Write connection.json, operator.json and breakglass.json (0600, in a 0700 folder)
    from the stack's outputs; return the connection file, checked by reading it back."""
    outputs = stack_outputs(stack, pulumi)
    missing = [name for name in FILES if not isinstance(outputs.get(name), dict)]
    if missing:
        raise DeploymentError(
            f"stack {stack!r} has no {', '.join(missing)} output: it was brought up by an "
            "older program; run `pulumi up` with this version first"
        )
    ensure_private_dir(out)
    for output, file_name in FILES.items():
        write_private_json(out / file_name, outputs[output])
    connection = out / CONNECTION_FILE
    read_connection_file(
        connection, operator_file=out / OPERATOR_FILE, breakglass_file=out / BREAKGLASS_FILE
    )
    return connection
