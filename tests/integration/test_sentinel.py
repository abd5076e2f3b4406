"""The Sentinel topology: bring-up, clients that follow failovers, and the five drills.

The group runs with down-after-milliseconds 1000 (the failover target's setting);
the restart drill uses the shipped default, which is chosen to outlast a restart.
"""

from __future__ import annotations

import json
import time
from typing import Any

import docker
import pytest

import redis
from infra.core.topology import load_topology
from infra.operations.client import connect, no_retry, node_client, sentinel_manager
from infra.operations.deploy import down, up
from infra.operations.drills.sentinel import SentinelDrill
from infra.operations.observe_sentinel import convergence_problems, group_state
from infra.operations.verify import verify
from infra.testing import SentinelDeployment
from tests.conftest import SENTINEL_DOWN_AFTER_MS as DOWN_AFTER_MS
from tests.integration.conftest import unique_name
from tests.integration.other_clients import assert_seed_operations_work

# Generous: detection (down-after) + agreement + election + promotion, on a busy CI box.
FAILOVER_BOUND_S = DOWN_AFTER_MS / 1000 * 3 + 5


@pytest.fixture
def group(redis_sentinel_deployment: SentinelDeployment) -> SentinelDeployment:
    """The session's group from the redis-infra plugin (tests/conftest.py sets it up):
    the drills run through the same fixtures an application's suite uses."""
    return redis_sentinel_deployment


def _drill(group: SentinelDeployment, scenario: str) -> dict[str, Any]:
    report = SentinelDrill(group.info, group.engine).run(scenario).to_json()
    assert report["converged"], report["notes"]
    state = group_state(group.info)
    assert convergence_problems(group.info, state) == []
    assert len(state.masters()) == 1
    return report


def _still_secure(group: SentinelDeployment) -> None:
    failed = [check for check in verify(group.info) if not check.passed]
    assert failed == [], failed


def test_up_waits_for_a_converged_group(group: SentinelDeployment) -> None:
    info = group.info
    assert info.service_name == "mymaster"
    assert [n.role for n in info.nodes].count("sentinel") == 3
    state = group_state(info)
    assert len(state.masters()) == 1  # data-0 at first; another after a drill
    assert all(
        role and role.link_up for name, role in state.roles.items() if role and role.role == "slave"
    )
    assert all(
        view and view.other_sentinels == 2 and view.replicas == 2 for view in state.views.values()
    )


def test_every_node_is_tls_only_and_least_privilege(group: SentinelDeployment) -> None:
    _still_secure(group)


def test_sentinel_client_writes_to_the_master_from_the_host(group: SentinelDeployment) -> None:
    client = connect(group.info, retry=no_retry())
    assert client.set("sentinel:hello", "world")
    assert client.get("sentinel:hello") == b"world"
    # Sentinels announce names on the internal network; the client got a loopback port.
    pool: Any = client.connection_pool  # a SentinelConnectionPool
    host, port = pool.get_master_address()
    master = group.info.node(group.master())
    assert (host, port) == (master.host, master.port) == ("127.0.0.1", master.port)


def test_kill_master_fails_over_without_losing_acknowledged_writes(
    group: SentinelDeployment,
) -> None:
    report = _drill(group, "kill-master")
    writes = report["writes"]
    assert report["failover"] and report["new_master"] != report["old_master"]
    assert report["time_to_new_master_s"] <= FAILOVER_BOUND_S
    assert 0 < writes["write_outage_s"] <= FAILOVER_BOUND_S
    assert writes["acknowledged_lost"] == 0
    assert writes["acknowledged"] > 5000  # the client reconnected by itself and kept writing
    assert report["old_master_rejoined_as_replica"] is True
    _still_secure(group)


def test_pause_master_fails_over_without_losing_acknowledged_writes(
    group: SentinelDeployment,
) -> None:
    report = _drill(group, "pause-master")
    assert report["failover"]
    assert report["time_to_new_master_s"] <= FAILOVER_BOUND_S
    assert report["writes"]["acknowledged_lost"] == 0
    assert report["old_master_rejoined_as_replica"] is True
    _still_secure(group)


def test_partition_master_losses_are_the_stale_masters_and_bounded(
    group: SentinelDeployment,
) -> None:
    report = _drill(group, "partition-master")
    details, writes = report["details"], report["writes"]
    assert report["failover"] and report["old_master_rejoined_as_replica"] is True
    # The cut-off master went on acknowledging writes (its published port answers), so
    # the loss accounting below has something to count ...
    assert details["stale_master_acknowledged"] > 0
    # ... and every acknowledged write lost is one the cut-off master took after the fault,
    assert writes["acknowledged_lost"] == details["stale_master_lost"]
    if writes["acknowledged_lost"]:
        assert details["lost_acknowledged_by"] == {
            report["old_master"]: writes["acknowledged_lost"]
        }
    # ... for no longer than min-replicas-max-lag allows (plus detection slack).
    max_lag = report["configured"]["min_replicas_max_lag"]
    assert details.get("loss_window_s", 0) <= max_lag + 3
    _still_secure(group)


def test_a_replica_partitioned_and_healed_by_the_helpers_keeps_its_fixed_address(
    group: SentinelDeployment,
) -> None:
    """Sentinels and the master know a replica by the address the plan fixed; the
    fixture's heal (a call apart from its partition) must put it back there."""
    replica = next(node for node in group.info.data_nodes() if node.name != group.master())
    group.partition(replica.name)
    # Cut off the deployment's network, as the helper says; its published port answers.
    networks = group.container(replica.name).attrs["NetworkSettings"]["Networks"]
    assert group.info.network not in networks
    with node_client(group.info, replica, role="admin", retry=no_retry()) as admin:
        assert admin.ping()
    group.heal(replica.name)
    networks = group.container(replica.name).attrs["NetworkSettings"]["Networks"]
    assert networks[group.info.network]["IPAddress"] == replica.address
    group.wait_converged()


def _answers(group: SentinelDeployment, node: str) -> bool:
    client = node_client(group.info, group.info.node(node), socket_timeout=0.5, retry=no_retry())
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    finally:
        client.close()


def test_the_fixtures_helpers_pause_restart_and_count_lost_writes(
    group: SentinelDeployment,
) -> None:
    """The fault and accounting helpers an application's test calls on the deployment
    object (the drills above use their own): a paused node does not answer, a restarted
    one is a new process, and every acknowledged write the data no longer holds counts."""
    replica = next(node.name for node in group.info.data_nodes() if node.name != group.master())
    with group.writes(rate_per_s=200) as writer:
        time.sleep(0.3)
        group.pause(replica)
        assert not _answers(group, replica)
        group.unpause(replica)
        assert _answers(group, replica)
        time.sleep(0.3)
    held = group.lost_writes(writer.log)
    assert held.acknowledged > 50 and held.acknowledged_lost == 0, held

    # Three acknowledged writes removed behind the writer's back: exactly those count.
    gone = [record.seq for record in writer.log.acknowledged()][5:8]
    admin = group.client("admin")
    admin.delete(*(writer.log.key(seq) for seq in gone))
    admin.close()
    lost = group.lost_writes(writer.log)
    assert lost.acknowledged_lost == 3 and lost.lost_sequence_numbers == gone

    started = group.container(replica).attrs["State"]["StartedAt"]
    group.restart(replica)
    assert group.container(replica).attrs["State"]["StartedAt"] != started
    group.wait_converged()
    assert _answers(group, replica)


def test_losing_the_sentinel_majority_prevents_failover(group: SentinelDeployment) -> None:
    report = _drill(group, "kill-sentinels")
    assert report["failover"] is False
    assert report["new_master"] == report["old_master"]
    assert "NOQUORUM" in report["details"]["ckquorum"]
    assert report["writes"]["acknowledged_lost"] == 0
    _still_secure(group)


def _fail_over(group: SentinelDeployment) -> str:
    """An operator's SENTINEL FAILOVER; returns the new master once it is the only one
    (the group's full convergence is what `up`, next, waits for and the test checks)."""
    before = group_state(group.info).masters()
    assert group.info.service_name is not None
    sentinel = sentinel_manager(group.info, role="admin").sentinels[0]
    assert sentinel.execute_command("SENTINEL", "FAILOVER", group.info.service_name)
    deadline = time.monotonic() + FAILOVER_BOUND_S * 2
    while time.monotonic() < deadline:
        state = group_state(group.info)
        if len(state.masters()) == 1 and state.masters() != before:
            return state.masters()[0]
        time.sleep(0.2)
    raise AssertionError(f"no converged failover away from {before}: {state.masters()}")


def test_up_again_after_a_failover_keeps_the_current_master(group: SentinelDeployment) -> None:
    # It needs a master other than data-0 (the one the first config job wrote) and makes
    # one itself when the tests before it left data-0 master (or when it runs alone).
    first = f"{group.name}-data-0"
    master = group_state(group.info).masters()[0]
    if master == first:
        master = _fail_over(group)
    assert master != first
    # The local backend's `up` finds the plugin's deployment as planned: one plan, two
    # backends that translate it alike.
    assert group.topology is not None and group.engine is not None
    again = up(group.topology, group.engine, connection_file=group.connection_file)
    assert not again.created
    client = connect(group.info)
    client.set("sentinel:kept", "yes")
    # Recreate every container from kept volumes: the config job keeps the roles and
    # the sentinels' knowledge that Sentinel recorded, so nothing reverts to data-0.
    down(group.name, group.engine, keep_data=True)
    up(group.topology, group.engine, connection_file=group.connection_file)
    state = group_state(group.info)
    assert convergence_problems(group.info, state) == []
    assert state.masters() == [master]
    assert connect(group.info).get("sentinel:kept") == b"yes"


def test_clean_restart_with_default_timeouts_neither_fails_over_nor_loses(
    engine: docker.DockerClient, redis_image: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    name = unique_name("restart")
    topology = load_topology("sentinel", name, {"image": redis_image})
    try:
        result = up(topology, engine, connection_file=tmp_path_factory.mktemp(name) / "c.json")
        report = SentinelDrill(result.info, engine).run("restart-master").to_json()
    finally:
        down(name, engine, keep_data=False)
    assert report["old_master"] == f"{name}-data-0"  # a fresh group's first master
    assert report["converged"]
    assert report["failover"] is False and report["new_master"] == report["old_master"]
    assert report["writes"]["acknowledged_lost"] == 0


def test_ioredis_runs_the_seed_operations_from_the_connection_file(
    group: SentinelDeployment,
) -> None:
    """Another ecosystem's mainstream client, configured from the file alone, no warning."""
    assert_seed_operations_work(group.connection_file)


def test_app_info_on_a_replica_shows_no_secret(group: SentinelDeployment) -> None:
    """A replica's INFO names its master link; it must not show the replication password."""
    roles = group_state(group.info).roles
    replicas = [name for name, role in roles.items() if role and role.role == "slave"]
    replica = group.info.node(replicas[0])
    info = node_client(group.info, replica).info("everything")
    assert info["role"] == "slave" and info["master_link_status"] == "up"
    secrets = json.loads((group.connection_file.parent / "secrets.json").read_text())
    passwords = [value for name, value in secrets.items() if name.endswith("_password")]
    assert len(passwords) >= 6  # ... sentinel's too
    text = json.dumps(info)
    assert [p[:4] for p in passwords if p in text] == []


def test_a_peer_that_refuses_the_sentinels_credentials_is_not_counted_as_reached() -> None:
    # Every sentinel's config names its peers, so Sentinel lists them all from its first
    # second (num-other-sentinels 2) whether it can reach them or not. Here sentinel-2
    # stops accepting the peers' password and drops their links: the other two keep
    # listing it, and must no longer count it.
    with SentinelDeployment().with_setting("sentinel.down_after_ms", 1000) as group:
        info = group.info
        names = [sentinel.name for sentinel in info.sentinels()]
        assert convergence_problems(info, group_state(info)) == []
        refusing = names[2]
        glass = node_client(info, refusing, role="breakglass", decode_responses=True)
        assert group.topology is not None
        username = group.topology.users.sentinel
        glass.execute_command("ACL", "SETUSER", username, "resetpass", ">not-the-peers-password")
        glass.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        glass.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        deadline = time.monotonic() + 15
        problems: list[str] = []
        while time.monotonic() < deadline:
            problems = convergence_problems(info, group_state(info))
            if all(f"sentinel {name} reached 1 of 2" in " ".join(problems) for name in names[:2]):
                break
            time.sleep(0.2)
        assert [p for p in problems if "reached" in p] == [
            f"sentinel {name} reached 1 of 2 other sentinels (connected, PING answered)"
            for name in names[:2]
        ], problems
        # ... while Sentinel itself still lists it: the count that proved nothing.
        admin = node_client(info, names[0], role="admin", decode_responses=True)
        assert (
            int(admin.execute_command("SENTINEL", "MASTER", "mymaster")["num-other-sentinels"]) == 2
        )
        failed = [check.name for check in verify(info) if not check.passed]
        assert failed, "verify passed a group whose sentinels cannot all reach each other"
