"""Failure drills: inject a fault into a running deployment while writing, and measure
what an application saw (write outage, acknowledged writes lost, failover times)."""
