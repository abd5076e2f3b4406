"""The three topologies as testcontainers-style deployments (see `deployment.py`)."""

from __future__ import annotations

from typing import Any

from redis.cluster import RedisCluster
from redis.crc import key_slot

import redis
from infra.core.connection import ConnectionInfo
from infra.core.errors import DeploymentError
from infra.operations.client import admin_probe, cluster_client, connect, no_retry, node_client
from infra.operations.drills.report import DrillReport, WriteOutcome, write_outcome
from infra.operations.drills.sentinel import SentinelDrill
from infra.operations.drills.writer import WriteLog, WriteTarget
from infra.testing.deployment import RedisDeployment


class SingleDeployment(RedisDeployment):
    """One hardened node: TLS, ACL users, AOF persistence."""

    kind = "single"

    def client(self, role: str = "app", **options: Any) -> redis.Redis:
        return connect(self.info, role=role, **options)

    def _target(self) -> WriteTarget:
        return _NodeTarget(self.info, self.master())

    def lost_writes(self, log: WriteLog, fault_at_s: float = 0.0) -> WriteOutcome:
        client = self.client(socket_timeout=5.0)
        try:
            return write_outcome(log, lambda keys: list(client.mget(list(keys))), fault_at_s)
        finally:
            client.close()

    def drill(self, scenario: str) -> DrillReport:
        raise DeploymentError("a single node has no failover to drill; use kill/restart")


class SentinelDeployment(RedisDeployment):
    """A master, replicas and sentinels that promote a replica when the master fails."""

    kind = "sentinel"

    def client(self, role: str = "app", **options: Any) -> redis.Redis:
        """Follows the master through the sentinels (address-mapped to loopback)."""
        return connect(self.info, role=role, **options)

    def masters(self) -> list[str]:
        """The master every sentinel names (they must agree)."""
        return [self._sentinels().current_master()]

    def _master_now(self, avoid: str) -> str | None:
        """The master every reachable sentinel names, and holds in the entry clients
        read: sentinels switch one by one, and a client asking one that has not switched
        yet (or the leader, until its failover ends) would still be sent to the old."""
        sentinels = self._sentinels()
        named = sentinels.current_master()
        held = {master for master in sentinels.client_masters().values() if master}
        return named if held == {named} else None

    def _sentinels(self) -> SentinelDrill:
        return SentinelDrill(self.info, self._engine())


class ClusterDeployment(RedisDeployment):
    """Shards of a master and replicas each, formed into a Redis Cluster."""

    kind = "cluster"

    def client(self, role: str = "app", **options: Any) -> RedisCluster:
        """Cluster-aware, announced hostnames mapped to the published loopback ports."""
        return cluster_client(self.info, role=role, **options)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A slot of each master, as last seen: after a fault, which slot to watch.
        self._a_slot_of: dict[str, int] = {}
        self._watched = 0  # the slot wait_for_new_master follows

    def masters(self) -> list[str]:
        """The masters serving slots now (each one's slots remembered for
        wait_for_new_master)."""
        owners = self._slot_owners(avoid=None)
        return sorted({owner for _, _, owner in owners})

    def master(self, key: str | None = None) -> str:
        """The master serving `key` now (default: the first master)."""
        if key is None:
            return self.masters()[0]
        found = self._owner_of(key_slot(key.encode()), avoid=None)
        if found is None:
            raise DeploymentError(f"no node of {self.name} serves {key!r}")
        return found

    def _slot_owners(self, avoid: str | None) -> list[tuple[int, int, str]]:
        """(first slot, last slot, master) as the first reachable node but `avoid` says."""
        for node in self.info.data_nodes():
            if node.name == avoid:
                continue
            admin = admin_probe(self.info, node.name, timeout_s=0.5)  # a hung node fails fast
            try:
                ranges: Any = admin.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
            except (redis.RedisError, OSError):
                continue
            finally:
                admin.close()
            owners = [
                (int(entry[0]), int(entry[1]), self.info.node_name(str(entry[2][0])) or "?")
                for entry in ranges
            ]
            for first, _, owner in owners:
                self._a_slot_of[owner] = first
            return owners
        return []

    def _owner_of(self, slot: int, avoid: str | None) -> str | None:
        for first, last, owner in self._slot_owners(avoid):
            if first <= slot <= last:
                return owner
        return None

    def wait_for_new_master(self, old: str, timeout_s: float = 30.0) -> str:
        """Until another node serves the slots `old` served. Call master() or masters()
        before the fault: that is when `old`'s slots are seen."""
        if old not in self._a_slot_of:
            raise DeploymentError(
                f"{old} was not seen serving slots: call master() or masters() before the fault"
            )
        self._watched = self._a_slot_of[old]
        return super().wait_for_new_master(old, timeout_s)

    def _master_now(self, avoid: str) -> str | None:
        return self._owner_of(self._watched, avoid=avoid)


class _NodeTarget:
    """Writes to one node; each acknowledgement is that node's."""

    def __init__(self, info: ConnectionInfo, node: str) -> None:
        self.node = node
        self.client = node_client(info, info.node(node), socket_timeout=0.5, retry=no_retry())

    def write(self, key: str, value: str) -> str | None:
        self.client.set(key, value)
        return self.node

    def recover(self) -> None:
        self.client.connection_pool.disconnect()

    def close(self) -> None:
        self.client.close()


KINDS: dict[str, type[RedisDeployment]] = {
    "single": SingleDeployment,
    "sentinel": SentinelDeployment,
    "cluster": ClusterDeployment,
}
