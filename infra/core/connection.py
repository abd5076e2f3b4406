"""The connection files: what clients need, as JSON (mode 0600), one file per audience.

- `connection.json`: for applications. TLS files, the nodes, and the *application's*
  credentials only: whoever holds it can do what the application can, no more.
- `operator.json`: the day-to-day operator's credentials and the deployment's
  settings, for the CLI (`verify`, `drill`, `status`, `scale`, `load`).
- `breakglass.json`: the emergency user, which may do everything Redis still
  allows; nothing in the CLI uses it except `bench` (a temporary ACL user).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from infra.core.certs import CertificateSet
from infra.core.errors import ConfigError
from infra.core.model import APP_ROLE, BREAKGLASS_ROLE, OPERATOR_ROLE
from infra.core.plan_specs import Outputs
from infra.core.private_files import check_private_file, write_private_json
from infra.core.secrets import password_ref

CONNECTION_FILE = "connection.json"
OPERATOR_FILE = "operator.json"
BREAKGLASS_FILE = "breakglass.json"
# The Pulumi stack's outputs that hold these files (the application's: `connection`).
CONNECTION_OUTPUT = "connection"
OPERATOR_OUTPUT = "operatorFile"
BREAKGLASS_OUTPUT = "breakglassFile"
TLS_FILES_OUTPUT = "tlsFiles"  # the TLS files the connection output names, by file name
STACK_TLS_DIR = "tls"  # where those are, relative to the stack's connection file


@dataclass(frozen=True)
class TlsPaths:
    ca_file: str
    cert_file: str | None = None  # the client certificate, where clients present one
    key_file: str | None = None


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True)
class NodeAddress:
    name: str
    container: str
    role: str
    host: str | None  # reachable from the host; None when ports are not published
    port: int | None
    internal: str  # "host:port" inside the deployment's network
    shard: int | None = None
    address: str | None = None  # fixed IP inside the network, as Sentinel/Cluster announce it


class MissingCredentialsError(ConfigError):
    """A command needs credentials (operator, break-glass) that were not loaded."""


@dataclass(frozen=True)
class ConnectionInfo:
    name: str
    topology: str
    network: str
    tls: TlsPaths
    users: dict[str, Credentials]  # the roles loaded: "app", and "admin" for the CLI
    nodes: tuple[NodeAddress, ...]
    service_name: str | None = None  # Sentinel kind
    # What the app user may use beyond data commands: channel patterns, EVAL, functions.
    access: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # operator file: the topology

    def data_nodes(self) -> list[NodeAddress]:
        return [node for node in self.nodes if node.role != "sentinel"]

    def sentinels(self) -> list[NodeAddress]:
        return [node for node in self.nodes if node.role == "sentinel"]

    def node(self, name: str) -> NodeAddress:
        """A node by name, container name or internal address."""
        for node in self.nodes:
            if name in (node.name, node.container, node.address):
                return node
        raise KeyError(f"no node named {name} in deployment {self.name}")

    def node_name(self, host: str | None) -> str | None:
        """The node an announced host (name or address) stands for, None if unknown."""
        if host is None:
            return None
        try:
            return self.node(host).name
        except KeyError:
            return None

    def credentials(self, role: str) -> Credentials:
        found = self.users.get(role)
        if found is None:
            source = {OPERATOR_ROLE: OPERATOR_FILE, BREAKGLASS_ROLE: BREAKGLASS_FILE}.get(
                role, "connection.json"
            )
            raise MissingCredentialsError.single(
                f"deployment {self.name}",
                f"{role} credentials",
                f"are not loaded: they live in {source}, apart from the application's file",
                f"run this on the machine that deployed {self.name} (its state folder holds "
                f"{source}), or pass --operator with the path of {source}",
            )
        return found

    def with_users(self, users: dict[str, Credentials], settings: dict[str, Any]) -> ConnectionInfo:
        return replace(self, users={**self.users, **users}, settings=settings or self.settings)

    # -- files ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The application's file: no operator or break-glass credential in it."""
        data: dict[str, Any] = {
            "name": self.name,
            "topology": self.topology,
            "network": self.network,
            "tls": self.tls.__dict__,
            "users": {APP_ROLE: self.credentials(APP_ROLE).__dict__},
            "access": self.access,
            "nodes": [
                {
                    "name": n.name,
                    "container": n.container,
                    "role": n.role,
                    "host": n.host,
                    "port": n.port,
                    "internal": n.internal,
                    **({"shard": n.shard} if n.shard is not None else {}),
                    **({"address": n.address} if n.address is not None else {}),
                }
                for n in self.nodes
            ],
        }
        if self.topology == "sentinel":
            data["sentinel"] = {
                "service_name": self.service_name,
                "sentinels": [
                    {"host": n.host, "port": n.port, "internal": n.internal}
                    for n in self.sentinels()
                ],
                # Sentinels speak TLS only and require ACL auth, as this user (the
                # same credentials as the data nodes; clients must send them to both).
                "tls": True,
                "username": self.credentials(APP_ROLE).username,
            }
        if self.topology == "cluster":
            data["cluster"] = {
                "startup_nodes": [
                    {"host": n.host, "port": n.port, "internal": n.internal}
                    for n in self.data_nodes()
                ],
            }
        data["address_map"] = self.address_map()
        return data

    def address_map(self) -> dict[str, dict[str, Any]]:
        """Every address a node is announced by (Sentinel: fixed IPs; Cluster: hostnames;
        both: name:port on the network) -> where this host reaches it. ioredis takes it
        as `natMap`; redis-py and go-redis through a dialer or address remap."""
        mapped: dict[str, dict[str, Any]] = {}
        for node in self.nodes:
            if node.host is None or node.port is None:
                continue
            port = node.internal.rpartition(":")[2]
            for announced in (node.internal, f"{node.address}:{port}" if node.address else None):
                if announced:
                    mapped[announced] = {"host": node.host, "port": node.port}
        return mapped

    def role_json(self, role: str, *, with_settings: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "users": {role: self.credentials(role).__dict__},
        }
        if with_settings:
            data["settings"] = self.settings
        return data

    def write(self, path: Path) -> None:
        """The application's connection file at `path`."""
        write_private_json(path, self.to_json())

    def write_operator_files(self, directory: Path) -> None:
        write_private_json(
            directory / OPERATOR_FILE, self.role_json(OPERATOR_ROLE, with_settings=True)
        )
        write_private_json(directory / BREAKGLASS_FILE, self.role_json(BREAKGLASS_ROLE))


def tls_paths(certificates: CertificateSet) -> TlsPaths:
    """Where a client finds the CA and, where the topology asks one, its certificate."""
    return TlsPaths(
        ca_file=str(certificates.ca_file),
        cert_file=str(certificates.client_cert_file) if certificates.client_cert_file else None,
        key_file=str(certificates.client_key_file) if certificates.client_key_file else None,
    )


def pinned_host_ports(outputs: Outputs) -> dict[str, int]:
    """The host ports a plan fixes itself (a stack's publish.base_port)."""
    return {
        endpoint.name: endpoint.published.host_port
        for endpoint in outputs.endpoints
        if endpoint.published is not None and endpoint.published.host_port is not None
    }


def build_connection_info(
    outputs: Outputs,
    tls: TlsPaths,
    passwords: Mapping[str, str],
    host_ports: Mapping[str, int],
    settings: dict[str, Any] | None = None,
) -> ConnectionInfo:
    """Who may connect to what, and how: the one source of every backend's connection
    file (`to_json`). `passwords` holds the roles to include (app, admin, breakglass)."""
    users = {
        role: Credentials(outputs.users[role], passwords[f"{role}_password"])
        for role in (APP_ROLE, OPERATOR_ROLE, BREAKGLASS_ROLE)
        if f"{role}_password" in passwords
    }
    nodes = []
    for endpoint in outputs.endpoints:
        published = endpoint.published
        host = None
        if published is not None:
            host = "127.0.0.1" if published.host_ip in ("", "0.0.0.0") else published.host_ip  # noqa: S104
        nodes.append(
            NodeAddress(
                name=endpoint.name,
                container=endpoint.container,
                role=endpoint.role,
                host=host,
                port=host_ports.get(endpoint.name) if published is not None else None,
                internal=f"{endpoint.internal_host}:{endpoint.internal_port}",
                shard=endpoint.shard,
                address=endpoint.address,
            )
        )
    return ConnectionInfo(
        name=outputs.name,
        topology=outputs.kind,
        network=outputs.network,
        tls=tls,
        users=users,
        nodes=tuple(nodes),
        service_name=outputs.service_name,
        access=dict(outputs.access),
        settings=dict(settings or {}),
    )


def pinned_role_info(
    outputs: Outputs,
    tls: TlsPaths,
    role: str,
    password: str,
    settings: dict[str, Any] | None = None,
) -> ConnectionInfo:
    """One role's view of a plan whose host ports it fixes itself (a Pulumi stack)."""
    return build_connection_info(
        outputs, tls, {password_ref(role).name: password}, pinned_host_ports(outputs), settings
    )


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        check_private_file(path)
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError.single(
            str(path), "<file>", "does not exist", f"run `redis-infra up` first, or pass {what}"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ConfigError.single(
            str(path), "<file>", f"is not valid JSON ({exc})", f"pass {what}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError.single(str(path), "<file>", "must hold a JSON object", f"pass {what}")
    return data


def read_connection_file(
    path: Path, *, operator_file: Path | None = None, breakglass_file: Path | None = None
) -> ConnectionInfo:
    """Load an application connection file, plus operator / break-glass credentials."""
    what = "the file `redis-infra up` wrote"
    data = _read_json(path, what)
    try:
        info = ConnectionInfo(
            name=data["name"],
            topology=data["topology"],
            network=data["network"],
            tls=_tls_beside(path, TlsPaths(**data["tls"])),
            users={role: Credentials(**creds) for role, creds in data["users"].items()},
            nodes=tuple(NodeAddress(**node) for node in data["nodes"]),
            service_name=(data.get("sentinel") or {}).get("service_name"),
            access=dict(data.get("access") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError.single(
            str(path), "<file>", f"is not a redis-infra connection file ({exc})", f"pass {what}"
        ) from exc
    for extra in (operator_file, breakglass_file):
        if extra is not None:
            info = _with_role_file(info, extra)
    return info


def _tls_beside(path: Path, tls: TlsPaths) -> TlsPaths:
    """TLS files named relative to the connection file (a Pulumi stack's) are beside it."""

    def resolved(value: str) -> str:
        return value if Path(value).is_absolute() else str((path.parent / value).resolve())

    return TlsPaths(
        resolved(tls.ca_file),
        resolved(tls.cert_file) if tls.cert_file else None,
        resolved(tls.key_file) if tls.key_file else None,
    )


def _with_role_file(info: ConnectionInfo, path: Path) -> ConnectionInfo:
    data = _read_json(path, "the operator file `redis-infra up` wrote next to connection.json")
    try:
        if data["name"] != info.name:
            raise ValueError(f"it belongs to deployment {data['name']}, not {info.name}")
        users = {role: Credentials(**creds) for role, creds in data["users"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError.single(
            str(path),
            "<file>",
            f"is not a redis-infra credentials file ({exc})",
            "pass the operator.json (or breakglass.json) of this deployment",
        ) from exc
    return info.with_users(users, dict(data.get("settings") or {}))
