"""Removing a network while Docker still releases the endpoints of containers just removed."""

from __future__ import annotations

import copy
from typing import Any

import docker.errors
import pytest

from infra.backends.docker_engine import remove_network

ACTIVE = "error while removing network: network n has active endpoints"


class FakeEngine:
    """One network as Docker reports it: `busy` more removals refused for active
    endpoints (or until what is attached is forced off), `live` the containers that
    still exist. Each `networks.get` returns a fresh inspection, as docker-py does."""

    def __init__(
        self, busy: int, attached: dict[str, Any], live: frozenset[str] = frozenset()
    ) -> None:
        self.busy, self.attached, self.live = busy, attached, set(live)
        self.exists = True
        self.removals = 0
        self.disconnected: list[str] = []
        self.networks, self.containers = self, Containers(self)

    def get(self, name: str) -> FakeNetwork:
        if not self.exists:
            raise docker.errors.NotFound(f"network {name} not found")
        return FakeNetwork(self, {"Containers": copy.deepcopy(self.attached)})


class Containers:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine

    def get(self, container_id: str) -> object:
        if container_id not in self.engine.live:
            raise docker.errors.NotFound(f"container {container_id} not found")
        return object()


class FakeNetwork:
    def __init__(self, engine: FakeEngine, attrs: dict[str, Any]) -> None:
        self.engine, self.attrs = engine, attrs

    def remove(self) -> None:
        self.engine.removals += 1
        if self.engine.attached and self.engine.busy > 0:
            self.engine.busy -= 1
            raise docker.errors.APIError(ACTIVE)
        self.engine.exists = False

    def disconnect(self, container: str, force: bool = False) -> None:
        assert force
        self.engine.disconnected.append(container)
        self.engine.attached = {
            key: ep for key, ep in self.engine.attached.items() if ep["Name"] != container
        }


STALE = {"ep-1f2e": {"Name": "node-1"}}  # the endpoint of a container already removed


def test_a_network_busy_for_a_moment_is_removed_without_forcing_anything() -> None:
    engine = FakeEngine(busy=3, attached=STALE)
    remove_network(engine, "n", settle_s=5.0)  # type: ignore[arg-type]
    assert not engine.exists and engine.disconnected == [] and engine.removals == 4


def test_an_endpoint_that_outstays_the_wait_is_forced_off_then_the_network_removed() -> None:
    engine = FakeEngine(busy=10**6, attached=STALE)
    remove_network(engine, "n", settle_s=0.2)  # type: ignore[arg-type]
    assert engine.disconnected == ["node-1"] and not engine.exists


def test_a_container_that_still_exists_is_never_disconnected() -> None:
    """A user's application attached to the deployment's network: refuse, as Docker does."""
    engine = FakeEngine(
        busy=10**6, attached={"abc123": {"Name": "my-app"}}, live=frozenset({"abc123"})
    )
    with pytest.raises(docker.errors.APIError, match="active endpoints"):
        remove_network(engine, "n", settle_s=0.2)  # type: ignore[arg-type]
    assert engine.disconnected == [] and engine.exists


def test_a_network_already_gone_is_fine_and_other_errors_are_raised_at_once() -> None:
    gone = FakeEngine(busy=0, attached={})
    gone.exists = False
    remove_network(gone, "n")  # type: ignore[arg-type]

    class Refusing(FakeNetwork):
        def remove(self) -> None:
            self.engine.removals += 1
            raise docker.errors.APIError("permission denied")

    engine = FakeEngine(busy=0, attached=STALE)
    engine.get = lambda name: Refusing(engine, {"Containers": STALE})  # type: ignore[method-assign]
    with pytest.raises(docker.errors.APIError, match="permission denied"):
        remove_network(engine, "n", settle_s=60.0)  # type: ignore[arg-type]
    assert engine.removals == 1 and engine.disconnected == []
