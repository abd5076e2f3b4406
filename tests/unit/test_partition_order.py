"""A partition's heal reconnects the node before it lifts the blackhole: with neither in
place, the node's connection attempts leave by the publish network's default route and
hang half-open (SYN_SENT) for tens of seconds, which held a healed Cluster master's view
of its peers failing for 8-21 s (once ~90 s)."""

from __future__ import annotations

from typing import Any, ClassVar

from infra.operations.drills.faults import Faults


class FakeContainer:
    name = "node"
    attrs: ClassVar[dict[str, Any]] = {
        "NetworkSettings": {"Networks": {"net": {"IPAMConfig": {"IPv4Address": "10.9.0.5"}}}},
        "Config": {"Image": "img"},
    }


class FakeNetwork:
    attrs: ClassVar[dict[str, Any]] = {"IPAM": {"Config": [{"Subnet": "10.9.0.0/24"}]}}

    def __init__(self, calls: list[str]) -> None:
        self.calls, self.attached = calls, True

    @property
    def containers(self) -> list[FakeContainer]:
        return [FakeContainer()] if self.attached else []

    def reload(self) -> None:
        pass

    def disconnect(self, container: str) -> None:
        self.calls.append("disconnect")
        self.attached = False

    def connect(self, container: str, **options: Any) -> None:
        self.calls.append(f"connect {options['ipv4_address']}")
        self.attached = True


class FakeEngine:
    """One node on one network; records, in order, what a partition and its heal do."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.network = FakeNetwork(self.calls)
        self.networks, self.containers = self, self

    def get(self, name: str) -> Any:
        return self.network if name == "net" else FakeContainer()

    def run(self, image: str, command: list[str], **options: Any) -> None:
        """A helper in the node's network namespace."""
        assert options["cap_add"] == ["NET_ADMIN"] and options["network_mode"] == "container:node"
        self.calls.append(command[-1])


def test_heal_reconnects_before_it_lifts_the_blackhole() -> None:
    engine = FakeEngine()
    faults = Faults(engine, "net")  # type: ignore[arg-type]
    faults.partition("node")
    faults.heal("node", "alias")
    blackhole, disconnect, connect, lift = engine.calls
    assert "ip rule add to 10.9.0.0/24" in blackhole and disconnect == "disconnect"
    assert connect == "connect 10.9.0.5" and "ip rule del to 10.9.0.0/24" in lift


def test_heal_of_a_node_never_cut_off_changes_nothing() -> None:
    engine = FakeEngine()
    Faults(engine, "net").heal("node", "alias")  # type: ignore[arg-type]
    assert engine.calls == []


def test_heal_by_another_faults_puts_the_node_back_at_its_fixed_address() -> None:
    """A partition and its heal from two Faults (two calls of a fixture's helper, two
    processes): the second learned nothing from the first, yet Sentinel's peers know the
    node only by the address the plan fixed, so the heal must put it back there."""
    engine = FakeEngine()
    Faults(engine, "net").partition("node")  # type: ignore[arg-type]
    healer = Faults(engine, "net", {"node": "10.9.0.5"})  # type: ignore[arg-type]
    healer.heal("node", "alias")
    assert "connect 10.9.0.5" in engine.calls
