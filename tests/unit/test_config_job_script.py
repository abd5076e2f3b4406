"""The config job's install functions, run with busybox sh as in the image."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.core.plan_jobs import CONFIG_JOB_FUNCTIONS

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


# The deployment's own addresses, as the config job is given them.
ADDRESSES = (
    "DATA_NODES='10\\.0\\.0\\.10|10\\.0\\.0\\.11'\nSENTINELS='10\\.0\\.0\\.13|10\\.0\\.0\\.14'"
)


def _run(tmp_path: Path, call: str) -> None:
    script = (
        f"set -eu\nOWNER={os.getuid()}:{os.getgid()}\n{ADDRESSES}\n{CONFIG_JOB_FUNCTIONS}\n{call}\n"
    )
    done = subprocess.run([BUSYBOX, "sh", "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    path = tmp_path / "staged.conf"
    path.write_text("port 0\nmaxmemory 300mb\nreplicaof node-0 6379\n")
    return path


def test_first_install_takes_the_rendered_role(tmp_path: Path, staged: Path) -> None:
    target = tmp_path / "redis.conf"
    _run(tmp_path, f"install_keeping_role {staged} {target} 0600")
    assert target.read_text() == staged.read_text()
    assert (target.stat().st_mode & 0o777) == 0o600


def test_reinstall_keeps_the_role_sentinel_recorded(tmp_path: Path, staged: Path) -> None:
    target = tmp_path / "redis.conf"
    # After a failover Sentinel's CONFIG REWRITE left this node following node-2 ...
    target.write_text("port 0\nmaxmemory 256mb\nreplicaof node-2 6379\n")
    _run(tmp_path, f"install_keeping_role {staged} {target} 0600")
    # ... new settings arrive, the recorded role stays.
    assert target.read_text() == "port 0\nmaxmemory 300mb\nreplicaof node-2 6379\n"
    # A node that was promoted has no replicaof line: it stays a master.
    target.write_text("port 0\nmaxmemory 256mb\n")
    _run(tmp_path, f"install_keeping_role {staged} {target} 0600")
    assert target.read_text() == "port 0\nmaxmemory 300mb\n"


def test_reinstall_keeps_the_master_and_peers_sentinel_learned(tmp_path: Path) -> None:
    staged = tmp_path / "staged.conf"
    staged.write_text(
        "sentinel monitor mymaster 10.0.0.10 6379 2\n"
        "sentinel down-after-milliseconds mymaster 5000\n"
    )
    target = tmp_path / "sentinel.conf"
    target.write_text(
        "sentinel monitor mymaster 10.0.0.11 6379 2\n"
        "sentinel down-after-milliseconds mymaster 1000\n"
        "sentinel myid 0123abcd\n"
        "sentinel current-epoch 3\n"
        "sentinel known-replica mymaster 10.0.0.10 6379\n"
        "sentinel known-sentinel mymaster 10.0.0.14 26379 4567ef\n"
        "user app on #abc -@all\n"
    )
    _run(tmp_path, f"install_keeping_sentinel_state {staged} {target} 0600")
    assert target.read_text() == (
        "sentinel monitor mymaster 10.0.0.11 6379 2\n"  # the current master, not the first one
        "sentinel down-after-milliseconds mymaster 5000\n"  # the new setting
        "sentinel myid 0123abcd\n"
        "sentinel current-epoch 3\n"
        "sentinel known-replica mymaster 10.0.0.10 6379\n"
        "sentinel known-sentinel mymaster 10.0.0.14 26379 4567ef\n"
    )


def test_reinstall_drops_what_a_forged_hello_planted(tmp_path: Path) -> None:
    """A master, replica or peer at an address that is none of the deployment's nodes
    can only come from a forged hello: a re-install must not keep it."""
    staged = tmp_path / "staged.conf"
    staged.write_text("sentinel monitor mymaster 10.0.0.10 6379 2\n")
    target = tmp_path / "sentinel.conf"
    target.write_text(
        "sentinel monitor mymaster 10.0.0.99 6379 2\n"  # the attacker's "master"
        "sentinel current-epoch 9\n"
        "sentinel known-replica mymaster 10.0.0.11 6379\n"
        "sentinel known-replica mymaster 10.0.0.100 6379\n"
        "sentinel known-sentinel mymaster 10.0.0.13 26379 aa\n"
        "sentinel known-sentinel mymaster 10.0.0.131 26379 bb\n"  # a prefix of a real one
        "sentinel known-sentinel mymaster 10.0.0.200 26379 cc\n"
    )
    _run(tmp_path, f"install_keeping_sentinel_state {staged} {target} 0600")
    assert target.read_text() == (
        "sentinel monitor mymaster 10.0.0.10 6379 2\n"  # back to the plan's master
        "sentinel current-epoch 9\n"
        "sentinel known-replica mymaster 10.0.0.11 6379\n"
        "sentinel known-sentinel mymaster 10.0.0.13 26379 aa\n"
    )


def test_first_start_seeds_give_way_to_what_sentinel_recorded(tmp_path: Path) -> None:
    """The rendered file seeds the planned replicas for a fast first start; on a
    re-install, Sentinel's own record replaces them (no line twice, which would stop it)."""
    staged = tmp_path / "staged.conf"
    staged.write_text(
        "sentinel monitor mymaster 10.0.0.10 6379 2\n"
        "sentinel known-replica mymaster 10.0.0.11 6379\n"
    )
    target = tmp_path / "sentinel.conf"
    _run(tmp_path, f"install_keeping_sentinel_state {staged} {target} 0600")
    assert target.read_text() == staged.read_text()  # first install: seeds as rendered
    target.write_text(
        "sentinel monitor mymaster 10.0.0.11 6379 2\n"  # after a failover
        "sentinel myid 9999\n"
        "sentinel known-replica mymaster 10.0.0.10 6379\n"
        "sentinel known-sentinel mymaster 10.0.0.14 26379 2222\n"
    )
    _run(tmp_path, f"install_keeping_sentinel_state {staged} {target} 0600")
    assert target.read_text() == (
        "sentinel monitor mymaster 10.0.0.11 6379 2\n"
        "sentinel myid 9999\n"
        "sentinel known-replica mymaster 10.0.0.10 6379\n"  # the old master, now a replica
        "sentinel known-sentinel mymaster 10.0.0.14 26379 2222\n"
    )  # not the seed 10.0.0.11 (the master now), whatever Sentinel had not recorded


def test_an_unreadable_staged_file_fails_the_install(tmp_path: Path) -> None:
    target = tmp_path / "sentinel.conf"
    target.write_text("sentinel monitor mymaster 10.0.0.10 6379 2\n")
    script = (
        f"set -eu\nOWNER={os.getuid()}:{os.getgid()}\n{ADDRESSES}\n{CONFIG_JOB_FUNCTIONS}\n"
        f"install_keeping_sentinel_state {tmp_path / 'missing.conf'} {target} 0600\n"
    )
    done = subprocess.run([BUSYBOX, "sh", "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert done.returncode != 0
    assert target.read_text() == "sentinel monitor mymaster 10.0.0.10 6379 2\n"  # untouched


def test_a_new_sentinel_beside_recorded_ones_is_not_seeded_with_peers(tmp_path: Path) -> None:
    staged = tmp_path / "staged.conf"
    seeds = "sentinel known-sentinel mymaster 10.0.0.14 26379 " + "b" * 40 + "\n"
    staged.write_text("port 0\nsentinel myid " + "a" * 40 + "\n" + seeds)
    fresh, recorded = tmp_path / "s0.conf", tmp_path / "s1.conf"
    # A first deployment: nobody recorded anything, every seed stays.
    _run(tmp_path, f"note_recorded_sentinels {fresh} {recorded}\n"
                   f"install_keeping_sentinel_state {staged} {fresh} 0600")  # fmt: skip
    assert fresh.read_text() == staged.read_text()
    # A sentinel added (or whose volume was lost) beside one that recorded its own id:
    # its peers are learned from hellos, not seeded under ids they may not have.
    fresh.unlink()
    recorded.write_text("port 0\nsentinel myid " + "c" * 40 + "\n")
    _run(tmp_path, f"note_recorded_sentinels {fresh} {recorded}\n"
                   f"install_keeping_sentinel_state {staged} {fresh} 0600")  # fmt: skip
    assert fresh.read_text() == "port 0\nsentinel myid " + "a" * 40 + "\n"


def test_the_installed_marker_is_an_empty_owner_read_only_file(tmp_path: Path) -> None:
    marker = tmp_path / "files-installed"
    _run(tmp_path, f"mark_installed {marker}")
    assert marker.read_bytes() == b""
    assert (marker.stat().st_mode & 0o777) == 0o400
    assert not (tmp_path / "files-installed.new").exists()
