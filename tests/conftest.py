"""Fixtures every test folder shares.

The Sentinel group of the redis-infra plugin's fixtures fails over at
down-after-milliseconds 1000 here (the failover target's setting), as an application
team would set it for fast failover tests; the drills (tests/integration/
test_sentinel.py) and the example application's failover test (tests/example_app/)
use the same group, one bring-up for both.
"""

from __future__ import annotations

from infra.testing.plugin import redis_deployment_factory

SENTINEL_DOWN_AFTER_MS = 1000

redis_sentinel_deployment = redis_deployment_factory(
    "sentinel", settings={"sentinel.down_after_ms": SENTINEL_DOWN_AFTER_MS}
)
