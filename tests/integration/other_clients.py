"""Clients from other ecosystems, driven through the seed's operations with nothing
but the connection file: ioredis (Node.js, pinned in tests/clients/ioredis)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

IOREDIS_DIR = Path(__file__).resolve().parents[1] / "clients" / "ioredis"


def ioredis_seed_operations(connection_file: Path) -> tuple[dict[str, Any], str]:
    """Run the ioredis script on a connection file: its results and whatever it warned."""
    node = shutil.which("node")
    if node is None or not (IOREDIS_DIR / "node_modules" / "ioredis").is_dir():
        message = (
            "node and ioredis are needed: run scripts/setup.sh (npm ci in tests/clients/ioredis)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run(
        [node, str(IOREDIS_DIR / "seed_operations.mjs"), str(connection_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def assert_seed_operations_work(connection_file: Path) -> None:
    results, warnings = ioredis_seed_operations(connection_file)
    assert warnings == ""  # ioredis warns on stderr, e.g. when its ready check is refused
    assert results == {
        "session": True,
        "cache": True,
        "rate_limit": [1, 1, 1, 0],  # a bucket of 3 with no refill: the fourth is refused
        "leaderboard": ["bo", "cy"],
        "pubsub": "hello",
    }
