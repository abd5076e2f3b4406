"""Fixtures every test folder shares.

The Sentinel group of the redis-infra plugin's fixtures fails over at
down-after-milliseconds 1000 here (the failover target's setting), as an application
team would set it for fast failover tests; the drills (tests/integration/
test_sentinel.py) and the example application's failover test (tests/example_app/)
use the same group, one bring-up for both.
"""

from __future__ import annotations

import pytest

from infra.testing.plugin import redis_deployment_factory

SENTINEL_DOWN_AFTER_MS = 1000

redis_sentinel_deployment = redis_deployment_factory(
    "sentinel", settings={"sentinel.down_after_ms": SENTINEL_DOWN_AFTER_MS}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests on the session's Sentinel group run last, together: the group then
    lives for them only, not for the whole run (its sentinels' TLS pings and hellos
    cost CPU the other tests on these two cores would feel). A matter of speed only:
    each test passes in any order."""
    group = {"redis_sentinel_deployment", "redis_sentinel"}  # the client asks for the group
    users = [item for item in items if group & set(getattr(item, "fixturenames", ()))]
    others = [item for item in items if item not in users]
    items[:] = others + users
