"""What the local backend keeps on the deploying machine, in the connection file's directory.

<dir>/connection.json   what clients need (0600: it holds passwords)
<dir>/secrets.json      generated passwords (0600); a user may pre-fill it
<dir>/allocations.json  host ports and the subnet, chosen once and kept, so the
                        connection file and the nodes' addresses stay valid
<dir>/tls/              CA, node and client certificates (keys 0600)
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from infra.errors import ConfigError, Problem
from infra.secrets import generate_password, password_problem

STATE_HOME_ENV = "REDIS_INFRA_STATE_HOME"
CONNECTION_FILE = "connection.json"
SECRETS_FILE = "secrets.json"
ALLOCATIONS_FILE = "allocations.json"
SETTINGS_FILE = "topology.json"  # the merged settings the deployment was built from
SUBNET_POOL = ipaddress.IPv4Network("10.213.0.0/16")  # /24s for deployments' internal networks
TLS_DIR = "tls"


def default_state_dir(name: str) -> Path:
    """`$REDIS_INFRA_STATE_HOME/<name>`, else `$XDG_STATE_HOME/redis-infra/<name>`."""
    explicit = os.environ.get(STATE_HOME_ENV)
    if explicit:
        return Path(explicit).expanduser().resolve() / name
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg).expanduser().resolve() / "redis-infra" / name


def write_private_json(path: Path, data: Any) -> None:
    """Write JSON readable by the owner only, atomically (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")
    temporary.replace(path)


class StateDir:
    """The directory holding one deployment's local files."""

    def __init__(self, directory: Path) -> None:
        self.path = directory.resolve()

    @property
    def connection_file(self) -> Path:
        return self.path / CONNECTION_FILE

    @property
    def tls_dir(self) -> Path:
        return self.path / TLS_DIR

    def _read(self, filename: str) -> dict[str, Any]:
        path = self.path / filename
        if not path.exists():
            return {}
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

        TLS keys are not stored here; `infra.certs` keeps them as key files.
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
        """The deployment's subnet: the one chosen before, else a free /24 of SUBNET_POOL."""
        allocations = self._read(ALLOCATIONS_FILE)
        if allocations.get("subnet"):
            return str(allocations["subnet"])
        candidates = list(SUBNET_POOL.subnets(new_prefix=24))
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
            f"every /24 of {SUBNET_POOL} is in use",
            "set network.subnet to a free IPv4 /24 (e.g. --set network.subnet=10.214.0.0/24)",
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

    def remove(self) -> None:
        """Forget the deployment: secrets, ports, certificates and connection file."""
        for filename in (CONNECTION_FILE, SECRETS_FILE, ALLOCATIONS_FILE, SETTINGS_FILE):
            (self.path / filename).unlink(missing_ok=True)
        shutil.rmtree(self.tls_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # only if nothing else (user files) is left
            self.path.rmdir()


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
