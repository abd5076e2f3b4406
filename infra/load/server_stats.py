"""Redis's own view of a load run: per command, calls and server-side time.

Read as the operator before and after the run, on every node that was a master at
the start (replicas count the replicated writes again): `INFO commandstats` gives
calls and microseconds spent, `LATENCY HISTOGRAM` (Redis 7) the distribution in
power-of-two buckets. The difference is what the run made Redis do, next to what
the clients measured: a client-side p50 of 95 us against 2 us of server time says
where the time goes (network, TLS, the client), not Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import redis
from infra.core.connection import ConnectionInfo
from infra.operations.client import admin_probe


@dataclass
class CommandStats:
    calls: int = 0
    usec: int = 0
    failed: int = 0
    # bucket upper bound (us) -> calls in that bucket alone, not cumulative: Redis lists
    # only the buckets it has seen, so cumulative counts of two nodes (or of one node
    # before and after) do not line up bound by bound, while per-bucket counts do.
    histogram: dict[int, int] = field(default_factory=dict)


def _masters(info: ConnectionInfo) -> list[str]:
    found = []
    for node in info.data_nodes():
        client = admin_probe(info, node.name)
        try:
            if client.info("replication").get("role") == "master":
                found.append(node.name)
        except (redis.RedisError, OSError):
            continue
        finally:
            client.close()
    return found


def _per_bucket(cumulative: dict[int, int]) -> dict[int, int]:
    counts, below = {}, 0
    for bound in sorted(cumulative):
        counts[bound] = cumulative[bound] - below
        below = cumulative[bound]
    return counts


def _histogram(reply: Any) -> dict[str, dict[int, int]]:
    """LATENCY HISTOGRAM (cumulative, RESP2 or RESP3) as command -> {bucket: calls in it}."""
    commands = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
    result: dict[str, dict[int, int]] = {}
    for command, details in commands.items():
        fields = (
            details
            if isinstance(details, dict)
            else dict(zip(details[::2], details[1::2], strict=True))
        )
        buckets = fields.get("histogram_usec") or {}
        pairs = (
            buckets.items()
            if isinstance(buckets, dict)
            else zip(buckets[::2], buckets[1::2], strict=True)
        )
        result[str(command)] = _per_bucket({int(bound): int(count) for bound, count in pairs})
    return result


def snapshot(
    info: ConnectionInfo, nodes: list[str] | None = None
) -> dict[str, dict[str, CommandStats]]:
    """node -> command -> its counters now (masters unless `nodes` names them)."""
    taken: dict[str, dict[str, CommandStats]] = {}
    for name in nodes if nodes is not None else _masters(info):
        client = admin_probe(info, name, timeout_s=5.0)
        try:
            stats = client.info("commandstats")
            histograms = _histogram(client.execute_command("LATENCY", "HISTOGRAM"))
        except (redis.RedisError, OSError):
            continue
        finally:
            client.close()
        per_command: dict[str, CommandStats] = {}
        for key, value in stats.items():
            command = key.removeprefix("cmdstat_")
            per_command[command] = CommandStats(
                calls=int(value["calls"]),
                usec=int(value["usec"]),
                failed=int(value.get("failed_calls", 0)),
                histogram=histograms.get(command, {}),
            )
        taken[name] = per_command
    return taken


def _percentile(counts: dict[int, int], share: float) -> int | None:
    total = sum(counts.values())
    if not total:
        return None
    wanted, seen = share * total, 0
    for bound in sorted(counts):
        seen += counts[bound]
        if seen >= wanted:
            return bound
    return max(counts)


def difference(
    before: dict[str, dict[str, CommandStats]], after: dict[str, dict[str, CommandStats]]
) -> dict[str, Any]:
    """What the run made the nodes of `before` do, per command (summed over nodes)."""
    totals: dict[str, CommandStats] = {}
    for node, commands in before.items():
        for command, end in after.get(node, {}).items():
            start = commands.get(command, CommandStats())
            into = totals.setdefault(command, CommandStats())
            into.calls += end.calls - start.calls
            into.usec += end.usec - start.usec
            into.failed += end.failed - start.failed
            for bound, count in end.histogram.items():
                delta = count - start.histogram.get(bound, 0)
                into.histogram[bound] = into.histogram.get(bound, 0) + delta
    skipped = {"auth", "hello", "client|setname", "latency|histogram", "info", "ping"}
    return {
        "nodes": sorted(before),
        "commands": {
            command: {
                "calls": stats.calls,
                "failed": stats.failed,
                "usec_per_call": round(stats.usec / stats.calls, 2),
                # Power-of-two buckets: "at most this many microseconds".
                "p50_us_at_most": _percentile(stats.histogram, 0.50),
                "p99_us_at_most": _percentile(stats.histogram, 0.99),
            }
            for command, stats in sorted(totals.items())
            if stats.calls > 0 and command not in skipped
        },
    }


SETTLE_TIMEOUT_S = 60.0


def _busy(client: redis.Redis) -> str | None:
    """What a node is still doing that would take CPU from a run: a fork, a sync."""
    persistence = client.info("persistence")
    for flag in ("rdb_bgsave_in_progress", "aof_rewrite_in_progress", "loading"):
        if int(persistence.get(flag, 0)):
            return flag
    replication = client.info("replication")
    if replication.get("role") == "slave" and (
        replication.get("master_link_status") != "up"
        or int(replication.get("master_sync_in_progress", 0))
    ):
        return "replica sync"
    return None


def wait_until_settled(info: ConnectionInfo, timeout_s: float = SETTLE_TIMEOUT_S) -> str | None:
    """Wait until no data node forks, loads or syncs (a deployment just brought up does
    all three: the first AOF rewrite, replicas' full syncs), so a run measures serving,
    not setting up. None when settled, else what was still going on at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        pending = []
        for node in info.data_nodes():
            client = admin_probe(info, node.name, timeout_s=5.0)
            try:
                doing = _busy(client)
            except (redis.RedisError, OSError) as exc:
                doing = f"unreachable ({exc.__class__.__name__})"
            finally:
                client.close()
            if doing:
                pending.append(f"{node.name}: {doing}")
        if not pending:
            return None
        if time.monotonic() > deadline:
            return ", ".join(pending)
        time.sleep(0.2)
