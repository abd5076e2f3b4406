"""The operator jobs' shell functions (redis/jobs/cluster-job.sh), run with busybox sh
as in the image, against a fake redis-cli that answers as a sentinel would."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from infra.core.cluster_jobs import _FUNCTIONS, Shard, create_script

BUSYBOX = shutil.which("busybox") or "/bin/busybox"

# `redis-cli sentinel master|replicas` prints one element per line, nested ones flattened.
FAKE_CLI = """#!/bin/sh
case "$*" in
  *"sentinel get-master-addr-by-name mymaster"*)
    # A sentinel still starting refuses the first STARTING asks (redis-cli: error, exit 0).
    asked=$(( $(cat "$STATE/asked" 2>/dev/null || echo 0) + 1 )); echo "$asked" > "$STATE/asked"
    if [ "$asked" -le "$(cat "$STATE/starting" 2>/dev/null || echo 0)" ]; then
      echo "Could not connect to Redis: Connection refused" >&2; exit 0
    fi
    printf '10.0.0.10\\n6379\\n' ;;
  *"sentinel master mymaster"*)
    printf 'name\\nmymaster\\nip\\n10.0.0.10\\nflags\\n%s\\n' "$(cat "$STATE/master_flags")"
    printf 'num-other-sentinels\\n2\\n' ;;  # seeded: counts peers never reached
  *"sentinel replicas mymaster"*) cat "$STATE/replicas" ;;
  *"sentinel sentinels mymaster"*) cat "$STATE/sentinels" ;;
  *) exit 1 ;;
esac
"""


def _run(
    tmp_path: Path, fake_cli: str, calls: str, *, seconds: int = 1, preamble: str = ""
) -> subprocess.CompletedProcess[str]:
    """`calls` after the job's functions, under busybox sh, with `fake_cli` as redis-cli
    (it reads its state from files in tmp_path, $STATE)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "redis-cli").write_text(fake_cli)
    (bin_dir / "redis-cli").chmod(0o755)
    script = (
        f"set -eu\nTLS=''\nADMIN_USER=admin\nPORT=6379\nWAIT_SECONDS={seconds}\n{preamble}"
        f"{_FUNCTIONS}\n{calls}\n"
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STATE": str(tmp_path)}
    return subprocess.run([BUSYBOX, "sh", "-c", script], capture_output=True, text=True,
                          timeout=30, env=env)  # fmt: skip


def _replica(flags: str) -> str:
    return f"name\n10.0.0.11:6379\nflags\n{flags}\nmaster-link-status\nok\n"


def _peer(flags: str = "sentinel", last_ping_sent: int = 0) -> str:
    return (
        f"name\n{'ab' * 20}\nip\n10.0.0.14\nport\n26379\nflags\n{flags}\n"
        f"link-pending-commands\n0\nlast-ping-sent\n{last_ping_sent}\nlast-ok-ping-reply\n12\n"
    )


def _wait(
    tmp_path: Path,
    others: int,
    replicas: str,
    seconds: int = 1,
    master_flags: str = "master",
    peers: str | None = None,
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sentinels").write_text(peers if peers is not None else _peer() * others)
    (tmp_path / "master_flags").write_text(master_flags)
    (tmp_path / "replicas").write_text(replicas)
    return _run(
        tmp_path, FAKE_CLI, "wait_converged 26379 mymaster 2 2 10.0.0.13 10.0.0.14", seconds=seconds
    )


def test_a_converged_group_is_ready(tmp_path: Path) -> None:
    done = _wait(tmp_path, 2, _replica("slave") + _replica("slave"))
    assert done.returncode == 0, done.stderr
    assert "sentinel group converged" in done.stdout


def test_a_replica_still_down_or_a_missing_sentinel_is_not(tmp_path: Path) -> None:
    down = _wait(tmp_path, 2, _replica("slave") + _replica("s_down,slave,disconnected"))
    assert down.returncode != 0
    assert "to see 2 replicas and reach 2 sentinels" in down.stderr
    alone = _wait(tmp_path, 1, _replica("slave") + _replica("slave"))
    assert alone.returncode != 0
    assert (
        "gave up waiting for sentinel 10.0.0.13 to see 2 replicas and reach 2 sentinels"
        in alone.stderr
    )


def test_a_master_thought_down_or_being_failed_over_is_not(tmp_path: Path) -> None:
    # Sentinels that started before the master answered hold it s_down, then may fail
    # over: loading the function library before that settles would lose it.
    healthy = _replica("slave") + _replica("slave")
    for flags in ("s_down,master", "master,failover_in_progress", "s_down,o_down,master"):
        waited = _wait(tmp_path, 2, healthy, master_flags=flags)
        assert waited.returncode != 0, flags
        assert "to see 2 replicas and reach 2 sentinels" in waited.stderr
    assert _wait(tmp_path, 2, healthy, master_flags="master").returncode == 0


REPLICATION_CLI = """#!/bin/sh
# ... -h ADDRESS ... info replication: the role and link each node reports now
while [ "$1" != "-h" ]; do shift; done
address="$2"
case "$address" in
  10.0.0.10) printf 'role:master\\r\\n' ;;
  *) printf 'role:slave\\r\\nmaster_link_status:%s\\r\\n' "$(cat "$STATE/link-$address")" ;;
esac
"""


def test_replicas_are_found_by_their_role_now_and_must_be_linked(tmp_path: Path) -> None:
    def wait(links: dict[str, str]) -> subprocess.CompletedProcess[str]:
        for address, link in links.items():
            (tmp_path / f"link-{address}").write_text(link)
        return _run(tmp_path, REPLICATION_CLI, "wait_replicas_linked 10.0.0.10 10.0.0.11 10.0.0.12")

    assert wait({"10.0.0.11": "up", "10.0.0.12": "up"}).returncode == 0
    syncing = wait({"10.0.0.11": "up", "10.0.0.12": "down"})
    assert syncing.returncode != 0
    assert "gave up waiting for 10.0.0.12 to link to its master" in syncing.stderr


LIBRARY_CLI = """#!/bin/sh
# ... -h ADDRESS ... function list libraryname NAME: what that node holds now
while [ "$1" != "-h" ]; do shift; done
if [ -f "$STATE/has-$2" ]; then printf 'library_name\\r\\nratelimit\\r\\nengine\\r\\nLUA\\r\\n'; fi
"""


def test_ready_waits_until_every_node_holds_the_function_library(tmp_path: Path) -> None:
    library = tmp_path / "functions.lua"
    library.write_text("#!lua name=ratelimit\nredis.register_function('f', function() end)\n")

    def wait() -> subprocess.CompletedProcess[str]:
        calls = "wait_library 10.0.0.10 10.0.0.11"
        return _run(tmp_path, LIBRARY_CLI, calls, preamble=f"FUNCTIONS={library}\n")

    (tmp_path / "has-10.0.0.10").touch()
    replica_behind = wait()
    assert replica_behind.returncode != 0
    assert "10.0.0.11 to hold the function library ratelimit" in replica_behind.stderr
    (tmp_path / "has-10.0.0.11").touch()
    assert wait().returncode == 0


BATCH_CLI = """#!/bin/sh
# ... -h ADDRESS ...: answers each command read from stdin as Redis would; a node that
# cannot be reached makes redis-cli print to stderr only, and exit 0
while [ "$1" != "-h" ]; do shift; done
if [ "$2" = 10.0.0.99 ]; then echo "Could not connect to Redis at 10.0.0.99:6379" >&2; exit 0; fi
while read -r command _; do
  if [ "$command" = BAD ]; then printf 'ERR unknown command\\r\\n'; else printf 'OK\\r\\n'; fi
done
"""


def test_a_batch_fails_on_any_reply_but_ok(tmp_path: Path) -> None:
    def run(commands: str, address: str = "10.0.0.10") -> subprocess.CompletedProcess[str]:
        return _run(tmp_path, BATCH_CLI, f"printf '{commands}' | batch {address}")

    assert run("CLUSTER MEET a 6379\\nCLUSTER MEET b 6379\\n").returncode == 0
    refused = run("CLUSTER MEET a 6379\\nBAD x\\n")
    assert refused.returncode != 0
    assert "10.0.0.10 did not accept all 2 commands" in refused.stderr
    assert "ERR unknown command" in refused.stderr
    unreachable = run("CLUSTER MEET a 6379\\n", "10.0.0.99")
    assert unreachable.returncode != 0
    assert "Could not connect" in unreachable.stderr


NODES_CLI = """#!/bin/sh
cat "$STATE/nodes"
"""


def test_a_node_is_settled_once_it_knows_everyone_and_no_handshake_is_open(
    tmp_path: Path,
) -> None:
    def settled(nodes: list[str]) -> int:
        (tmp_path / "nodes").write_text("".join(f"{line}\r\n" for line in nodes))
        return _run(tmp_path, NODES_CLI, "settled 10.0.0.10 3").returncode

    known = [
        "a1 10.0.0.10:6379@16379 myself,master - 0 0 1 connected 0-8191",
        "b2 10.0.0.11:6379@16379 master - 0 0 2 connected 8192-16383",
        "c3 10.0.0.12:6379@16379 slave a1 0 0 1 connected",
    ]
    assert settled(known) == 0
    assert settled(known[:2]) != 0  # one not met yet
    handshake = "d4 10.0.0.12:6379@16379 handshake - 0 0 0 disconnected"
    assert settled([*known[:2], handshake]) != 0  # three lines, one still a handshake


def test_the_group_is_awaited_even_if_its_first_sentinel_is_still_starting(
    tmp_path: Path,
) -> None:
    # The job starts beside the nodes: the sentinel it asks for the master may refuse.
    (tmp_path / "starting").write_text("3")
    replicas = _replica("slave") + _replica("slave")
    result = _wait(tmp_path, others=2, replicas=replicas, seconds=5)
    assert result.returncode == 0, result.stderr
    assert "sentinel group converged" in result.stdout


def test_seeded_peers_count_only_once_reached(tmp_path: Path) -> None:
    # The config seeds every peer, so Sentinel lists both (num-other-sentinels 2) from
    # its start: a peer still disconnected, or one whose PING is unanswered (a wrong
    # password answers NOAUTH), is not reached yet.
    replicas = _replica("slave") + _replica("slave")
    for unreached in (_peer("sentinel,disconnected", 0), _peer("sentinel", 1500)):
        result = _wait(tmp_path, others=2, replicas=replicas, peers=_peer() + unreached)
        assert result.returncode != 0
        assert "reach 2 sentinels" in result.stderr
    assert _wait(tmp_path, others=2, replicas=replicas).returncode == 0


READY_CLI = """#!/bin/sh
# ... -h ADDRESS ...: the commands on stdin (CLUSTER INFO, INFO replication, FUNCTION
# LIST) answered together with what that node reports now
while [ "$1" != "-h" ]; do shift; done
cat > /dev/null
if [ -f "$STATE/state-$2" ]; then sed 's/$/\\r/' "$STATE/state-$2"; fi
"""


def test_a_node_is_ready_once_it_knows_all_serves_is_linked_and_holds_the_library(
    tmp_path: Path,
) -> None:
    library = tmp_path / "functions.lua"
    library.write_text("#!lua name=ratelimit\nredis.register_function('f', function() end)\n")
    master = ["cluster_state:ok", "cluster_known_nodes:6", "role:master"]
    replica = ["cluster_state:ok", "cluster_known_nodes:6", "role:slave", "master_link_status:up"]
    held = ["library_name", "ratelimit", "engine", "LUA"]

    def wait(**states: list[str]) -> subprocess.CompletedProcess[str]:
        for address, lines in states.items():
            (tmp_path / f"state-{address}").write_text("".join(f"{line}\n" for line in lines))
        calls = "wait_ready 6 m r"
        return _run(tmp_path, READY_CLI, calls, preamble=f"FUNCTIONS={library}\n")

    assert wait(m=master + held, r=replica + held).returncode == 0
    for name, behind in {
        "still forming": ["cluster_state:fail", *master[1:]],
        "one node not met": ["cluster_state:ok", "cluster_known_nodes:5", "role:master"],
        "no library": master,
    }.items():
        result = wait(m=behind + (held if name != "no library" else []), r=replica + held)
        assert result.returncode != 0, name
        assert "gave up waiting for m to know 6 nodes" in result.stderr, name
    syncing = wait(m=master + held, r=[*replica[:3], "master_link_status:down", *held])
    assert syncing.returncode != 0
    assert "master_link_status:down" in syncing.stderr  # what the node said is shown
    assert wait(m=master + held).returncode != 0  # a node that does not answer


FORMING_CLI = """#!/bin/sh
# A fresh cluster whose masters answer and whose replicas are still starting; every
# call is recorded, with the commands a batch sends on stdin
while [ "$1" != "-h" ]; do shift; done
address="$2"
shift 4
echo "$address $*" >> "$STATE/calls"
case "$address" in
  *1|*3|*5) echo "Could not connect to Redis at $address:6379: Connection refused" >&2; exit 1 ;;
esac
case "$*" in
  "info cluster") printf 'cluster_enabled:1\r\n' ;;
  "cluster info") printf 'cluster_slots_assigned:0\r\ncluster_known_nodes:1\r\n' ;;
  "") while read -r line; do echo "$address $line" >> "$STATE/calls"; printf 'OK\r\n'; done ;;
esac
"""


def test_masters_get_their_slots_while_the_replicas_still_start(tmp_path: Path) -> None:
    # A master given its slots more than 2 s after its start (Redis's writable delay)
    # waits a further cluster-node-timeout before it serves: waiting for the replicas
    # first made one in three fixture bring-ups take 9 s instead of 4.
    def node(index: int) -> tuple[str, str]:
        return f"node-{index}", f"10.0.0.{10 + index}"

    shards = [Shard(node(2 * i), (node(2 * i + 1),)) for i in range(3)]
    script = create_script(shards, (), "admin", 6379)
    body = script.split(_FUNCTIONS.strip(), 1)[1]  # the preamble reads the staged password
    result = _run(tmp_path, FORMING_CLI, body)
    assert result.returncode != 0
    assert "gave up waiting for node-1 (10.0.0.11) to report cluster_enabled:1" in result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert {"10.0.0.10 CLUSTER ADDSLOTSRANGE 0 5460", "10.0.0.12 CLUSTER ADDSLOTSRANGE 5461 10921",
            "10.0.0.14 CLUSTER ADDSLOTSRANGE 10922 16383"} <= set(calls)  # fmt: skip
    assert "10.0.0.10 CLUSTER MEET 10.0.0.12 6379" in calls
    assert "10.0.0.12 CLUSTER MEET 10.0.0.14 6379" in calls
