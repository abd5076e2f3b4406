"""What one deployment has on the Docker engine, and how it differs from a plan."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from docker.models.containers import Container

from infra.core.plan_specs import (
    LABEL_NAME,
    LABEL_ROLE,
    LABEL_SPEC,
    LABEL_SUMMARY,
    ContainerSpec,
    JobKind,
    Plan,
)

# On every container *and* volume: kept data volumes still say where their passwords
# and certificates are after `down --keep-data` removed the containers.
LABEL_STATE_DIR = "redis-infra.state-dir"


@dataclass
class Inventory:
    """What exists on the engine for one deployment name."""

    containers: dict[str, Container] = field(default_factory=dict)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    volume_labels: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.containers or self.networks or self.volumes)

    def state_dir(self) -> str | None:
        """Where the deployment's state folder is, as its containers or kept volumes say."""
        labels = [c.labels for c in self.containers.values()] + list(self.volume_labels.values())
        for found in labels:
            value = (found or {}).get(LABEL_STATE_DIR)
            if value:
                return str(value)
        return None


def read_inventory(client: docker.DockerClient, name: str) -> Inventory:
    selector: dict[str, str | list[str] | bool] = {"label": f"{LABEL_NAME}={name}"}
    containers = {
        container.name: container
        for container in client.containers.list(all=True, filters=selector)
        if container.name
    }
    networks = [n.name for n in client.networks.list(filters=selector) if n.name]
    volumes = {
        v.name: dict(v.attrs.get("Labels") or {})
        for v in client.volumes.list(filters=selector)
        if v.name
    }
    return Inventory(containers, networks, list(volumes), volumes)


def used_subnets(client: docker.DockerClient) -> list[ipaddress.IPv4Network]:
    """IPv4 subnets of every Docker network and host route: a new subnet must avoid them."""
    used: list[ipaddress.IPv4Network] = []
    for network in client.networks.list():
        for pool in (network.attrs.get("IPAM") or {}).get("Config") or []:
            with contextlib.suppress(ValueError, KeyError):
                subnet = ipaddress.ip_network(pool["Subnet"])
                if isinstance(subnet, ipaddress.IPv4Network):
                    used.append(subnet)
    return used + host_routes()


def differences(plan: Plan, inventory: Inventory, host_ports: Mapping[str, int]) -> list[str]:
    """What an existing deployment lacks or does differently from `plan`, in words."""
    found: list[str] = []
    for network in plan.networks:
        if network.name not in inventory.networks:
            found.append(f"network {network.name} is missing")
    for volume in plan.volumes:
        if volume.name not in inventory.volumes:
            found.append(f"volume {volume.name} is missing")
    wanted = {spec.name for spec in plan.containers}
    for name, container in inventory.containers.items():
        role = container.labels.get(LABEL_ROLE, "")
        if name not in wanted and role not in {kind.value for kind in JobKind}:
            found.append(f"container {name} exists but is not in the plan (topology shrank?)")
    for spec in plan.containers:
        existing = inventory.containers.get(spec.name)
        if existing is None:
            found.append(f"container {spec.name} is missing")
            continue
        if existing.labels.get(LABEL_SPEC) != spec.labels[LABEL_SPEC]:
            found.extend(_explain_change(spec, existing))
        bound = _host_port(existing, spec)
        if spec.ports and bound is not None and bound != host_ports.get(spec.name):
            found.append(
                f"{spec.name}: published on host port {bound}, "
                f"the deployment's files say {host_ports.get(spec.name)}"
            )
    return found


def nodes_on_other_image(inventory: Inventory, image_id: str) -> list[str]:
    """The deployment's node containers made from another image than `image_id` (the
    one their reference names now): a rebuild or a pull moved the tag since they were
    made, and a container keeps the image it was made from."""
    jobs = {kind.value for kind in JobKind}
    return sorted(
        name
        for name, container in inventory.containers.items()
        if container.labels.get(LABEL_ROLE) not in jobs and container.attrs.get("Image") != image_id
    )


def _host_port(container: Container, spec: ContainerSpec) -> int | None:
    if not spec.ports:
        return None
    bindings = container.attrs["HostConfig"].get("PortBindings") or {}
    entries = bindings.get(f"{spec.ports[0].container_port}/tcp") or []
    return int(entries[0]["HostPort"]) if entries and entries[0].get("HostPort") else None


def _explain_change(spec: ContainerSpec, container: Container) -> list[str]:
    try:
        before: dict[str, Any] = json.loads(container.labels.get(LABEL_SUMMARY, "{}"))
    except json.JSONDecodeError:
        before = {}
    after = spec.summary()
    changes = []
    for key, new in after.items():
        old = before.get(key)
        if key == "files" and isinstance(old, dict) and isinstance(new, dict):
            changed = sorted(path for path in set(old) | set(new) if old.get(path) != new.get(path))
            if changed:
                changes.append(f"{spec.name}: rendered files differ: {', '.join(changed)}")
        elif old != new:
            changes.append(f"{spec.name}: {key} {old!r} -> {new!r}")
    return changes or [f"{spec.name}: container settings differ (healthcheck, mounts or hardening)"]


def host_routes(route_table: Path = Path("/proc/net/route")) -> list[ipaddress.IPv4Network]:
    """The host's IPv4 routes (except the default one): subnets already in use here."""
    routes: list[ipaddress.IPv4Network] = []
    try:
        lines = route_table.read_text().splitlines()[1:]
    except OSError:
        return routes
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        destination, mask = (
            socket.inet_ntoa(struct.pack("<L", int(field, 16))) for field in (fields[1], fields[7])
        )
        if mask != "0.0.0.0":  # noqa: S104 - the default route covers everything; skip it
            routes.append(ipaddress.IPv4Network(f"{destination}/{mask}", strict=False))
    return routes
