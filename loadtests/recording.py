"""Exact timings, cheap to take: a few appends per request, histograms once a second.

Every request records when it was meant to start (its place on an open-loop
schedule; in a closed loop, when it was sent), when it was sent and when its reply
came. From those, per request type and per wall-clock second:

- response time, from the intended start: what an application would see, queueing
  in the generator included (corrected for coordinated omission);
- service time, from the send: what the network and Redis took;
- start lag, intended start to send: how far behind its schedule the generator ran.

All in HDR histograms at microsecond resolution (Locust rounds to milliseconds,
Redis answers in tens of microseconds). Workers ship what they folded with each
stats report and start afresh; the master merges, so percentiles stay exact across
processes. Each process also samples its own CPU (getrusage) once a second: a
generator near saturation measures itself.
"""

from __future__ import annotations

import base64
import resource
import time
from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000  # a minute: anything slower is a timeout anyway
SIGNIFICANT_DIGITS = 3
PERCENTILES = {"p50_us": 50.0, "p90_us": 90.0, "p95_us": 95.0, "p99_us": 99.0, "p999_us": 99.9}


# Requests the schedule asked for that never finished (still waiting for a connection,
# never sent, or in flight when the run stopped): errors, timed until the stop.
UNFINISHED = "schedule.unfinished"


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def _encode(histogram: HdrHistogram) -> str:
    return base64.b64encode(histogram.encode()).decode()


def _add(into: HdrHistogram, encoded: str) -> None:
    into.decode_and_add(base64.b64decode(encoded))


def _record_counts(histogram: HdrHistogram, values: Any) -> None:
    """hdrh's record_value for a whole array: the same bucket arithmetic, vectorised
    (one value at a time in Python costs more than the request it measures)."""
    if not len(values):
        return
    values = values.astype(np.int64)
    magnitude = histogram.unit_magnitude
    half_magnitude = histogram.sub_bucket_half_count_magnitude
    # bit_length(value | sub_bucket_mask): the smallest power of two holding it
    ceiling = np.floor(np.log2(values | histogram.sub_bucket_mask)).astype(np.int64) + 1
    bucket = ceiling - magnitude - (half_magnitude + 1)
    sub_bucket = values >> (bucket + magnitude)
    index = ((bucket + 1) << half_magnitude) + sub_bucket - histogram.sub_bucket_half_count
    tally = np.bincount(index, minlength=0)
    for position in np.flatnonzero(tally).tolist():
        histogram.counts[position] += int(tally[position])
    histogram.total_count += len(values)
    histogram.min_value = min(histogram.min_value, int(values.min()))
    histogram.max_value = max(histogram.max_value, int(values.max()))


def percentiles(histogram: HdrHistogram) -> dict[str, int | None]:
    count = histogram.get_total_count()
    figures: dict[str, int | None] = {
        name: histogram.get_value_at_percentile(p) if count else None
        for name, p in PERCENTILES.items()
    }
    figures["max_us"] = histogram.get_max_value() if count else None
    return figures


@dataclass
class Series:
    """One request type's (or one second's) response and service times and errors."""

    response: HdrHistogram = field(default_factory=new_histogram)
    service: HdrHistogram = field(default_factory=new_histogram)
    errors: int = 0

    def add_many(self, response_us: Any, service_us: Any, ok: Any) -> None:
        """Arrays of microseconds (clipped to the histogram's range) and success flags."""
        _record_counts(self.response, response_us)
        _record_counts(self.service, service_us)
        self.errors += int(len(ok) - np.count_nonzero(ok))

    def add(self, response_us: int, service_us: int, ok: bool) -> None:
        self.response.record_value(max(LOWEST_US, min(HIGHEST_US, response_us)))
        self.service.record_value(max(LOWEST_US, min(HIGHEST_US, service_us)))
        if not ok:
            self.errors += 1

    @property
    def count(self) -> int:
        return int(self.response.get_total_count())

    def encode(self) -> dict[str, Any]:
        return {
            "response": _encode(self.response),
            "service": _encode(self.service),
            "errors": self.errors,
        }

    def merge(self, encoded: dict[str, Any]) -> None:
        _add(self.response, encoded["response"])
        _add(self.service, encoded["service"])
        self.errors += int(encoded["errors"])


class Recorder:
    """Per process: raw timings appended as requests finish, folded into histograms."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.ids: dict[str, int] = {}
        self.scenario_of: dict[str, str] = {}
        self._type = array("H")
        self._intended = array("q")
        self._sent = array("q")
        self._done = array("q")
        self._waited = array("q")  # waiting for a free connection: not the generator's lag
        self._ok = bytearray()
        self.by_type: dict[str, Series] = defaultdict(Series)
        self.by_second: dict[int, Series] = defaultdict(Series)
        self.lag = new_histogram()
        # perf_counter_ns -> epoch seconds, to file each request under its wall second
        self._epoch_offset_ns = time.time_ns() - time.perf_counter_ns()
        self.cpu: list[float] = []  # this process's CPU, a fraction of one core, per second
        self._last_cpu = (time.monotonic(), self._cpu_seconds())
        # numpy's first np.unique costs ~10 ms (a lazy import): pay it now, not mid-run.
        np.unique(np.arange(3))
        _record_counts(new_histogram(), np.array([LOWEST_US]))
        self.cpu_by_worker: dict[str, list[float]] = {}  # what merged reports said
        # Epoch seconds of the first and last reply, and (open loop) the schedules kept:
        # the run's length is measured from them, not from Locust's start and stop.
        self.first_done_s: float | None = None
        self.last_done_s: float | None = None
        self.schedules: dict[str, dict[str, float]] = {}

    def type_id(self, name: str, scenario: str) -> int:
        found = self.ids.get(name)
        if found is None:
            found = self.ids[name] = len(self.names)
            self.names.append(name)
            self.scenario_of[name] = scenario
        return found

    def record(
        self,
        type_id: int,
        intended_ns: int,
        sent_ns: int,
        done_ns: int,
        ok: bool,
        waited_ns: int = 0,
    ) -> None:
        """One finished request. `waited_ns`: the part of intended -> sent it spent
        waiting for a free connection (Redis still busy with the previous requests),
        which counts in its response time but not in the generator's start lag."""
        self._type.append(type_id)
        self._intended.append(intended_ns)
        self._sent.append(sent_ns)
        self._done.append(done_ns)
        self._waited.append(waited_ns)
        self._ok.append(ok)

    def fold(self) -> None:
        """Move what was appended into the histograms (once a second, off the hot path).

        Vectorised: microsecond values repeat (a few hundred distinct ones a second), so
        each histogram takes each distinct value once, with its count; recording value
        by value in hdrh's Python would cost more than the requests it measures.
        """
        if not self._type:
            return
        types = np.frombuffer(self._type, dtype=np.uint16).copy()
        intended = np.frombuffer(self._intended, dtype=np.int64).copy()
        sent = np.frombuffer(self._sent, dtype=np.int64).copy()
        done = np.frombuffer(self._done, dtype=np.int64).copy()
        waited = np.frombuffer(self._waited, dtype=np.int64).copy()
        ok = np.frombuffer(bytes(self._ok), dtype=np.uint8).astype(bool)
        self._type, self._intended, self._sent = array("H"), array("q"), array("q")
        self._done, self._waited, self._ok = array("q"), array("q"), bytearray()
        response = np.clip((done - intended) // 1000, LOWEST_US, HIGHEST_US)
        service = np.clip((done - sent) // 1000, LOWEST_US, HIGHEST_US)
        lag = np.clip((sent - intended - waited) // 1000, LOWEST_US, HIGHEST_US)
        seconds = (done + self._epoch_offset_ns) // 1_000_000_000
        first, last = (
            (int(done.min()) + self._epoch_offset_ns) / 1e9,
            (int(done.max()) + self._epoch_offset_ns) / 1e9,
        )
        self.first_done_s = min(first, self.first_done_s or first)
        self.last_done_s = max(last, self.last_done_s or last)
        _record_counts(self.lag, lag)
        for kind in np.unique(types):
            mask = types == kind
            self.by_type[self.names[int(kind)]].add_many(response[mask], service[mask], ok[mask])
        for second in np.unique(seconds):
            mask = seconds == second
            self.by_second[int(second)].add_many(response[mask], service[mask], ok[mask])

    def sample_cpu(self) -> None:
        now, used = time.monotonic(), self._cpu_seconds()
        before_at, before_used = self._last_cpu
        if now > before_at:
            self.cpu.append((used - before_used) / (now - before_at))
        self._last_cpu = (now, used)

    @staticmethod
    def _cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def scheduled(self, worker: str, start_ns: int, stop_ns: int, requests: int) -> None:
        """An open-loop schedule: its window (perf_counter ns) and the requests it asks."""
        offset = self._epoch_offset_ns
        self.schedules[worker] = {
            "start": (start_ns + offset) / 1e9,
            "stop": (stop_ns + offset) / 1e9,
            "requests": requests,
        }

    def record_delivery(self, name: str, scenario: str, latency_us: int) -> None:
        """A pub/sub delivery: publish to receipt, no schedule of its own."""
        self.type_id(name, scenario)
        self.by_type[name].add(latency_us, latency_us, True)

    # -- shipping and merging ----------------------------------------------------------

    def take(self, worker: str = "local") -> dict[str, Any]:
        """Everything folded since the last take, encoded; the recorder starts afresh."""
        self.fold()
        data = {
            "types": {name: series.encode() for name, series in self.by_type.items()},
            "seconds": {str(second): s.encode() for second, s in self.by_second.items()},
            "scenarios": dict(self.scenario_of),
            "lag": _encode(self.lag),
            "cpu": {worker: list(self.cpu)},
            "window": [self.first_done_s, self.last_done_s],
            "schedules": dict(self.schedules),
        }
        self.by_type.clear()
        self.by_second.clear()
        self.lag = new_histogram()
        self.cpu = []
        return data

    def merge(self, data: dict[str, Any]) -> None:
        for name, encoded in data.get("types", {}).items():
            self.by_type[name].merge(encoded)
        for second, encoded in data.get("seconds", {}).items():
            self.by_second[int(second)].merge(encoded)
        self.scenario_of.update(data.get("scenarios", {}))
        if data.get("lag"):
            _add(self.lag, data["lag"])
        for worker, samples in (data.get("cpu") or {}).items():
            self.cpu_by_worker.setdefault(worker, []).extend(samples)
        first, last = data.get("window") or (None, None)
        if first is not None and last is not None:
            self.first_done_s = min(first, self.first_done_s or first)
            self.last_done_s = max(last, self.last_done_s or last)
        self.schedules.update(data.get("schedules") or {})

    def measured_seconds(self) -> float:
        """How long the run ran: its schedules' window (open loop; every process keeps one
        of the same length, started a moment apart, so requests / window is the rate of
        all of them together), else first to last reply."""
        if self.schedules:
            return max(s["stop"] - s["start"] for s in self.schedules.values())
        if self.first_done_s is None or self.last_done_s is None:
            return 0.0
        return self.last_done_s - self.first_done_s

    def scheduled_requests(self) -> int:
        return int(sum(s["requests"] for s in self.schedules.values()))

    # -- reports -----------------------------------------------------------------------

    def summary(self, seconds: float, workers: int) -> dict[str, Any]:
        total = Series()
        for name, series in self.by_type.items():
            if name.endswith(".deliver"):
                continue  # deliveries are not requests of the schedule
            total.response.add(series.response)
            total.service.add(series.service)
            total.errors += series.errors

        def figures(series: Series) -> dict[str, Any]:
            count = series.count
            return {
                "count": count,
                "errors": series.errors,
                "rps": round(count / seconds, 1) if seconds > 0 else 0.0,
                "response": percentiles(series.response),
                "service": percentiles(series.service),
            }

        overall = figures(total)
        if self.schedules:  # what the open loop asked for, next to what it got
            asked = self.scheduled_requests()
            overall["scheduled"] = asked
            # Each process's rate over its own window (they start a moment apart).
            overall["scheduled_rps"] = round(
                sum(
                    s["requests"] / (s["stop"] - s["start"])
                    for s in self.schedules.values()
                    if s["stop"] > s["start"]
                ),
                1,
            )
            unfinished = self.by_type.get(UNFINISHED)
            finished = total.count - (unfinished.count if unfinished else 0)
            overall["completed_share"] = round(finished / asked, 4) if asked else 0.0
            overall["unfinished"] = unfinished.count if unfinished else 0
            overall["schedules"] = len(self.schedules)
        cpu = {w: samples for w, samples in self.cpu_by_worker.items() if samples}
        return {
            "duration_s": round(seconds, 3),
            "workers": workers,
            "request_types": {
                name: {"scenario": self.scenario_of.get(name), **figures(series)}
                for name, series in sorted(self.by_type.items())
            },
            "total": {
                **overall,
                "requests_per_s": overall["rps"],
                "requests_per_s_per_worker": round(overall["rps"] / max(workers, 1), 1),
            },
            "start_lag": percentiles(self.lag),
            "generator_cpu": {
                worker: {
                    "max": round(max(samples), 3),
                    "mean": round(sum(samples) / len(samples), 3),
                    "seconds": len(samples),
                }
                for worker, samples in sorted(cpu.items())
            },
        }

    def timeline(self) -> list[dict[str, Any]]:
        """Per wall-clock second: requests, errors, response p50/p99 and service p99."""
        rows = []
        for second in sorted(self.by_second):
            series = self.by_second[second]
            response, service = percentiles(series.response), percentiles(series.service)
            rows.append(
                {
                    "second": second,
                    "requests": series.count,
                    "errors": series.errors,
                    "p50_us": response["p50_us"],
                    "p99_us": response["p99_us"],
                    "max_us": response["max_us"],
                    "service_p99_us": service["p99_us"],
                }
            )
        return rows
