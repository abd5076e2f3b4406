"""What the local backend keeps on the deploying machine, one folder per deployment.

`$REDIS_INFRA_STATE_HOME/<name>/` (else `$XDG_STATE_HOME/redis-infra/<name>/`), 0700:

connection.json   the application's connection file (0600: its password)
operator.json     the operator's credentials and the deployment's settings (0600)
breakglass.json   the emergency user's credentials (0600)
secrets.json      every password (0600); a user may pre-fill it
allocations.json  host ports and the subnet, chosen once and kept, so the
                  connection file and the nodes' addresses stay valid
topology.json     the merged settings of the last successful `up` (or scale)
copies.json       where `up --out` also wrote the connection file
tls/              CA, node and client certificates (keys 0600)

The folder is the deployment's, never a user's: `down` deletes exactly these
files, and a folder or secret file others could write or read is refused.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from infra.core.connection import BREAKGLASS_FILE, CONNECTION_FILE, OPERATOR_FILE
from infra.core.errors import ConfigError, Problem
from infra.core.layout import LOCAL_SUBNET_POOL
from infra.core.private_files import (
    check_private_dir,
    check_private_file,
    ensure_private_dir,
    write_private_json,
)
from infra.core.secrets import generate_password, password_problem

STATE_HOME_ENV = "REDIS_INFRA_STATE_HOME"
SECRETS_FILE = "secrets.json"
ALLOCATIONS_FILE = "allocations.json"
SETTINGS_FILE = "topology.json"  # the merged settings the deployment was built from
COPIES_FILE = "copies.json"
TLS_DIR = "tls"


def default_state_dir(name: str) -> Path:
    """`$REDIS_INFRA_STATE_HOME/<name>`, else `$XDG_STATE_HOME/redis-infra/<name>`."""
    explicit = os.environ.get(STATE_HOME_ENV)
    if explicit:
        return Path(explicit).expanduser().resolve() / name
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg).expanduser().resolve() / "redis-infra" / name


class StateDir:
    """The directory holding one deployment's local files."""

    def __init__(self, directory: Path) -> None:
        self.path = directory.resolve()
        check_private_dir(self.path.parent)
        check_private_dir(self.path)

    def create(self) -> StateDir:
        ensure_private_dir(self.path)
        return self

    @property
    def exists(self) -> bool:
        return (self.path / SECRETS_FILE).exists()

    @property
    def connection_file(self) -> Path:
        return self.path / CONNECTION_FILE

    @property
    def operator_file(self) -> Path:
        return self.path / OPERATOR_FILE

    @property
    def breakglass_file(self) -> Path:
        return self.path / BREAKGLASS_FILE

    @property
    def tls_dir(self) -> Path:
        return self.path / TLS_DIR

    def _read(self, filename: str) -> dict[str, Any]:
        path = self.path / filename
        if not path.exists():
            return {}
        check_private_file(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError.single(
                str(path),
                "<file>",
                f"is not valid JSON ({exc})",
                "fix or delete it; deleted values are generated again",
            ) from exc
        if not isinstance(data, dict):
            raise ConfigError.single(str(path), "<file>", "must hold a JSON object", "delete it")
        return data

    def secrets(self, names: Iterable[str]) -> dict[str, str]:
        """Values for the named password secrets: kept ones checked, missing ones generated.

        TLS keys are not stored here; `infra.core.certs` keeps them as key files.
        """
        stored = self._read(SECRETS_FILE)
        problems: list[Problem] = []
        values: dict[str, str] = {}
        changed = False
        for name in names:
            value = stored.get(name)
            if value is None:
                values[name] = generate_password()
                changed = True
                continue
            problem = password_problem(
                f"{SECRETS_FILE}: {name}", value if isinstance(value, str) else None
            )
            if problem is not None:
                problems.append(problem)
            values[name] = str(value)
        if problems:
            raise ConfigError(str(self.path / SECRETS_FILE), problems)
        if changed:
            self.create()
            write_private_json(self.path / SECRETS_FILE, {**stored, **values})
        return values

    def host_ports(self, wanted: dict[str, int | None], host_ip: str) -> dict[str, int]:
        """A host port per node: the fixed ones asked for, else chosen once and kept."""
        allocations = self._read(ALLOCATIONS_FILE)
        stored = {k: int(v) for k, v in allocations.get("ports", {}).items()}
        ports: dict[str, int] = {}
        for node, fixed in wanted.items():
            if fixed is not None:
                ports[node] = fixed
            elif node in stored:
                ports[node] = stored[node]
            else:
                ports[node] = free_port(host_ip, exclude=set(ports.values()) | set(stored.values()))
        if ports != {k: stored.get(k) for k in ports}:
            allocations["ports"] = {**stored, **ports}
            write_private_json(self.path / ALLOCATIONS_FILE, allocations)
        return ports

    def subnet(self, taken: list[ipaddress.IPv4Network]) -> str:
        """The deployment's subnet: the one chosen before, else a free /24 of LOCAL_SUBNET_POOL."""
        allocations = self._read(ALLOCATIONS_FILE)
        if allocations.get("subnet"):
            return str(allocations["subnet"])
        candidates = list(LOCAL_SUBNET_POOL.subnets(new_prefix=24))
        # A random free one: two deployments started at the same moment rarely pick alike.
        start = secrets.randbelow(len(candidates))
        for candidate in candidates[start:] + candidates[:start]:
            if not any(candidate.overlaps(other) for other in taken):
                allocations["subnet"] = str(candidate)
                write_private_json(self.path / ALLOCATIONS_FILE, allocations)
                return str(candidate)
        raise ConfigError.single(
            "network.subnet",
            "network.subnet",
            f"every /24 of {LOCAL_SUBNET_POOL} is in use",
            "set network.subnet to a free IPv4 /24 outside 10.214.0.0/16, which is kept for "
            "Pulumi stacks (e.g. --set network.subnet=10.215.0.0/24)",
        )

    def save_settings(self, settings: dict[str, Any]) -> None:
        write_private_json(self.path / SETTINGS_FILE, settings)

    def settings(self) -> dict[str, Any]:
        """The merged topology settings of the last successful `up` (or scale)."""
        stored = self._read(SETTINGS_FILE)
        if not stored:
            raise ConfigError.single(
                str(self.path / SETTINGS_FILE),
                "<file>",
                "does not exist",
                "run `redis-infra up` for this deployment first (it records its settings)",
            )
        return stored

    def record_copy(self, path: Path) -> None:
        """`up --out` wrote the connection file there too: `down` removes it as well."""
        copies = self._read(COPIES_FILE).get("files", [])
        if str(path) not in copies and path != self.connection_file:
            write_private_json(self.path / COPIES_FILE, {"files": [*copies, str(path)]})

    def copies(self) -> list[Path]:
        return [Path(p) for p in self._read(COPIES_FILE).get("files", [])]

    def remove(self, deployment: str) -> list[Path]:
        """Forget the deployment: exactly the files `up` wrote, nothing else; what was removed."""
        removed: list[Path] = []
        for copy in self.copies():
            if _is_connection_file_of(copy, deployment):
                copy.unlink()
                removed.append(copy)
        names = [
            CONNECTION_FILE,
            OPERATOR_FILE,
            BREAKGLASS_FILE,
            SECRETS_FILE,
            ALLOCATIONS_FILE,
            SETTINGS_FILE,
            COPIES_FILE,
            f"{TLS_DIR}/ca.crt",
            f"{TLS_DIR}/ca.key",
            f"{TLS_DIR}/client.crt",
            f"{TLS_DIR}/client.key",
        ]
        paths = [self.path / name for name in names]
        paths += sorted((self.tls_dir / "nodes").glob(f"{deployment}-*.crt"))
        paths += sorted((self.tls_dir / "nodes").glob(f"{deployment}-*.key"))
        for path in paths:
            if path.is_file():
                path.unlink()
                removed.append(path)
        for directory in (self.tls_dir / "nodes", self.tls_dir, self.path):
            with contextlib.suppress(OSError):  # only if nothing else is left in it
                directory.rmdir()
        return removed


def _is_connection_file_of(path: Path, deployment: str) -> bool:
    """Delete a copy only while it still is this deployment's connection file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("name") == deployment and "nodes" in data


# Below Linux's ephemeral range (32768-60999): a kept port must not be handed to an
# outgoing connection while its container is stopped.
PORT_RANGE = (21000, 32000)


def free_port(host_ip: str, exclude: set[int] | None = None) -> int:
    """A port in PORT_RANGE that nothing listens on at `host_ip` now."""
    low, high = PORT_RANGE
    for _ in range(200):
        port = low + secrets.randbelow(high - low)
        if port not in (exclude or set()) and not port_in_use(host_ip, port):
            return port
    raise RuntimeError(f"no free port in {low}-{high} on {host_ip}")  # pragma: no cover


def port_in_use(host_ip: str, port: int) -> bool:
    bind_ip = "127.0.0.1" if host_ip in ("", "0.0.0.0") else host_ip  # noqa: S104 - probing only
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As Docker binds: connections of a removed container lingering in TIME_WAIT
        # do not make the port busy, a listening program does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind_ip, port))
        except OSError:
            return True
    return False
