"""redis-infra: hardened Redis on Docker as code, with drills that prove it."""
