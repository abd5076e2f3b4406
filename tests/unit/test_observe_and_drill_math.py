"""Pure parts of the drills: convergence rules and the write accounting."""

from __future__ import annotations

import pytest

from infra.core.connection import ConnectionInfo, Credentials, NodeAddress, TlsPaths
from infra.operations.drills.report import write_outcome
from infra.operations.drills.writer import WriteLog, WriteRecord
from infra.operations.observe_sentinel import (
    IN_FLIGHT_MS,
    GroupState,
    NodeRole,
    SentinelView,
    convergence_problems,
    peers_reached,
)


def _info() -> ConnectionInfo:
    nodes = [
        NodeAddress(
            f"g-data-{i}",
            f"g-data-{i}",
            "master" if i == 0 else "replica",
            "127.0.0.1",
            21000 + i,
            f"g-data-{i}:6379",
        )
        for i in range(3)
    ]
    nodes += [
        NodeAddress(
            f"g-sentinel-{i}",
            f"g-sentinel-{i}",
            "sentinel",
            "127.0.0.1",
            22000 + i,
            f"g-sentinel-{i}:26379",
        )
        for i in range(3)
    ]
    return ConnectionInfo(
        "g",
        "sentinel",
        "g-net",
        TlsPaths("a", "b", "c"),
        {"app": Credentials("app", "x")},
        tuple(nodes),
        "mymaster",
    )


def _healthy(master: str = "g-data-1") -> GroupState:
    state = GroupState()
    for i in range(3):
        name = f"g-data-{i}"
        state.roles[name] = (
            NodeRole("master", None, False, 2)
            if name == master
            else NodeRole("slave", master, True, 0)
        )
    for i in range(3):
        state.views[f"g-sentinel-{i}"] = SentinelView(master, "master", 2, 2)
    return state


def test_a_converged_group_has_no_problems() -> None:
    assert convergence_problems(_info(), _healthy()) == []


def test_two_masters_are_a_split_brain() -> None:
    state = _healthy()
    state.roles["g-data-0"] = NodeRole("master", None, False, 0)
    problems = convergence_problems(_info(), state)
    assert any("2 data nodes report role master" in p for p in problems)


def test_sentinels_must_agree_and_see_everyone() -> None:
    state = _healthy()
    state.views["g-sentinel-2"] = SentinelView("g-data-0", "master", 1, 1)
    problems = convergence_problems(_info(), state)
    assert any("do not agree" in p for p in problems)
    assert any("sees 1 healthy replicas" in p for p in problems)
    state.views["g-sentinel-2"] = None
    assert any("g-sentinel-2 is unreachable" in p for p in convergence_problems(_info(), state))


def test_a_replica_with_its_link_down_is_not_converged() -> None:
    state = _healthy()
    state.roles["g-data-2"] = NodeRole("slave", "g-data-1", False, 0)
    assert any("link down" in p for p in convergence_problems(_info(), state))


def _log(pattern: list[tuple[float, bool, bool]]) -> WriteLog:
    log = WriteLog("t")
    for seq, (done, acknowledged, rejected) in enumerate(pattern):
        log.records.append(WriteRecord(seq, done - 0.001, done, acknowledged, "n", None, rejected))
    return log


def test_outage_is_the_longest_gap_around_the_fault_and_losses_are_counted() -> None:
    # acks every 10 ms, a fault at 1.0 s, nothing acknowledged until 2.5 s
    pattern = [(i / 100, True, False) for i in range(101)]
    pattern += [(1.2, False, True), (1.7, False, False)]  # refused, then timed out
    pattern += [(2.5 + i / 100, True, False) for i in range(50)]
    log = _log(pattern)
    stored = {log.key(r.seq): str(r.seq) for r in log.records if r.acknowledged}
    del stored[log.key(5)]  # one acknowledged write is gone
    stored[log.key(102)] = "102"  # the timed-out one landed after all
    outcome = write_outcome(log, lambda keys: [stored.get(k) for k in keys], fault_at_s=1.0)
    assert outcome.write_outage_s == 1.5 and outcome.outage_from_s == 1.0
    assert outcome.acknowledged == 151 and outcome.acknowledged_lost == 1
    assert outcome.lost_sequence_numbers == [5]
    assert (outcome.rejected, outcome.indeterminate, outcome.indeterminate_applied) == (1, 1, 1)


def test_a_fault_as_the_writes_begin_counts_from_the_writers_start() -> None:
    """No write acknowledged before the fault (killed as the writer started): the outage
    runs from the writer's start to the first acknowledgement, not between two acks."""
    pattern = [(i / 100, False, True) for i in range(1, 250)]  # refused until 2.5 s
    pattern += [(2.5 + i / 100, True, False) for i in range(50)]
    outcome = write_outcome(_log(pattern), lambda keys: ["x"] * len(keys), fault_at_s=0.0)
    assert (outcome.write_outage_s, outcome.outage_from_s) == (2.5, 0.0)


def test_no_write_acknowledged_at_all_is_an_outage_for_the_whole_run() -> None:
    pattern = [(i / 100, False, True) for i in range(1, 301)]
    outcome = write_outcome(_log(pattern), lambda keys: [None] * len(keys), fault_at_s=0.0)
    assert (outcome.write_outage_s, outcome.outage_from_s) == (3.0, 0.0)


def _peer(name: str, sent: int, flags: str = "sentinel") -> dict[str, str]:
    return {"name": name, "flags": flags, "last-ping-sent": str(sent)}


def test_a_peer_counts_once_seen_with_no_ping_pending() -> None:
    # CI's case: one read lands while a PING is in flight; the next read sees it answered.
    reads = iter([[_peer("a", 0), _peer("b", 0)]])
    waits: list[float] = []
    first = [_peer("a", 0), _peer("b", 4)]
    assert peers_reached(lambda: next(reads), first, waits.append) == 2
    assert waits == [0.02]


def test_a_peer_never_seen_answered_does_not_count() -> None:
    # Pending too long (a wrong password answers NOAUTH, which never clears it), down
    # or disconnected: not read again, not counted.
    first = [
        _peer("a", 0),
        _peer("b", 1500),
        _peer("c", 0, "s_down,sentinel"),
        _peer("d", 0, "sentinel,disconnected"),
    ]
    assert peers_reached(lambda: pytest.fail("read again"), first, lambda _: None) == 1
    # In flight, but still unanswered once IN_FLIGHT_MS has passed: not counted.
    still = iter([[_peer("b", 4 + 20 * i)] for i in range(1, 100)])
    waits: list[float] = []
    assert peers_reached(lambda: next(still), [_peer("b", 4)], waits.append) == 0
    assert sum(waits) <= IN_FLIGHT_MS / 1000 + 1e-9
