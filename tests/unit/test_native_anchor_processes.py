"""The native anchor's processes: a node that cannot start fails the anchor at once,
with its log, and its ports stay clear of the kernel's ephemeral range."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from infra.operations import native_bring_up
from infra.operations.native_bring_up import AnchorError, _free_ports, _spawn, _Spawned, _until


def test_a_process_that_exits_fails_the_wait_at_once_with_its_log(tmp_path: Path) -> None:
    started: list[_Spawned] = []
    script = "echo 'Could not create server TCP listening socket'; exit 3"
    _spawn("redis-server on port 1", ["sh", "-c", script], tmp_path / "log", started)
    began = time.monotonic()
    with pytest.raises(AnchorError, match=r"redis-server on port 1 exited \(3\)") as failed:
        _until(lambda: False, started, timeout_s=30)
    assert "Could not create server TCP listening socket" in str(failed.value)
    assert time.monotonic() - began < 10  # not the 30 s timeout


def test_a_wait_that_times_out_says_so_with_every_log(tmp_path: Path) -> None:
    started: list[_Spawned] = []
    _spawn(
        "sentinel on port 2", ["sh", "-c", "echo still starting; sleep 30"], tmp_path / "l", started
    )
    try:
        with pytest.raises(AnchorError, match="not ready within 2 s") as failed:
            _until(lambda: False, started, timeout_s=2)
        assert "the sentinel on port 2:\nstill starting" in str(failed.value)
    finally:
        started[0].process.kill()
        started[0].process.wait()


@pytest.mark.parametrize("with_bus", [False, True])
def test_ports_and_bus_ports_are_below_the_ephemeral_range(
    with_bus: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(native_bring_up, "_ephemeral_low", lambda: 32768)
    ports = _free_ports(6, with_bus=with_bus)
    assert len(set(ports)) == 6
    highest = max(ports) + (10000 if with_bus else 0)
    assert min(ports) >= 10000 and highest < 32768
