"""The application's own tests, written as its team would: the redis-infra plugin's
fixtures give a real Sentinel group with TLS and the production ACLs.

- `redis_sentinel`: a client that follows the master; every key is deleted after
  each test, so tests share one group and never see each other's data;
- `redis_sentinel_deployment`: the group itself, to break it on purpose.
"""

from __future__ import annotations

import warnings

import pytest

import redis
from infra.testing import SentinelDeployment
from tests.example_app.shop import Leaderboard, RateLimit, Sessions

pytestmark = pytest.mark.integration  # real containers, as every fixture here


def test_a_session_lives_until_it_ends(redis_sentinel: redis.Redis) -> None:
    sessions = Sessions(redis_sentinel)
    token = sessions.create("alice", {"cart": ["book"]})
    assert sessions.get(token) == {"user": "alice", "cart": ["book"]}
    assert 0 < redis_sentinel.ttl(f"app:session:{token}") <= 1800
    sessions.end(token)
    assert sessions.get(token) is None


def test_the_rate_limit_lets_capacity_through_then_refuses(redis_sentinel: redis.Redis) -> None:
    limit = RateLimit(redis_sentinel, capacity=5, refill_per_s=0.01)
    assert [limit.allow("api-key-1") for _ in range(7)] == [True] * 5 + [False] * 2
    assert limit.allow("api-key-2")  # another client has its own bucket


def test_the_leaderboard_ranks_by_points(redis_sentinel: redis.Redis) -> None:
    board = Leaderboard(redis_sentinel)
    for player, points in [("ann", 30), ("bob", 50), ("cid", 10), ("ann", 25)]:
        board.score(player, points)
    assert board.top(2) == [("ann", 55.0), ("bob", 50.0)]


def test_the_app_keeps_working_across_a_master_failover(
    redis_sentinel: redis.Redis, redis_sentinel_deployment: SentinelDeployment
) -> None:
    group = redis_sentinel_deployment
    sessions, board = Sessions(redis_sentinel), Leaderboard(redis_sentinel)
    limit = RateLimit(redis_sentinel, capacity=3, refill_per_s=0.01)
    token = sessions.create("alice", {})
    board.score("ann", 10)
    assert limit.allow("api-key-1")
    assert redis_sentinel.wait(2, 5000) == 2  # both replicas hold it: no failover loses it

    old = group.master()
    group.kill(old)
    try:
        new = group.wait_for_new_master(old, timeout_s=30)  # every sentinel names it
    finally:
        group.start_node(old)  # back as a replica of the new master

    # The same client object: redis-py asks the sentinels for the new master, and
    # reads work at once.
    assert sessions.get(token) == {"user": "alice"}
    assert board.top(1) == [("ann", 10.0)]
    # Writes wait for a replica to follow the new master: the group refuses them with
    # NOREPLICAS until one does (min-replicas-to-write 1, so no write lands on a master
    # alone). CI once wrote in that gap; an application retries such writes.
    group.wait_converged()
    now = group.master()
    assert now != old  # the old master came back as a replica
    if now != new:  # legal: at the test group's down-after of 1 s, a busy CI box once
        # stalled the new master long enough for a second failover (the app kept working)
        warnings.warn(f"Sentinel failed over again after {new}: {now} is master", stacklevel=1)
    board.score("ann", 5)
    assert board.top(1) == [("ann", 15.0)]
    assert [limit.allow("api-key-1") for _ in range(3)] == [True, True, False]
