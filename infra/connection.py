"""The connection file: everything a client on the host needs, as JSON (mode 0600)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import ConfigError
from infra.plan import Outputs
from infra.state import write_private_json


@dataclass(frozen=True)
class TlsPaths:
    ca_file: str
    cert_file: str
    key_file: str


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


@dataclass(frozen=True)
class ConnectionInfo:
    name: str
    topology: str
    network: str
    tls: TlsPaths
    users: dict[str, Credentials]  # "app", "admin"
    nodes: tuple[NodeAddress, ...]
    service_name: str | None = None  # Sentinel kind

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

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "topology": self.topology,
            "network": self.network,
            "tls": self.tls.__dict__,
            "users": {role: creds.__dict__ for role, creds in self.users.items()},
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
            }
        if self.topology == "cluster":
            data["cluster"] = {
                "startup_nodes": [
                    {"host": n.host, "port": n.port, "internal": n.internal}
                    for n in self.data_nodes()
                ],
            }
        return data

    def write(self, path: Path) -> None:
        write_private_json(path, self.to_json())


def build_connection_info(
    outputs: Outputs,
    tls: TlsPaths,
    passwords: dict[str, str],
    host_ports: dict[str, int],
) -> ConnectionInfo:
    users = {
        role: Credentials(outputs.users[role], passwords[f"{role}_password"])
        for role in ("app", "admin")
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
    )


def read_connection_file(path: Path) -> ConnectionInfo:
    """Load a connection file written by `redis-infra up`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ConnectionInfo(
            name=data["name"],
            topology=data["topology"],
            network=data["network"],
            tls=TlsPaths(**data["tls"]),
            users={role: Credentials(**creds) for role, creds in data["users"].items()},
            nodes=tuple(NodeAddress(**node) for node in data["nodes"]),
            service_name=(data.get("sentinel") or {}).get("service_name"),
        )
    except FileNotFoundError as exc:
        raise ConfigError.single(
            str(path),
            "<file>",
            "does not exist",
            "run `redis-infra up` first, or pass the file it wrote",
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError.single(
            str(path),
            "<file>",
            f"is not a redis-infra connection file ({exc})",
            "pass the file `redis-infra up` wrote",
        ) from exc
