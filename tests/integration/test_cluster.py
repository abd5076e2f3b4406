"""The Cluster topology: bootstrap, clients through MOVED, drills and scale-out.

The cluster runs with cluster-node-timeout 1000 ms (the failover target's setting).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

import redis
from infra.operations.client import cluster_client, no_retry, node_client
from infra.operations.deploy import up
from infra.operations.drills.cluster import ClusterDrill
from infra.operations.function_library import nodes_lacking_library
from infra.operations.observe_cluster import cluster_problems, cluster_state
from infra.operations.pinned_tls import PinnedTLSConnection
from infra.operations.scale import scale_cluster
from infra.operations.verify import verify
from infra.testing import ClusterDeployment
from infra.testing.plugin import redis_client_factory, redis_deployment_factory
from tests.integration.other_clients import assert_seed_operations_work

NODE_TIMEOUT_MS = 1000
FAILOVER_BOUND_S = NODE_TIMEOUT_MS / 1000 * 4 + 6
SCALE_KEYS = 20_000


# Through the redis-infra plugin's factory, as an application's suite would declare it;
# for this module only (the scale-out test grows it to four shards).
cluster = redis_deployment_factory(
    "cluster", settings={"cluster.node_timeout_ms": NODE_TIMEOUT_MS}, scope="module"
)

cluster_app = redis_client_factory("cluster")  # the application's client of it, per test


def _healthy(cluster: ClusterDeployment) -> None:
    assert cluster_problems(cluster.info, cluster_state(cluster.info)) == []


def _drill(cluster: ClusterDeployment, scenario: str) -> dict[str, Any]:
    report = ClusterDrill(cluster.info, cluster.engine).run(scenario).to_json()
    assert report["converged"], report["notes"]
    _healthy(cluster)
    return report


def _still_secure(cluster: ClusterDeployment) -> None:
    failed = [check for check in verify(cluster.info) if not check.passed]
    assert failed == [], failed


def test_up_returns_a_formed_cluster(cluster: ClusterDeployment) -> None:
    _healthy(cluster)
    state = cluster_state(cluster.info)
    assert len(state.masters(cluster.info)) == 3
    # The plan's shards hold: each replica follows the master of its own shard.
    for node in cluster.info.data_nodes():
        master = state.master_of_slot_owner(cluster.info, node.name)
        shard_master = next(n for n in cluster.info.data_nodes() if n.shard == node.shard).name
        assert master == shard_master, node.name
    # The fixtures' create job left the library to the host: on every node, replicas too.
    assert nodes_lacking_library(cluster.info) == []


def _keys_per_master(cluster: ClusterDeployment) -> dict[str, int]:
    counts = {}
    for master in cluster.masters():
        admin = node_client(cluster.info, cluster.info.node(master), role="admin")
        counts[master] = int(admin.dbsize())
        admin.close()
    return counts


def test_a_fixture_client_is_the_application_and_a_reset_empties_every_shard(
    cluster_app: redis.RedisCluster, cluster: ClusterDeployment
) -> None:
    """The factory's client follows the slots as the `app` user (an operator's command is
    refused); the reset the client fixture runs after each test flushes every master,
    not one shard."""
    for i in range(60):
        cluster_app.set(f"app:reset:{i}", i)
    assert cluster_app.get("app:reset:59") == b"59"
    with pytest.raises(redis.exceptions.NoPermissionError):
        cluster_app.dbsize()  # the operator's (admin) may; the application may not
    counts = _keys_per_master(cluster)
    assert len(counts) >= 3 and all(count > 0 for count in counts.values()), counts
    cluster.reset()
    assert set(_keys_per_master(cluster).values()) == {0}


def test_slot_coverage_by_redis_cli_check(cluster: ClusterDeployment) -> None:
    first = cluster.info.data_nodes()[0]
    assert first.address is not None
    check = cluster.container(first.name).exec_run(
        [
            "sh",
            "-c",
            'REDISCLI_AUTH="$1" redis-cli --tls --cacert /etc/redis-infra/tls/ca.crt '
            "--cert /etc/redis-infra/tls/server.crt --key /etc/redis-infra/tls/server.key "
            '--user admin --no-auth-warning --cluster check "$2:6379"',
            "sh",
            cluster.info.credentials("admin").password,
            first.address,
        ],
    )
    assert isinstance(check.output, bytes)
    output = check.output.decode()
    assert check.exit_code == 0, output
    assert "[OK] All 16384 slots covered." in output


def test_bootstrap_is_idempotent(cluster: ClusterDeployment) -> None:
    ids = cluster_state(cluster.info).myid
    assert cluster.topology is not None and cluster.engine is not None
    again = up(cluster.topology, cluster.engine, connection_file=cluster.connection_file)
    assert not again.created
    assert cluster_state(cluster.info).myid == ids


def test_every_node_and_the_bus_enforce_tls_and_acls(cluster: ClusterDeployment) -> None:
    _still_secure(cluster)
    node = cluster.info.data_nodes()[0]
    glass = node_client(cluster.info, node, role="breakglass", decode_responses=True)
    assert glass.config_get("tls-cluster") == {"tls-cluster": "yes"}
    assert glass.config_get("tls-replication") == {"tls-replication": "yes"}
    # The cluster bus (port + 10000, on the internal network only) speaks TLS alone: a
    # plaintext peer is dropped, a peer with a certificate from the CA gets a handshake.
    assert node.address is not None
    bus = (node.address, 16379)
    with socket.create_connection(bus, timeout=5) as plain:
        plain.sendall(b"RCmb" + b"\0" * 60)
        plain.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert plain.recv(64) == b""
    context = ssl.create_default_context(cafile=cluster.info.tls.ca_file)
    context.check_hostname = False  # the bus is reached by address
    # Only a node's certificate opens it (clients of a cluster hold none: see
    # test_compromised_application); node-1's, as a peer would present it.
    tls_dir = Path(cluster.info.tls.ca_file).parent / "nodes"
    peer_name = cluster.info.data_nodes()[1].name
    context.load_cert_chain(tls_dir / f"{peer_name}.crt", tls_dir / f"{peer_name}.key")
    with socket.create_connection(bus, timeout=5) as raw, context.wrap_socket(raw) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        peer: Any = tls.getpeercert()
        assert ("commonName", node.name) in [field for rdn in peer["subject"] for field in rdn]


def test_client_follows_moved_from_the_host(cluster: ClusterDeployment) -> None:
    client = cluster_client(cluster.info, retry=no_retry())
    for i in range(300):  # keys over many slots, so over every shard
        assert client.set(f"moved:{i}", i)
    assert all(client.get(f"moved:{i}") == str(i).encode() for i in range(300))
    # A node asked for a key it does not own answers MOVED with a name on the network.
    key = "moved:0"
    owner = client.get_node_from_key(key)
    other = next(
        n for n in cluster.info.data_nodes() if (n.host, n.port) != (owner.host, int(owner.port))
    )
    with pytest.raises(redis.exceptions.MovedError) as moved:
        node_client(cluster.info, other, retry=no_retry()).get(key)
    assert moved.value.host.startswith(cluster.name)
    # Every node the client knows is a published loopback address, not an internal one,
    # and each (found from the slot map, not only the one it started from) has TLS that
    # trusts the deployment's CA alone.
    nodes = client.get_nodes()
    assert {node.host for node in nodes} == {"127.0.0.1"}
    assert len(nodes) == len(cluster.info.data_nodes())
    pools = [node.redis_connection.connection_pool for node in nodes]
    assert {pool.connection_class for pool in pools} == {PinnedTLSConnection}
    assert {pool.connection_kwargs["ssl_ca_certs"] for pool in pools} == {cluster.info.tls.ca_file}


def test_kill_master_promotes_a_replica_without_loss(cluster: ClusterDeployment) -> None:
    report = _drill(cluster, "kill-master")
    writes = report["writes"]
    assert report["failover"] and report["old_master_rejoined_as_replica"] is True
    assert report["time_to_new_master_s"] <= FAILOVER_BOUND_S
    assert 0 < writes["write_outage_s"] <= FAILOVER_BOUND_S
    assert writes["acknowledged_lost"] == 0
    _still_secure(cluster)


def test_pause_master_fails_over_without_loss(cluster: ClusterDeployment) -> None:
    report = _drill(cluster, "pause-master")
    assert report["failover"] and report["old_master_rejoined_as_replica"] is True
    assert report["writes"]["acknowledged_lost"] == 0


def test_restart_node_comes_back_without_loss(cluster: ClusterDeployment) -> None:
    report = _drill(cluster, "restart-node")
    assert report["writes"]["acknowledged_lost"] == 0
    if report["failover"]:  # the restart outlasted node-timeout: it must be a replica now
        assert report["old_master_rejoined_as_replica"] is True


def test_partition_master_stops_writes_after_node_timeout(cluster: ClusterDeployment) -> None:
    report = _drill(cluster, "partition-master")
    details, writes = report["details"], report["writes"]
    assert report["failover"] and report["old_master_rejoined_as_replica"] is True
    # The cut-off master acknowledged writes after the fault: the losses below are counted
    # over real stale writes, not over none.
    assert details["stale_master_acknowledged"] > 0
    assert writes["acknowledged_lost"] == details["stale_master_lost"]
    # The cut-off master refuses writes once it misses the majority for node-timeout.
    assert details.get("loss_window_s", 0) <= NODE_TIMEOUT_MS / 1000 * 2 + 2


def test_restart_all_keeps_identities_and_every_key(cluster: ClusterDeployment) -> None:
    report = _drill(cluster, "restart-all")
    details = report["details"]
    assert details["identities_kept"] is True
    assert details["spread_keys_missing"] == 0 and details["spread_keys_checked"] == 10_000
    assert report["writes"]["acknowledged_lost"] == 0


def test_scale_out_keeps_every_key(cluster: ClusterDeployment) -> None:
    client = cluster_client(cluster.info)
    for start in range(0, SCALE_KEYS, 1000):
        pipe = client.pipeline()
        for i in range(start, start + 1000):
            pipe.set(f"scale:{i}", i)
        pipe.execute()
    result = scale_cluster(cluster.name, 4, cluster.engine)
    assert result.masters_after == 4 and len(result.new_nodes) == 2
    state = cluster_state(result.info)
    assert cluster_problems(result.info, state) == []
    assert len(state.masters(result.info)) == 4
    after = cluster_client(result.info)
    missing = [i for i in range(SCALE_KEYS) if after.get(f"scale:{i}") != str(i).encode()]
    assert missing == []
    # The new master really serves keys now.
    new_master = result.new_nodes[0]
    admin = node_client(result.info, new_master, role="admin")
    assert admin.dbsize() > 0


def test_ioredis_runs_the_seed_operations_from_the_connection_file(
    cluster: ClusterDeployment,
) -> None:
    """Another ecosystem's mainstream client, configured from the file alone, no warning."""
    assert_seed_operations_work(cluster.connection_file)
