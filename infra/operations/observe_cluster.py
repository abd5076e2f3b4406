"""Read a Redis Cluster's state from the host: slots, shards and links as every node
sees them. Used by `up` (readiness), `scale`, the drills and the tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from infra.core.connection import ConnectionInfo
from infra.operations.client import admin_probe
from infra.operations.polling import until_healthy

SLOTS = 16384


@dataclass(frozen=True)
class ClusterPeer:
    """One line of CLUSTER NODES."""

    node_id: str
    address: str  # the announced IP
    flags: frozenset[str]
    master_id: str | None
    connected: bool
    slots: int  # how many slots it serves

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "noaddr", "handshake"})


def parse_cluster_nodes(text: str) -> list[ClusterPeer]:
    peers = []
    for line in text.strip().splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@")[0].rsplit(":", 1)[0]
        slots = 0
        for item in fields[8:]:
            if item.startswith("["):  # a slot being migrated or imported
                continue
            low, _, high = item.partition("-")
            slots += (int(high) if high else int(low)) - int(low) + 1
        peers.append(
            ClusterPeer(
                node_id=fields[0],
                address=address,
                flags=frozenset(fields[2].split(",")) - {"myself"},
                master_id=None if fields[3] == "-" else fields[3],
                connected=fields[7] == "connected",
                slots=slots,
            )
        )
    return peers


@dataclass
class ClusterState:
    info: dict[str, dict[str, str] | None] = field(default_factory=dict)  # CLUSTER INFO
    peers: dict[str, list[ClusterPeer] | None] = field(default_factory=dict)  # CLUSTER NODES
    myid: dict[str, str] = field(default_factory=dict)
    link_up: dict[str, bool] = field(default_factory=dict)  # replicas: master_link_status

    def masters(self, info: ConnectionInfo) -> list[str]:
        """Names of the nodes that serve slots, as the first reachable node sees it."""
        for view in self.peers.values():
            if view is not None:
                return sorted(
                    info.node_name(peer.address) or peer.address
                    for peer in view
                    if peer.is_master and peer.slots > 0
                )
        return []

    def master_of_slot_owner(self, info: ConnectionInfo, node: str) -> str | None:
        """The master `node` replicates from (its own name if it is a master)."""
        view = self.peers.get(node)
        if not view:
            return None
        me = next((peer for peer in view if peer.node_id == self.myid.get(node)), None)
        if me is None:
            return None
        if me.is_master:
            return node
        master = next((peer for peer in view if peer.node_id == me.master_id), None)
        return info.node_name(master.address) if master else None


def cluster_state(info: ConnectionInfo) -> ClusterState:
    state = ClusterState()
    for node in info.data_nodes():
        client = admin_probe(info, node.name)
        try:
            raw_info = client.execute_command("CLUSTER", "INFO")
            state.info[node.name] = dict(
                line.split(":", 1) for line in str(raw_info).split() if ":" in line
            )
            state.peers[node.name] = parse_cluster_nodes(
                str(client.execute_command("CLUSTER", "NODES"))
            )
            state.myid[node.name] = str(client.execute_command("CLUSTER", "MYID"))
            replication = client.info("replication")
            state.link_up[node.name] = replication.get("master_link_status") == "up"
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            state.info[node.name] = None
            state.peers[node.name] = None
        finally:
            client.close()
    return state


def cluster_problems(info: ConnectionInfo, state: ClusterState) -> list[str]:
    """Why the cluster is not (yet) serving every slot with every shard complete."""
    problems: list[str] = []
    data = info.data_nodes()
    shards = {node.shard for node in data}
    replicas_per_master = len(data) // max(len(shards), 1) - 1
    for node in data:
        cluster_info = state.info.get(node.name)
        view = state.peers.get(node.name)
        if cluster_info is None or view is None:
            problems.append(f"{node.name} is unreachable")
            continue
        if cluster_info.get("cluster_state") != "ok":
            problems.append(f"{node.name}: cluster_state {cluster_info.get('cluster_state')}")
        if cluster_info.get("cluster_slots_ok") != str(SLOTS):
            problems.append(
                f"{node.name}: {cluster_info.get('cluster_slots_ok')} of {SLOTS} slots ok"
            )
        if cluster_info.get("cluster_known_nodes") != str(len(data)):
            problems.append(
                f"{node.name} knows {cluster_info.get('cluster_known_nodes')} of {len(data)} nodes"
            )
        masters = [peer for peer in view if peer.is_master and peer.slots > 0]
        if len(masters) != len(shards):
            problems.append(
                f"{node.name} sees {len(masters)} masters serving slots, not {len(shards)}"
            )
        for master in masters:
            replicas = [p for p in view if p.master_id == master.node_id and not p.failing]
            if len(replicas) != replicas_per_master:
                name = info.node_name(master.address) or master.address
                problems.append(f"{node.name} sees {len(replicas)} healthy replicas of {name}")
        failing = [info.node_name(p.address) or p.address for p in view if p.failing]
        if failing:
            problems.append(f"{node.name} flags as failing: {failing}")
        me = next((peer for peer in view if peer.node_id == state.myid.get(node.name)), None)
        if me is not None and not me.is_master and not state.link_up.get(node.name):
            problems.append(f"{node.name}: replication link down")
    return problems


def wait_cluster_ready(
    info: ConnectionInfo,
    timeout_s: float,
    alive: Callable[[], None] | None = None,
    poll_s: float = 0.2,
) -> ClusterState:
    """Until every node reports the whole cluster healthy; the final state."""
    return until_healthy(
        lambda: cluster_state(info),
        lambda state: cluster_problems(info, state),
        timeout_s,
        f"cluster {info.name}",
        alive,
        poll_s,
    )
