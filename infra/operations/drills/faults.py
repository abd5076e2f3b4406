"""Faults injected through the Docker engine, each with the action that undoes it."""

from __future__ import annotations

import contextlib

import docker
import docker.errors

from infra.core.plan_specs import LABEL_ROLE


class Faults:
    """Docker-level faults on the containers of one deployment."""

    def __init__(self, client: docker.DockerClient, network: str) -> None:
        self.client = client
        self.network = network  # the deployment's internal network
        self._endpoints: dict[str, str | None] = {}  # container -> fixed address, while cut off

    def kill(self, container: str) -> None:
        """SIGKILL: the process dies at once (no AOF flush beyond what the kernel holds)."""
        self.client.containers.get(container).kill(signal="SIGKILL")

    def start(self, container: str) -> None:
        found = self.client.containers.get(container)
        found.reload()
        if found.status != "running":
            found.start()

    def pause(self, container: str) -> None:
        """Freeze every process (a hung Redis): connections stay open, nothing answers."""
        self.client.containers.get(container).pause()

    def unpause(self, container: str) -> None:
        found = self.client.containers.get(container)
        found.reload()
        if found.status == "paused":
            found.unpause()

    def restart(self, container: str, grace_s: int = 30) -> None:
        """SIGTERM, a clean shutdown, and a start."""
        self.client.containers.get(container).restart(timeout=grace_s)

    def partition(self, container: str) -> None:
        """Cut the node off the deployment's network; its published port still answers.

        Disconnecting is not enough on its own: the node's established connections keep
        its old address, and the host forwards their packets from the publish network
        into the internal subnet, so a "partitioned" master would go on replicating
        one way. A blackhole route for the subnet, in the node's own network namespace,
        drops them silently, as a real partition does (no reset that would tell the
        master its replicas are gone). It is added first, behind the interface's own
        route (higher metric), so it takes over the instant the interface goes.
        """
        found = self.client.containers.get(container)
        endpoint = found.attrs["NetworkSettings"]["Networks"].get(self.network) or {}
        self._endpoints[container] = (endpoint.get("IPAMConfig") or {}).get("IPv4Address")
        self._route(container, "add")
        self.client.networks.get(self.network).disconnect(container)

    def heal(self, container: str, alias: str) -> None:
        """Reconnect the node with its name and its fixed address (peers know it by that)."""
        network = self.client.networks.get(self.network)
        network.reload()
        attached = {c.name for c in network.containers}
        if container not in attached:
            # Docker refuses to attach an address whose subnet has a route already.
            with contextlib.suppress(docker.errors.ContainerError):
                self._route(container, "del")
            address = self._endpoints.pop(container, None)
            network.connect(container, aliases=[alias], ipv4_address=address)

    def _route(self, container: str, action: str) -> None:
        """Add or delete the blackhole route, from a helper sharing the node's netns."""
        image = self.client.containers.get(container).attrs["Config"]["Image"]
        self.client.containers.run(
            str(image),
            ["busybox", "ip", "route", action, "blackhole", self._subnet(), "metric", "1000"],
            network_mode=f"container:{container}",
            cap_add=["NET_ADMIN"],
            cap_drop=["ALL"],
            user="0:0",
            remove=True,
            labels={LABEL_ROLE: "drill-helper"},
        )

    def _subnet(self) -> str:
        config = self.client.networks.get(self.network).attrs["IPAM"]["Config"]
        return str(config[0]["Subnet"])

    def restore(self, container: str, alias: str) -> None:
        """Undo whatever fault the container is in: unpause, reconnect, start."""
        with contextlib.suppress(docker.errors.APIError):
            self.unpause(container)
        with contextlib.suppress(docker.errors.APIError):
            self.heal(container, alias)
        with contextlib.suppress(docker.errors.APIError):
            self.start(container)
