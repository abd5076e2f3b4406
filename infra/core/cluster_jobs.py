"""The one-shot operator jobs: form and grow a Redis Cluster (`redis-cli --cluster`),
and load the function library.

They run on the deployment's network with the first node's certificate (its
config volume, read-only) and the operator's password from an upload, never from
the command line, so `docker inspect` shows no secret; the upload is deleted
before anything else runs. Every step checks first whether it is done already,
so running a job again changes nothing.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from infra.assets import JOBS_DIR
from infra.core.secrets import password_ref

STAGE_DIR = "/stage"
ADMIN_PASSWORD_FILE = f"{STAGE_DIR}/admin-password"
FUNCTIONS_FILE = f"{STAGE_DIR}/functions.lua"
WAIT_SECONDS = 120  # for each wait (polled every 50 ms); the job itself may take 180 s

_FUNCTIONS = (JOBS_DIR / "cluster-job.sh").read_text(encoding="utf-8")


SLOTS = 16384


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """The slots split evenly, in order: (first, last) per master."""
    bounds = [index * SLOTS // masters for index in range(masters + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(masters)]


def _join_replicas(shards: list[Shard]) -> list[str]:
    """Each replica meets its own shard's master and follows it (redis-cli's own replica
    placement would ignore the plan's shards and domains). Meeting that master directly
    lets CLUSTER REPLICATE follow after one handshake, not after gossip spread."""
    pairs = [(replica, shard.master[1]) for shard in shards for _, replica in shard.replicas]
    lines = [f"meet {replica} {master}" for replica, master in pairs]
    lines += [f"replicate {replica} {master}" for replica, master in pairs]
    return lines


def _introduce_everyone(everyone: list[tuple[str, str]]) -> list[str]:
    """Once every handshake is done, each node MEETs every other again. A handshake
    leaves the node that was met not knowing the other's slots and role until that one
    next pings it, which can take cluster-node-timeout / 2 (2.5 s at the shipped 5000
    ms); a MEET from a known node carries them at once (its PONG ends the extra
    handshake it opens). Nothing changes on a cluster that already agrees."""
    count = len(everyone)
    lines = [f"wait_settled {address} {count}" for _, address in everyone]
    lines += [
        f"meet_all {address} {' '.join(other for _, other in everyone if other != address)}"
        for _, address in everyone
    ]
    return lines


@dataclass(frozen=True)
class Shard:
    master: tuple[str, str]  # (name, address)
    replicas: tuple[tuple[str, str], ...]


def _quoted(value: str) -> str:
    """A shell string, quoted even where shlex would leave it bare (`admin` would read
    as a command name to the linter, and to the next reader)."""
    return "'" + value.replace("'", "'\\''") + "'"


def _preamble(tls_args: tuple[str, ...], admin_user: str, port: int) -> list[str]:
    return [
        "set -eu",
        # Under Pulumi the exited job container stays: nothing staged may remain in it.
        f"trap 'rm -rf {STAGE_DIR}' EXIT",
        f"REDISCLI_AUTH=$(cat {ADMIN_PASSWORD_FILE})",
        f"rm -f {ADMIN_PASSWORD_FILE}",
        "export REDISCLI_AUTH",
        f"TLS={shlex.quote(' '.join(tls_args))}",
        f"ADMIN_USER={_quoted(admin_user)}",
        f"PORT={port}",
        f"WAIT_SECONDS={WAIT_SECONDS}",
        f"FUNCTIONS={FUNCTIONS_FILE}",
        _FUNCTIONS.strip(),
    ]


@dataclass(frozen=True)
class SentinelGroup:
    """What a converged group looks like to each of its sentinels."""

    addresses: tuple[str, ...]
    port: int
    service_name: str
    replicas: int


def functions_script(
    addresses: list[str],
    tls_args: tuple[str, ...],
    admin_user: str,
    port: int,
    group: SentinelGroup | None = None,
) -> str:
    """Load the function library on whichever data node is master, and wait until every
    node holds it, so exit 0 means ready (plan_specs.READY_MEANS) for `pulumi up`, which
    has no other wait.

    A Sentinel group must converge first: sentinels that start before the master answers
    may promote a replica that never synced, and a library loaded on the old master would
    then be thrown away when it resyncs from the new one (CI saw exactly that)."""
    lines = _preamble(tls_args, admin_user, port)
    nodes = " ".join(shlex.quote(a) for a in addresses)
    lines.append(f"wait_answering {nodes}")  # a backend may start the job with the nodes
    if group is not None:
        lines.append(f"wait_replicas_linked {nodes}")
        others = len(group.addresses) - 1
        lines.append(
            f"wait_converged {group.port} {_quoted(group.service_name)} {group.replicas} "
            f"{others} {' '.join(shlex.quote(a) for a in group.addresses)}"
        )
    lines += [f"load_functions {nodes}", f"wait_library {nodes}"]
    return "\n".join(lines)


def create_script(
    shards: list[Shard],
    tls_args: tuple[str, ...],
    admin_user: str,
    port: int,
    *,
    finish: bool = True,
) -> str:
    """Bring the cluster to the plan's shards, whatever it is now.

    A fresh cluster is formed directly: each master takes an even share of the slots
    and a distinct config epoch as soon as the masters answer, and every node meets
    every other (redis-cli --cluster create meets one node, then polls gossip once a
    second); masters that are not in
    the cluster yet (a scale-out) join it; each replica then follows its own shard's
    master, so the plan's layout and failure domains hold (redis-cli's
    --cluster-replicas would pick its own pairs); finally slots move onto masters that
    have none. Each step checks what is done first, so the job is safe to re-run, and
    the same job both forms and grows the cluster (`redis-infra scale`, or a stack
    whose cluster.masters grew).
    """
    lines = _preamble(tls_args, admin_user, port)
    everyone = [node for shard in shards for node in (shard.master, *shard.replicas)]
    masters = [shard.master[1] for shard in shards]
    replicas = [replica for shard in shards for replica in shard.replicas]
    # Masters first. A master refuses cluster_state:ok for its first 2 s (Redis's
    # writable delay), and one that gets its slots only after those 2 s waits another
    # cluster-node-timeout (its rejoin delay: a master holding no slots counts itself in
    # a minority): so the slots go to the masters as soon as they answer, while the
    # replicas still start (started in a second wave, Plan.start_waves).
    lines += [f"wait_enabled {address} {name}" for name, address in (s.master for s in shards)]
    first = masters[0]
    lines += [
        "FRESH=no",
        f'if [ "$(field {first} cluster_slots_assigned)" = "16384" ]; then',
        "  echo cluster already formed",
        f"elif alone {first}; then",
        # A fresh cluster: each master takes its share of the slots, then meets the first.
        *(
            f"  assign_slots {master} {low} {high} {epoch}"
            for epoch, (master, (low, high)) in enumerate(
                zip(masters, slot_ranges(len(masters)), strict=True), start=1
            )
        ),
        # ... then every master meets those after it: all know all at once.
        *(
            f"  meet_all {address} {' '.join(masters[index + 1 :])}"
            for index, address in enumerate(masters[:-1])
        ),
        "  FRESH=yes",
        "else",
        f'  echo "{first} knows other nodes but no slots: a half-formed cluster; '
        f'inspect it with redis-cli --cluster check" >&2; exit 1',
        "fi",
    ]
    lines += [f"wait_enabled {address} {name}" for name, address in replicas]
    lines += [
        'if [ "$FRESH" = yes ]; then',
        # Each replica meets every master and the replicas before it: no node waits for
        # gossip to learn of another.
        *(
            f"  meet_all {address} {' '.join([*masters, *(r for _, r in replicas[:index])])}"
            for index, (_, address) in enumerate(replicas)
        ),
        "else",
        # A rebalance that was interrupted leaves a slot half-moved: finish it first.
        f"  close_open_slots {first}",
        "fi",
    ]
    for master in masters[1:]:
        lines.append(
            f"if alone {master}; then cli --cluster add-node {master}:{port} {first}:{port}; fi"
        )
    # Replicas meet their own master and follow it at once: CLUSTER REPLICATE needs the
    # master known to the replica, not the slot map agreed (one wait for that, below).
    lines += _join_replicas(shards)
    lines += _introduce_everyone(everyone)
    lines.append(f"wait_agreement {first}")
    # Masters without slots (a scale-out, or one an interrupted run left empty) get
    # their share. Moving a slot needs every master to know the new one (SETSLOT NODE
    # fails with "I don't know about node" otherwise), and a master that just joined
    # answers CLUSTERDOWN until it has the whole slot map: wait for both.
    lines += [
        f"if cli --cluster info {first}:{port} | grep -q '| 0 slots |'; then",
        *(f"  wait_known {master} {len(everyone)}" for master in masters),
        *(f"  wait_ok {master}" for master in masters),
        # Moves keys with MIGRATE (over TLS, as the admin user).
        f"  cli --cluster rebalance {first}:{port} --cluster-use-empty-masters",
        f"  wait_agreement {first}",
        "fi",
    ]
    if not finish:  # the host loads the library and waits for ready (function_library)
        return "\n".join([*lines, "echo cluster formed, the library and the wait left to the host"])
    lines += [
        # Exit 0 means ready (plan_specs.READY_MEANS): `pulumi up` has no other wait.
        # Roles are whatever failovers made them, not the plan's: ask each node. The
        # library goes onto today's masters first (FUNCTION LOAD has no key: a node
        # takes it before its cluster_state is ok), so one read per node checks all.
        f"load_functions {' '.join(address for _, address in everyone)}",
        f"wait_ready {len(everyone)} {' '.join(address for _, address in everyone)}",
        "echo cluster formed",
    ]
    return "\n".join(lines)


ADMIN_PASSWORD = password_ref("admin")
