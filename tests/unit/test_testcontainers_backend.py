"""The testcontainers backend's pieces that need no engine: the wait strategy's errors
carry the container's log, a node is built with the plan's hardening, and the sweep
judges only owners that are surely gone."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from infra.backends import testcontainers_backend
from infra.backends.testcontainers_backend import (
    ContainerLogWait,
    HealthcheckLogWait,
    PlanNode,
    _engine_started,
)
from infra.core.certs import CertificateSet
from infra.core.errors import DeploymentError, ReadinessTimeoutError
from infra.core.model import Topology
from infra.core.plan import build_plan
from infra.testing.sweep import owner_gone, owner_label
from tests.unit.conftest import TopologyFactory

CertsFor = Callable[[Topology], CertificateSet]


class FakeContainer:
    """What the wait strategy sees of a container: its status, exit code and log."""

    def __init__(self, status: str, restarts: int = 0) -> None:
        self.name, self.status = "t-redis", status
        self.attrs: dict[str, Any] = {"State": {"ExitCode": 1}, "RestartCount": restarts}

    def reload(self) -> None:
        self.reloads = getattr(self, "reloads", 0) + 1

    def logs(self, tail: int = 40) -> bytes:
        return b"FATAL CONFIG FILE ERROR (Redis 7.0.15)\n"

    def get_wrapped_container(self) -> Any:
        return self


def test_a_stopped_node_fails_at_once_with_its_log() -> None:
    wait = ContainerLogWait("authenticated TLS PING", lambda: False, timeout_s=30)
    with pytest.raises(DeploymentError, match="t-redis stopped before authenticated TLS PING"):
        wait.wait_until_ready(FakeContainer("exited"))  # type: ignore[arg-type]
    with pytest.raises(DeploymentError, match="FATAL CONFIG FILE ERROR"):
        wait.wait_until_ready(FakeContainer("exited"))  # type: ignore[arg-type]


def test_a_node_its_restart_policy_brought_back_fails_at_once_with_its_log() -> None:
    # Running again, between two crashes: the restart count gives it away (on code that
    # ignores it, this ends in a TimeoutError instead).
    wait = ContainerLogWait("authenticated TLS PING", lambda: False, timeout_s=1)
    with pytest.raises(DeploymentError, match=r"(?s)t-redis stopped before.*FATAL"):
        wait.wait_until_ready(FakeContainer("running", restarts=1))  # type: ignore[arg-type]


def test_a_node_that_never_answers_times_out_with_its_log() -> None:
    wait = ContainerLogWait("authenticated TLS PING", lambda: False, timeout_s=0)
    # A TimeoutError, as testcontainers' strategies raise, and one of ours: reported as
    # a message (the plugin and the CLI catch RedisInfraError), not as a traceback.
    with pytest.raises(
        ReadinessTimeoutError, match=r"(?s)no authenticated TLS PING within 0 s.*FATAL"
    ):
        wait.wait_until_ready(FakeContainer("running"))  # type: ignore[arg-type]
    assert issubclass(ReadinessTimeoutError, TimeoutError)


class FakeHealth(FakeContainer):
    """A running container whose Docker health check stays at `status`."""

    def __init__(self, status: str) -> None:
        super().__init__("running")
        self.attrs["State"]["Health"] = {"Status": status, "Log": [{"ExitCode": 1}]}


def test_a_node_whose_health_check_never_passes_times_out_with_its_log() -> None:
    # Unpublished nodes: testcontainers' wait for Docker's health check, its errors
    # carrying the log as ContainerLogWait's do.
    wait = HealthcheckLogWait().with_startup_timeout(0)
    timeout = r"t-redis: Docker's health check .* within 0 s \(status: starting\); its log:\nFATAL"
    with pytest.raises(ReadinessTimeoutError, match=timeout):
        wait.wait_until_ready(FakeHealth("starting"))  # type: ignore[arg-type]
    # Reported unhealthy: at once, not at the timeout.
    wait = HealthcheckLogWait().with_startup_timeout(60)
    with pytest.raises(DeploymentError, match=r"(?s)t-redis: .*reported unhealthy.*FATAL") as got:
        wait.wait_until_ready(FakeHealth("unhealthy"))  # type: ignore[arg-type]
    assert not isinstance(got.value, TimeoutError)


class FakeClock:
    """The wait strategy's clock: a sleep moves it on at once, so the test counts what
    the loop does per second of the node's start, whatever this machine's load."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_engine_is_asked_about_the_container_far_less_often_than_the_node_is_tried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tries every 10 ms (a node answers ~20 ms after its start); each reload is an engine
    call, made at most every 0.1 s (on code that reloads at every try: 20 of them)."""
    clock = FakeClock()
    monkeypatch.setattr(testcontainers_backend, "time", clock)
    tries = iter([False] * 20 + [True])
    wait = ContainerLogWait("authenticated TLS PING", lambda: next(tries), timeout_s=30)
    container = FakeContainer("running")
    wait.wait_until_ready(container)  # type: ignore[arg-type]
    assert next(tries, "done") == "done"  # every try was made, the 21st answered
    assert clock.now == pytest.approx(0.2)  # 20 pauses of 10 ms
    assert 1 <= getattr(container, "reloads", 0) <= 2  # one per 0.1 s


def test_a_node_is_built_with_the_plans_hardening(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    topology = make_topology("single")
    plan = build_plan(topology, certificates_for(topology))
    spec = plan.containers[0]
    node = PlanNode(
        spec,
        {"health_password": "x"},
        16379,
        {"owner": "me"},
        ContainerLogWait("", lambda: True, 1),
    )
    kwargs = node._kwargs
    assert kwargs["user"] == spec.user and kwargs["read_only"] is True
    assert kwargs["cap_drop"] == ["ALL"] and "no-new-privileges:true" in kwargs["security_opt"]
    assert kwargs["mem_limit"] == kwargs["memswap_limit"] == spec.memory_bytes
    assert kwargs["pids_limit"] == spec.pids_limit and kwargs["labels"]["owner"] == "me"
    published: dict[str, Any] = dict(
        node.ports
    )  # testcontainers types it int, Docker takes (ip, port)
    assert published == {f"{spec.ports[0].container_port}/tcp": ("127.0.0.1", 16379)}
    assert node.tmpfs == spec.tmpfs and node.image == spec.image


def test_only_an_owner_surely_gone_is_swept() -> None:
    host, me = socket.gethostname(), os.getpid()
    assert not owner_gone(owner_label())  # this very process
    assert owner_gone(f"{host}:{me}:1")  # same pid, another start time: a reused pid
    assert not owner_gone(f"{host}:{me}:?")  # no start time known, but the pid runs
    assert owner_gone(f"{host}:{2**22 + 1}:?")  # beyond pid_max: no such process
    assert not owner_gone(f"another-host:{2**22 + 1}:1")  # another machine's: not ours


def test_the_next_wave_waits_for_the_engine_to_start_a_node_not_for_it_to_be_ready(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    topology = make_topology("single")
    spec = build_plan(topology, certificates_for(topology)).containers[0]
    node = PlanNode(
        spec, {"health_password": "x"}, 16379, {}, ContainerLogWait("", lambda: True, 1)
    )
    starting: Future[None] = Future()  # its start (and wait strategy) still running
    engine_started = node._docker.started  # type: ignore[attr-defined]
    threading.Timer(0.1, engine_started.set).start()
    _engine_started(node, starting)  # returns once started, though `starting` never ends
    assert engine_started.is_set() and not starting.done()
    # A start that fails before the engine starts the node: its error, at once.
    failed = PlanNode(
        spec, {"health_password": "x"}, 16379, {}, ContainerLogWait("", lambda: True, 1)
    )
    refused: Future[None] = Future()
    refused.set_exception(DeploymentError("t-redis could not start: no such program"))
    with pytest.raises(DeploymentError, match="could not start"):
        _engine_started(failed, refused)
