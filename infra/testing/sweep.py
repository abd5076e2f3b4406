"""Cleanup without Ryuk: every resource a test deployment makes carries its owner (host,
process id and process start time), and a sweep removes whatever belongs to an owner
that is gone, such as a test run killed before it could clean up.

Ryuk (testcontainers' reaper) is an image from a registry; where none is reachable it
cannot run, and a killed run would leak containers until someone noticed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

import docker
import docker.errors

from infra.backends.docker_engine import remove_network
from infra.core.plan_specs import LABEL_NAME

OWNER_LABEL = "redis-infra.test-owner"  # "<host>:<pid>:<start time>"
STATE_PREFIX = "redis-infra-tc-"  # the private temporary folder of each deployment
OWNER_FILE = "owner"  # in that folder: the owner label


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name may hold spaces


def owner_label(pid: int | None = None) -> str:
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '?'}"


def owner_gone(label: str) -> bool:
    """True only for an owner on this host whose process surely no longer runs."""
    host, _, rest = label.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine's (a shared engine): not ours to judge
    pid = int(pid_text)
    if started == "?":  # no /proc where it ran: only a missing process is surely gone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return _start_time(pid) != started


def private_home() -> Path:
    """A private temporary folder for one deployment's secrets, marked with its owner so
    a sweep can remove it even if the run died before making any container."""
    home = Path(tempfile.mkdtemp(prefix=STATE_PREFIX))
    (home / OWNER_FILE).write_text(owner_label())
    return home


def remove_deployment(client: docker.DockerClient, name: str) -> None:
    """Every container, network and volume labelled with deployment `name`."""
    selector: dict[str, str | list[str] | bool] = {"label": f"{LABEL_NAME}={name}"}
    for container in client.containers.list(all=True, filters=selector):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    for network in client.networks.list(filters=selector):
        remove_network(client, str(network.id))
    for volume in client.volumes.list(filters=selector):
        with contextlib.suppress(docker.errors.NotFound):
            volume.remove(force=True)


def sweep(client: docker.DockerClient) -> list[str]:
    """Remove every test deployment whose owning process is gone; their names."""
    selector: dict[str, str | list[str] | bool] = {"label": OWNER_LABEL}
    owners: dict[str, str] = {}  # deployment name -> owner
    resources = [
        *client.containers.list(all=True, filters=selector),
        *client.networks.list(filters=selector),
        *client.volumes.list(filters=selector),
    ]
    for resource in resources:
        labels = resource.attrs.get("Labels") or resource.attrs.get("Config", {}).get("Labels")
        labels = labels or {}
        name, owner = labels.get(LABEL_NAME), labels.get(OWNER_LABEL)
        if name and owner and owner_gone(owner):
            owners[name] = owner
    for name in sorted(owners):
        remove_deployment(client, name)
    for home in Path(tempfile.gettempdir()).glob(f"{STATE_PREFIX}*"):
        # The dead runs' passwords and keys, and nothing else: only folders that name
        # a gone owner (and are ours to read).
        try:
            owner = (home / OWNER_FILE).read_text().strip()
        except OSError:
            continue
        if owner_gone(owner):
            shutil.rmtree(home, ignore_errors=True)
    return sorted(owners)
