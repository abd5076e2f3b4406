"""Hardened Redis deployments for application test suites: testcontainers-style
objects (`SingleDeployment`, `SentinelDeployment`, `ClusterDeployment`) and the pytest
plugin (`infra.testing.plugin`, entry point `redis_infra`) that serves them as fixtures."""

from infra.testing.deployment import RedisDeployment
from infra.testing.topologies import ClusterDeployment, SentinelDeployment, SingleDeployment

__all__ = ["ClusterDeployment", "RedisDeployment", "SentinelDeployment", "SingleDeployment"]
