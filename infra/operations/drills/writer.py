"""Sequence-numbered, idempotent writes during a fault, every outcome recorded.

Each write is `SET <prefix>:<seq> <seq>`: writing it twice changes nothing, so a
write whose reply was lost (indeterminate) cannot corrupt the count. Nothing is
retried: a failed sequence number stays failed and the next write gets the next
number, so the record says exactly what the application saw. The loop is paced
and bounded in count and time, and stops by itself.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import redis


class NotSentError(redis.ConnectionError):
    """The write failed before the command left the client (e.g. no master to connect to)."""


class WriteTarget(Protocol):
    """Sends one write; returns the node that acknowledged it (None if unknown)."""

    def write(self, key: str, value: str) -> str | None: ...

    def recover(self) -> None:
        """After an error: drop connections, so the next write finds the master anew."""

    def close(self) -> None: ...


@dataclass
class WriteRecord:
    seq: int
    sent_s: float  # seconds since the writer started
    done_s: float
    acknowledged: bool
    node: str | None = None  # who acknowledged it
    error: str | None = None
    # A failed write is "rejected" when it surely was not applied (refused by the server,
    # or never sent) and "indeterminate" when the reply was lost (timeout, reset).
    rejected: bool = False


@dataclass
class WriteLog:
    prefix: str
    records: list[WriteRecord] = field(default_factory=list)

    def key(self, seq: int) -> str:
        return f"{self.prefix}:{seq:09d}"

    def acknowledged(self) -> list[WriteRecord]:
        return [r for r in self.records if r.acknowledged]

    def failed(self) -> list[WriteRecord]:
        return [r for r in self.records if not r.acknowledged]

    def indeterminate(self) -> list[WriteRecord]:
        return [r for r in self.records if not r.acknowledged and not r.rejected]

    def longest_gap(self, after_s: float) -> tuple[float, float, float]:
        """Longest stretch without an acknowledged write that ends after `after_s`.

        Returns (seconds, last ack before it, first ack after it): the write outage
        an application saw around a fault injected at `after_s`. The writer's start
        counts as the stretch's beginning when no write was acknowledged before the
        fault (a fault injected as the writes began), and its last write as the end
        when none was acknowledged after it.
        """
        points = [0.0, *sorted(r.done_s for r in self.records if r.acknowledged)]
        best = (0.0, after_s, after_s)
        for before, after in itertools.pairwise(points):
            if after >= after_s and after - before > best[0]:
                best = (after - before, before, after)
        if points[-1] < after_s or len(points) == 1:  # nothing acknowledged since the fault
            last = self.records[-1].done_s if self.records else after_s
            best = max(best, (last - points[-1], points[-1], last))
        return best


class SequencedWriter:
    """Writes in a background thread at a steady pace until stopped or bounded out."""

    def __init__(
        self,
        target: WriteTarget,
        prefix: str,
        *,
        rate_per_s: float = 1000.0,
        max_seconds: float = 180.0,
        max_writes: int = 400_000,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.target = target
        self.log = WriteLog(prefix)
        self.interval = 1.0 / rate_per_s
        self.max_seconds = max_seconds
        self.max_writes = max_writes
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"writer-{prefix}", daemon=True)
        self.started_at = 0.0
        self.started_epoch = 0.0

    def now(self) -> float:
        """Seconds on the writer's clock (the one its records use)."""
        return self.clock() - self.started_at

    def epoch(self, writer_seconds: float) -> float:
        """Wall-clock time of a moment on the writer's clock (to line up other records)."""
        return self.started_epoch + writer_seconds

    def start(self) -> SequencedWriter:
        self.started_at = self.clock()
        self.started_epoch = time.time()
        self._thread.start()
        return self

    def stop(self) -> WriteLog:
        self._stop.set()
        self._thread.join(timeout=30)
        self.target.close()
        return self.log

    def _run(self) -> None:
        seq = 0
        next_at = self.clock()
        while not self._stop.is_set() and seq < self.max_writes and self.now() < self.max_seconds:
            sent = self.now()
            key = self.log.key(seq)
            try:
                node = self.target.write(key, str(seq))
                self.log.records.append(WriteRecord(seq, sent, self.now(), True, node))
            except (redis.RedisError, OSError) as exc:
                rejected = isinstance(exc, NotSentError | redis.ResponseError)
                error = f"{type(exc).__name__}: {exc}"
                self.log.records.append(
                    WriteRecord(seq, sent, self.now(), False, error=error, rejected=rejected)
                )
                self.target.recover()
            seq += 1
            next_at += self.interval
            pause = next_at - self.clock()
            if pause > 0:
                time.sleep(pause)
            else:  # behind schedule (a stalled write): do not burst to catch up
                next_at = self.clock()
