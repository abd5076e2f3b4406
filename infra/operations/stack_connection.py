"""`redis-infra connection --from-stack STACK`: the connection files of a Pulumi-made
deployment, written from the stack's outputs (which hold them exactly as `redis-infra
up` writes them), so verify, drill, load and status work on it as on a local one."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any, cast

from infra.core.connection import (
    BREAKGLASS_FILE,
    BREAKGLASS_OUTPUT,
    CONNECTION_FILE,
    CONNECTION_OUTPUT,
    OPERATOR_FILE,
    OPERATOR_OUTPUT,
    STACK_TLS_DIR,
    TLS_FILES_OUTPUT,
    read_connection_file,
)
from infra.core.errors import ConfigError, DeploymentError
from infra.core.model import APP_ROLE, BREAKGLASS_ROLE, OPERATOR_ROLE
from infra.core.private_files import (
    claim_private_dir,
    write_private_bytes,
    write_private_json,
)

FILES = {
    CONNECTION_OUTPUT: CONNECTION_FILE,
    OPERATOR_OUTPUT: OPERATOR_FILE,
    BREAKGLASS_OUTPUT: BREAKGLASS_FILE,
}
ROLES = {
    CONNECTION_OUTPUT: APP_ROLE,
    OPERATOR_OUTPUT: OPERATOR_ROLE,
    BREAKGLASS_OUTPUT: BREAKGLASS_ROLE,
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
    try:
        done = subprocess.run(
            [program, "stack", "output", "--json", "--show-secrets", "--stack", stack],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    except subprocess.TimeoutExpired as exc:
        raise DeploymentError(f"pulumi did not answer within 120 s for stack {stack!r}") from exc
    if done.returncode != 0:
        # Its last line says why; no more of it, in case a value ever appears there.
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1][:200]
        raise DeploymentError(
            f"pulumi could not read the outputs of stack {stack!r}: {reason} "
            "(run this in the Pulumi project's folder, after `pulumi up`)"
        )
    try:
        outputs = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise DeploymentError(f"pulumi printed no JSON for stack {stack!r}: {exc}") from exc
    if not isinstance(outputs, dict):
        raise DeploymentError(f"pulumi printed no outputs object for stack {stack!r}")
    return outputs


def _check_outputs(stack: str, outputs: dict[str, object]) -> dict[str, dict[str, Any]]:
    """The three files, checked before any is written: each holds its own role only."""
    missing = [name for name in FILES if not isinstance(outputs.get(name), dict)]
    if missing:
        raise DeploymentError(
            f"stack {stack!r} has no {', '.join(missing)} output: run `pulumi up` for it with "
            "this version of redis-infra first"
        )
    files = {name: cast(dict[str, Any], outputs[name]) for name in FILES}
    for name, role in ROLES.items():
        users = files[name].get("users")
        if not isinstance(users, dict) or set(users) != {role}:
            raise DeploymentError(
                f"stack {stack!r}: the {name} output should hold the {role!r} user only, "
                f"it holds {sorted(users) if isinstance(users, dict) else users!r}"
            )
    names = {str(files[name].get("name")) for name in FILES}
    if len(names) != 1:
        raise DeploymentError(f"stack {stack!r}: its outputs name different deployments {names}")
    return files


def _check_tls_files(
    stack: str, outputs: dict[str, object], connection: dict[str, Any]
) -> dict[str, str]:
    """The TLS files the connection output names (relative to it), from `tlsFiles`."""
    found = outputs.get(TLS_FILES_OUTPUT)
    tls = connection.get("tls")
    if not isinstance(found, dict) or not isinstance(tls, dict):
        raise DeploymentError(
            f"stack {stack!r} has no {TLS_FILES_OUTPUT} output: run `pulumi up` for it with "
            "this version of redis-infra first"
        )
    wanted: dict[str, str] = {}
    for value in tls.values():
        if value is None:
            continue
        relative = PurePosixPath(str(value))
        if relative.is_absolute() or relative.parent != PurePosixPath(STACK_TLS_DIR):
            raise DeploymentError(f"stack {stack!r}: unexpected TLS path {value!r} in its output")
        pem = found.get(relative.name)
        if not isinstance(pem, str) or "-----BEGIN" not in pem:
            raise DeploymentError(f"stack {stack!r}: {TLS_FILES_OUTPUT} lacks {relative.name}")
        wanted[relative.name] = pem
    return wanted


def write_stack_connection(
    stack: str, out: Path, pulumi: str = "pulumi", *, operator: bool = False
) -> Path:
    """Write connection.json and tls/ (0600, in 0700 folders) from the stack's outputs,
    all checked first, and with `operator` operator.json and breakglass.json too (the
    application's folder must never hold them); return the connection file."""
    outputs = stack_outputs(stack, pulumi)
    files = _check_outputs(stack, outputs)
    tls_files = _check_tls_files(stack, outputs, files[CONNECTION_OUTPUT])
    claim_private_dir(out, "--out")
    claim_private_dir(out / STACK_TLS_DIR, "--out")  # refuses a link planted there
    for file_name, pem in tls_files.items():
        write_private_bytes(out / STACK_TLS_DIR / file_name, pem.encode())
    # The files name their TLS files as absolute paths, so a client anywhere reads them.
    tls_dir = (out / STACK_TLS_DIR).resolve()
    connection_json = dict(files[CONNECTION_OUTPUT])
    connection_json["tls"] = {
        key: str(tls_dir / PurePosixPath(value).name) if value else None
        for key, value in connection_json["tls"].items()
    }
    files = {**files, CONNECTION_OUTPUT: connection_json}
    written = FILES if operator else {CONNECTION_OUTPUT: CONNECTION_FILE}
    for output, file_name in written.items():
        write_private_json(out / file_name, files[output])
    connection = out / CONNECTION_FILE
    if operator:
        read_connection_file(
            connection, operator_file=out / OPERATOR_FILE, breakglass_file=out / BREAKGLASS_FILE
        )
    else:
        read_connection_file(connection)
        for stale in (OPERATOR_FILE, BREAKGLASS_FILE):  # from an earlier --operator run
            (out / stale).unlink(missing_ok=True)
    return connection
