"""Read a Sentinel group's state from the host: who is master, as every node and every
sentinel sees it. Used by `up` (readiness), the drills and the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from infra.core.connection import ConnectionInfo
from infra.operations.client import admin_probe
from infra.operations.polling import until_healthy


@dataclass(frozen=True)
class NodeRole:
    role: str  # "master" or "slave"
    master: str | None  # the master a replica follows (node name)
    link_up: bool  # replica: master_link_status:up
    replicas_online: int  # master: connected replicas


@dataclass(frozen=True)
class SentinelView:
    master: str | None  # node name the sentinel reports as master
    flags: str
    replicas: int  # replicas it knows
    other_sentinels: int  # peers reached: connected, and its last PING to them answered


@dataclass
class GroupState:
    roles: dict[str, NodeRole | None] = field(default_factory=dict)  # None: unreachable
    views: dict[str, SentinelView | None] = field(default_factory=dict)

    def masters(self) -> list[str]:
        return [name for name, role in self.roles.items() if role and role.role == "master"]

    def agreed_master(self) -> str | None:
        """The master every reachable sentinel names, if they agree."""
        named = {view.master for view in self.views.values() if view is not None}
        return named.pop() if len(named) == 1 else None


def node_role(info: ConnectionInfo, node: str) -> NodeRole | None:
    client = admin_probe(info, node)
    try:
        replication = client.info("replication")
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return None
    finally:
        client.close()
    role = str(replication["role"])
    if role == "master":
        return NodeRole("master", None, False, int(replication.get("connected_slaves", 0)))
    master_host = str(replication.get("master_host"))
    return NodeRole(
        "slave",
        info.node_name(master_host) or master_host,
        replication.get("master_link_status") == "up",
        0,
    )


def sentinel_view(info: ConnectionInfo, sentinel: str, service: str) -> SentinelView | None:
    client = admin_probe(info, sentinel)
    try:
        master = reply_fields(client.execute_command("SENTINEL", "MASTER", service))
        replicas = client.execute_command("SENTINEL", "REPLICAS", service)

        def read_peers() -> list[dict[str, str]]:
            return [
                reply_fields(peer)
                for peer in client.execute_command("SENTINEL", "SENTINELS", service)
            ]

        reached = peers_reached(read_peers, read_peers())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return None
    finally:
        client.close()
    healthy = [
        r for r in map(reply_fields, replicas) if r["flags"] == "slave"
    ]  # no s_down, disconnected
    return SentinelView(
        master=info.node_name(master["ip"]) or master["ip"],  # announced by address
        flags=str(master["flags"]),
        replicas=len(healthy),
        # Not num-other-sentinels: the config seeds the peers, so knowing them proves
        # nothing; a PING answered ("last-ping-sent" 0) needs a link and credentials.
        other_sentinels=reached,
    )


IN_FLIGHT_MS = 300  # a PING younger than this may simply not be answered yet


def peers_reached(
    read: Callable[[], list[dict[str, str]]],
    first: list[dict[str, str]],
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """How many peers a sentinel has reached: connected (flags exactly "sentinel") and
    seen with no PING pending ("last-ping-sent" 0), which only an answer clears.

    Once a second a new PING is pending for a moment (longer on a busy machine), and a
    single read can land then: CI once failed `verify` right after convergence that
    way. A peer whose pending PING is younger than IN_FLIGHT_MS is read again for up
    to that long; only a 0 seen counts, so a peer that never answered (a wrong
    password answers NOAUTH) never counts."""

    def answered(peer: dict[str, str]) -> bool:
        return peer["flags"] == "sentinel" and peer["last-ping-sent"] == "0"

    def in_flight(peer: dict[str, str]) -> bool:
        return peer["flags"] == "sentinel" and 0 < int(peer["last-ping-sent"]) < IN_FLIGHT_MS

    reached = {peer["name"] for peer in first if answered(peer)}
    waiting = {peer["name"] for peer in first if in_flight(peer)}
    for _ in range(IN_FLIGHT_MS // 20):
        if not waiting:
            break
        sleep(0.02)
        for peer in read():
            if peer["name"] in waiting and (answered(peer) or not in_flight(peer)):
                waiting.discard(peer["name"])
                if answered(peer):
                    reached.add(peer["name"])
    return len(reached)


def reply_fields(reply: object) -> dict[str, str]:
    """A Sentinel reply as a mapping, whether RESP2 (flat list) or RESP3 (map)."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    assert isinstance(reply, list)
    return {str(k): str(v) for k, v in zip(reply[::2], reply[1::2], strict=True)}


def group_state(info: ConnectionInfo) -> GroupState:
    assert info.service_name is not None
    state = GroupState()
    for node in info.data_nodes():
        state.roles[node.name] = node_role(info, node.name)
    for sentinel in info.sentinels():
        state.views[sentinel.name] = sentinel_view(info, sentinel.name, info.service_name)
    return state


def convergence_problems(info: ConnectionInfo, state: GroupState) -> list[str]:
    """Why the group is not (yet) one master with every replica and sentinel behind it."""
    problems: list[str] = []
    data_nodes = [node.name for node in info.data_nodes()]
    sentinels = [node.name for node in info.sentinels()]
    masters = state.masters()
    if len(masters) != 1:
        problems.append(f"{len(masters)} data nodes report role master: {masters}")
    master = state.agreed_master()
    if master is None:
        views = {name: view.master if view else None for name, view in state.views.items()}
        problems.append(f"sentinels do not agree on the master: {views}")
    elif masters and master != masters[0]:
        problems.append(f"sentinels name {master}, but {masters[0]} reports role master")
    for name in data_nodes:
        role = state.roles.get(name)
        if role is None:
            problems.append(f"{name} is unreachable")
        elif role.role == "slave" and (role.master != master or not role.link_up):
            problems.append(
                f"{name} follows {role.master} (link {'up' if role.link_up else 'down'})"
            )
    for name in sentinels:
        view = state.views.get(name)
        if view is None:
            problems.append(f"sentinel {name} is unreachable")
            continue
        if view.flags != "master":
            problems.append(f"sentinel {name} flags the master {view.flags}")
        if view.replicas != len(data_nodes) - 1:
            problems.append(
                f"sentinel {name} sees {view.replicas} healthy replicas, not {len(data_nodes) - 1}"
            )
        if view.other_sentinels != len(sentinels) - 1:
            problems.append(
                f"sentinel {name} reached {view.other_sentinels} of {len(sentinels) - 1} "
                "other sentinels (connected, PING answered)"
            )
    return problems


def wait_converged(
    info: ConnectionInfo,
    timeout_s: float,
    alive: Callable[[], None] | None = None,
    poll_s: float = 0.2,
) -> GroupState:
    """Until exactly one master is seen by every node and sentinel; the final state."""
    return until_healthy(
        lambda: group_state(info),
        lambda state: convergence_problems(info, state),
        timeout_s,
        f"Sentinel group {info.name}",
        alive,
        poll_s,
    )
