"""Faults injected through the Docker engine, each with the action that undoes it."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import docker
import docker.errors

from infra.core.connection import ConnectionInfo
from infra.core.plan_specs import LABEL_ROLE

BLACKHOLE_TABLE = 100  # routing table and rule priority of a partition's blackhole


class Faults:
    """Docker-level faults on the containers of one deployment."""

    def __init__(
        self,
        client: docker.DockerClient,
        network: str,
        fixed_addresses: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.network = network  # the deployment's internal network
        # container -> the address the plan fixed for it: a heal puts the node back there
        # even when another Faults (another process, another call) cut it off.
        self.fixed_addresses = dict(fixed_addresses or {})
        self._endpoints: dict[str, str | None] = {}  # container -> its address, while cut off

    @classmethod
    def of(cls, client: docker.DockerClient, info: ConnectionInfo) -> Faults:
        """The faults of a deployment, knowing the fixed addresses its plan gave the nodes."""
        fixed = {node.container: node.address for node in info.nodes if node.address}
        return cls(client, info.network, fixed)

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
        one way. A blackhole for the subnet, in the node's own network namespace, drops
        them silently, as a real partition does (no reset that would tell the master
        its replicas are gone). It is a policy rule ahead of the main table, not a main
        route: Docker refuses to attach an address whose subnet has a main route, and
        the rule has to outlast the reconnection (see heal).
        """
        found = self.client.containers.get(container)
        endpoint = found.attrs["NetworkSettings"]["Networks"].get(self.network) or {}
        self._endpoints[container] = (endpoint.get("IPAMConfig") or {}).get("IPv4Address")
        subnet = self._subnet()
        self._ip(
            container,
            f"route add blackhole {subnet} table {BLACKHOLE_TABLE}",
            f"rule add to {subnet} lookup {BLACKHOLE_TABLE} priority {BLACKHOLE_TABLE}",
        )
        self.client.networks.get(self.network).disconnect(container)

    def heal(self, container: str, alias: str) -> None:
        """Reconnect the node with its name and its fixed address (peers know it by that),
        then lift the blackhole. In that order: with no route for the subnet at all, the
        node's connection attempts to its peers leave by the publish network's default
        route, from that network's address, and their replies never come back; Redis
        then waits on those half-open attempts (SYN_SENT, TCP's backoff) for up to tens
        of seconds, because its peers' own PINGs keep it from dropping the links."""
        network = self.client.networks.get(self.network)
        network.reload()
        attached = {c.name for c in network.containers}
        if container in attached:
            return  # not cut off
        address = self._endpoints.pop(container, None) or self.fixed_addresses.get(container)
        network.connect(container, aliases=[alias], ipv4_address=address)
        with contextlib.suppress(docker.errors.ContainerError):  # no blackhole to lift
            subnet = self._subnet()
            self._ip(
                container,
                # The flush alone lifts it (an empty table falls through to the main
                # one); then the rule goes (one a partition cut short never added fails
                # here, harmlessly).
                f"route flush table {BLACKHOLE_TABLE}",
                f"rule del to {subnet} lookup {BLACKHOLE_TABLE} priority {BLACKHOLE_TABLE}",
            )

    def _ip(self, container: str, *commands: str) -> None:
        """`ip COMMAND` for each command, in order, until one fails, in the node's network
        namespace, from a helper container with NET_ADMIN alone (the node itself has no
        capabilities)."""
        image = self.client.containers.get(container).attrs["Config"]["Image"]
        self.client.containers.run(
            str(image),
            ["busybox", "sh", "-c", " && ".join(f"busybox ip {c}" for c in commands)],
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
