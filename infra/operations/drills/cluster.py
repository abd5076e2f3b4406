"""Cluster drills: faults on the master that serves the drill's slot, or on every node.

All drill writes share one hash tag, so they live in one slot of one shard: the
victim is that shard's master, and outage and loss are measured for exactly the
data the fault hits (other shards keep serving, as the report's notes say).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

import redis
from infra.core.connection import ConnectionInfo
from infra.core.errors import DeploymentError
from infra.operations.client import AddressMap, cluster_client, no_retry
from infra.operations.drills.base import Drill, Reader, Scenario
from infra.operations.drills.report import DrillReport
from infra.operations.drills.writer import NotSentError, SequencedWriter
from infra.operations.observe_cluster import ClusterState, wait_cluster_ready

SCENARIOS = ("kill-master", "pause-master", "partition-master", "restart-node", "restart-all")
SPREAD_KEYS = 10_000  # keys over every slot, checked after restart-all


class ClusterTarget:
    """Writes through a cluster client, attributing each acknowledgement to its node."""

    def __init__(self, client: RedisCluster, address_map: AddressMap) -> None:
        self.client = client
        self.address_map = address_map

    def write(self, key: str, value: str) -> str | None:
        try:
            reply = self.client.set(key, value)
        except RedisClusterException as exc:  # no node answered: the write never left
            raise NotSentError(str(exc)) from exc
        if reply is not True:
            raise redis.ResponseError(f"unexpected reply to SET: {reply!r}")
        node = self.client.get_node_from_key(key)
        return self.address_map.node_name((node.host, int(node.port))) if node else None

    def recover(self) -> None:
        # Refresh the slot map; while the cluster is failing over it may not answer.
        with contextlib.suppress(redis.RedisError, RedisClusterException, OSError):
            self.client.nodes_manager.initialize()

    def close(self) -> None:
        self.client.close()


class ClusterDrill(Drill):
    topology = "cluster"

    def __init__(self, info: ConnectionInfo, engine: docker.DockerClient) -> None:
        if info.topology != "cluster":
            raise DeploymentError(f"deployment {info.name} is not a Cluster topology")
        super().__init__(info, engine)
        self.address_map = AddressMap(info)
        self.tag = f"{{drill-{secrets.token_hex(3)}}}"
        self.slot = key_slot(self.tag.encode())
        self._cut_off: str | None = None  # a master cut off from its peers (partition)

    def scenarios(self) -> dict[str, Scenario]:
        return {
            "kill-master": self._kill_master,
            "pause-master": self._pause_master,
            "partition-master": self._partition_master,
            "restart-node": self._restart_node,
            "restart-all": self._restart_all,
        }

    def prefix(self) -> str:
        return self.tag

    def configuration(self) -> dict[str, Any]:
        # As deployed: no day-to-day user may CONFIG GET or CONFIG SET them.
        settings = self.deployed("cluster")
        shards = {node.shard for node in self.info.data_nodes()}
        return {
            "node_timeout_ms": int(settings["node_timeout_ms"]),
            "replica_validity_factor": int(settings["replica_validity_factor"]),
            "require_full_coverage": bool(settings["require_full_coverage"]),
            "masters": len(shards),
            "replicas_per_master": len(self.info.data_nodes()) // len(shards) - 1,
            "drill_slot": self.slot,
        }

    def target(self) -> ClusterTarget:
        return ClusterTarget(
            cluster_client(self.info, socket_timeout=0.5, retry=no_retry()), self.address_map
        )

    def failover_window_s(self) -> float:
        return float(self.configured["node_timeout_ms"]) / 1000 * 4 + 15

    def owner(self, avoid: str | None = None) -> str | None:
        """The master serving the drill's slot, as the first reachable node (other than
        `avoid`, which may be the one cut off) reports it."""
        for node in self.info.data_nodes():
            if node.name == avoid:
                continue
            admin = self._admin(node.name)
            try:
                ranges = admin.execute_command("CLUSTER", "SLOTS")
            except (redis.RedisError, OSError):
                continue
            finally:
                admin.close()
            for entry in ranges:
                if int(entry[0]) <= self.slot <= int(entry[1]):
                    return self.info.node_name(str(entry[2][0]))
        return None

    def victim(self, writer: SequencedWriter) -> str:
        owner = self.owner()
        if owner is None:
            raise DeploymentError(f"no node of {self.info.name} serves slot {self.slot}")
        return owner

    def master_now(self, writer: SequencedWriter) -> str | None:
        return self.owner(avoid=self._cut_off)

    def wait_converged(self, timeout_s: float) -> tuple[str, dict[str, str]]:
        state = wait_cluster_ready(self.info, timeout_s)
        owner = self.owner()
        assert owner is not None
        return owner, self._roles(state)

    def _roles(self, state: ClusterState) -> dict[str, str]:
        roles = {}
        for node in self.info.data_nodes():
            master = state.master_of_slot_owner(self.info, node.name)
            roles[node.name] = "master" if master == node.name else "replica"
        return roles

    def reader(self) -> tuple[Reader, Callable[[Sequence[str]], None], Callable[[], None]]:
        client = cluster_client(self.info, socket_timeout=5.0)

        def delete(keys: Sequence[str]) -> None:
            client.unlink(*keys)

        return (lambda keys: list(client.mget(list(keys))), delete, client.close)

    # -- scenarios ------------------------------------------------------------------------

    def _kill_master(self, report: DrillReport, writer: SequencedWriter, victim: str) -> None:
        self.fail_over(report, writer, victim, self.faults.kill, self.faults.start)

    def _pause_master(self, report: DrillReport, writer: SequencedWriter, victim: str) -> None:
        self.fail_over(report, writer, victim, self.faults.pause, self.faults.unpause)

    def _partition_master(self, report: DrillReport, writer: SequencedWriter, victim: str) -> None:
        self._cut_off = victim

        def heal(node: str) -> None:
            self.faults.heal(node, node)
            self._cut_off = None

        self.fail_over(report, writer, victim, self.faults.partition, heal)
        report.notes.append(
            "partition: the cut-off master stays reachable from this host; it refuses "
            "writes (CLUSTERDOWN) once it has missed the majority for node-timeout"
        )

    def _restart_node(self, report: DrillReport, writer: SequencedWriter, victim: str) -> None:
        report.fault_at_s = writer.now()
        started = time.monotonic()
        self.faults.restart(victim)
        report.details["restart_s"] = round(time.monotonic() - started, 3)
        deadline = time.monotonic() + self.failover_window_s()
        while time.monotonic() < deadline:
            master = self.owner()
            if master and self.wait_writes_on(writer, master, 1.0):
                report.details["writes_resumed_on"] = master
                return
        report.notes.append("writes did not resume within the failover window")

    def _restart_all(self, report: DrillReport, writer: SequencedWriter, victim: str) -> None:
        seed = cluster_client(self.info, socket_timeout=5.0)
        keys = [f"restart-all:{secrets.token_hex(2)}:{i}" for i in range(SPREAD_KEYS)]
        try:
            for start in range(0, len(keys), 500):
                pipe = seed.pipeline()
                for key in keys[start : start + 500]:
                    pipe.set(key, key)
                pipe.execute()
            identities = self._identities()
            report.fault_at_s = writer.now()
            started = time.monotonic()
            containers = [node.container for node in self.info.data_nodes()]
            with ThreadPoolExecutor(len(containers)) as pool:
                list(pool.map(self.faults.restart, containers))
            state = wait_cluster_ready(self.info, 120)
            report.details["recovery_s"] = round(time.monotonic() - started, 3)
            master = self.owner()
            if master and self.wait_writes_on(writer, master, 30):
                report.details["writes_resumed_s"] = round(writer.now() - report.fault_at_s, 3)
            report.details["identities_kept"] = self._identities() == identities
            report.details["node_ids"] = len(set(state.myid.values()))
            reader = cluster_client(self.info, socket_timeout=5.0)
            try:
                missing = sum(1 for key in keys if reader.get(key) != key.encode())
            finally:
                reader.close()
            report.details["spread_keys_checked"] = len(keys)
            report.details["spread_keys_missing"] = missing
        finally:
            try:
                for start in range(0, len(keys), 500):
                    pipe = seed.pipeline()
                    for key in keys[start : start + 500]:
                        pipe.unlink(key)
                    pipe.execute()
            except (redis.RedisError, OSError):
                pass
            seed.close()

    def _identities(self) -> dict[str, str]:
        ids = {}
        for node in self.info.data_nodes():
            admin = self._admin(node.name)
            try:
                ids[node.name] = str(admin.execute_command("CLUSTER", "MYID"))
            finally:
                admin.close()
        return ids
