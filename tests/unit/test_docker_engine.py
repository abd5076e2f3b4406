"""Removing a network while Docker still releases the endpoints of containers just removed."""

from __future__ import annotations

from typing import Any

import docker.errors
import pytest

from infra.backends.docker_engine import remove_network

ACTIVE = "error while removing network: network n has active endpoints"


class FakeNetwork:
    """A network that reports active endpoints for its first `busy` removals, or until
    whatever is still attached is forced off."""

    def __init__(self, busy: int, attached: dict[str, Any]) -> None:
        self.busy, self.attrs = busy, {"Containers": attached}
        self.removed = False
        self.disconnected: list[str] = []

    def remove(self) -> None:
        if self.busy > 0 and self.attrs["Containers"]:
            self.busy -= 1
            raise docker.errors.APIError(ACTIVE)
        self.removed = True

    def disconnect(self, container: str, force: bool = False) -> None:
        assert force
        self.disconnected.append(container)
        self.attrs["Containers"] = {}


class FakeClient:
    def __init__(self, network: FakeNetwork | None) -> None:
        self.network = network
        self.networks = self

    def get(self, name: str) -> FakeNetwork:
        if self.network is None or self.network.removed:
            raise docker.errors.NotFound(f"network {name} not found")
        return self.network


def test_a_network_busy_for_a_moment_is_removed_without_forcing_anything() -> None:
    network = FakeNetwork(busy=3, attached={"ep": {"Name": "node-1"}})
    remove_network(FakeClient(network), "n", settle_s=5.0)  # type: ignore[arg-type]
    assert network.removed and network.disconnected == []


def test_an_endpoint_that_outstays_the_wait_is_forced_off_then_the_network_removed() -> None:
    network = FakeNetwork(busy=10**6, attached={"ep": {"Name": "node-1"}})
    remove_network(FakeClient(network), "n", settle_s=0.2)  # type: ignore[arg-type]
    assert network.disconnected == ["node-1"] and network.removed


def test_a_network_already_gone_is_fine_and_other_errors_are_not_hidden() -> None:
    remove_network(FakeClient(None), "n")  # type: ignore[arg-type]

    class Refusing(FakeNetwork):
        def remove(self) -> None:
            raise docker.errors.APIError("permission denied")

    with pytest.raises(docker.errors.APIError, match="permission denied"):
        remove_network(FakeClient(Refusing(0, {})), "n")  # type: ignore[arg-type]
