"""A container's memory as its cgroup sees it: the anonymous part (the process's own
pages, not the page cache of the files it writes), read while a test runs."""

from __future__ import annotations

import threading
import time
from pathlib import Path


def memory_stat(container_id: str) -> Path | None:
    for candidate in (
        f"/sys/fs/cgroup/memory/docker/{container_id}/memory.stat",  # cgroup v1
        f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.stat",  # v2, systemd
        f"/sys/fs/cgroup/docker/{container_id}/memory.stat",  # v2, cgroupfs
    ):
        if Path(candidate).exists():
            return Path(candidate)
    return None


class PeakAnonymousMemory(threading.Thread):
    """Samples the cgroup's anonymous memory (rss, not page cache) every 10 ms."""

    def __init__(self, stat: Path) -> None:
        super().__init__(daemon=True)
        self.stat = stat
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                self.peak = max(self.peak, anonymous_bytes(self.stat))
            except FileNotFoundError:
                return  # the container is gone (a failed test removed it)
            time.sleep(0.01)


def anonymous_bytes(stat: Path) -> int:
    for line in stat.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key in ("rss", "anon"):
            return int(value)
    raise ValueError(f"{stat} has neither rss nor anon")
