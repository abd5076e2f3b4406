"""The operator jobs' shell functions (redis/jobs/cluster-job.sh), run with busybox sh
as in the image, against a fake redis-cli that answers as a sentinel would."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from infra.core.cluster_jobs import _FUNCTIONS

BUSYBOX = shutil.which("busybox") or "/bin/busybox"

# `redis-cli sentinel master|replicas` prints one element per line, nested ones flattened.
FAKE_CLI = """#!/bin/sh
case "$*" in
  *"sentinel master mymaster"*)
    printf 'name\\nmymaster\\nnum-other-sentinels\\n%s\\n' "$(cat "$STATE/others")" ;;
  *"sentinel replicas mymaster"*) cat "$STATE/replicas" ;;
  *) exit 1 ;;
esac
"""


def _replica(flags: str) -> str:
    return f"name\n10.0.0.11:6379\nflags\n{flags}\nmaster-link-status\nok\n"


def _wait(
    tmp_path: Path, others: int, replicas: str, rounds: int = 3
) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "redis-cli").write_text(FAKE_CLI)
    (bin_dir / "redis-cli").chmod(0o755)
    (tmp_path / "others").write_text(str(others))
    (tmp_path / "replicas").write_text(replicas)
    script = (
        f"set -eu\nTLS=''\nADMIN_USER=admin\nPORT=6379\nWAIT_ROUNDS={rounds}\n{_FUNCTIONS}\n"
        "wait_converged 26379 mymaster 2 2 10.0.0.13 10.0.0.14\n"
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STATE": str(tmp_path)}
    return subprocess.run([BUSYBOX, "sh", "-c", script], capture_output=True, text=True,
                          timeout=30, env=env)  # fmt: skip


def test_a_converged_group_is_ready(tmp_path: Path) -> None:
    done = _wait(tmp_path, 2, _replica("slave") + _replica("slave"))
    assert done.returncode == 0, done.stderr
    assert "sentinel group converged" in done.stdout


def test_a_replica_still_down_or_a_missing_sentinel_is_not(tmp_path: Path) -> None:
    down = _wait(tmp_path, 2, _replica("slave") + _replica("s_down,slave,disconnected"))
    assert down.returncode != 0
    assert "to see 2 replicas and 2 sentinels" in down.stderr
    alone = _wait(tmp_path, 1, _replica("slave") + _replica("slave"))
    assert alone.returncode != 0
