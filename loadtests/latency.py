"""Exact latency accounting for the load runs: HDR histograms at microsecond resolution.

Locust rounds percentiles below 100 ms to whole milliseconds, and Redis answers in
tens of microseconds, so an SLO on Locust's own figures would measure nothing.
Every request is also recorded here, per request type and per wall-clock second;
workers ship their histograms to the master with each stats report (then start
afresh), and the master merges them, so distributed runs give exact percentiles.
"""

from __future__ import annotations

import base64
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000  # a minute: anything slower is a timeout anyway
SIGNIFICANT_DIGITS = 3
PERCENTILES = {"p50_us": 50.0, "p90_us": 90.0, "p95_us": 95.0, "p99_us": 99.0, "p999_us": 99.9}


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


@dataclass
class Series:
    """Latencies and errors of one request type (or of one second)."""

    histogram: HdrHistogram = field(default_factory=new_histogram)
    errors: int = 0

    def record(self, microseconds: float, ok: bool) -> None:
        self.histogram.record_value(max(LOWEST_US, min(HIGHEST_US, round(microseconds))))
        if not ok:
            self.errors += 1

    def encode(self) -> dict[str, Any]:
        return {"hdr": base64.b64encode(self.histogram.encode()).decode(), "errors": self.errors}

    def merge(self, encoded: dict[str, Any]) -> None:
        self.histogram.decode_and_add(base64.b64decode(encoded["hdr"]))
        self.errors += int(encoded["errors"])

    def summary(self, seconds: float) -> dict[str, Any]:
        count = self.histogram.get_total_count()
        figures: dict[str, Any] = {
            "count": count,
            "errors": self.errors,
            "rps": round(count / seconds, 1) if seconds > 0 else 0.0,
        }
        for name, percentile in PERCENTILES.items():
            figures[name] = self.histogram.get_value_at_percentile(percentile) if count else None
        figures["max_us"] = self.histogram.get_max_value() if count else None
        return figures


class Recorder:
    """Per request type and per second; one per process."""

    def __init__(self) -> None:
        self.by_type: dict[str, Series] = defaultdict(Series)
        self.by_second: dict[int, Series] = defaultdict(Series)
        self.scenario_of: dict[str, str] = {}  # request type -> scenario (user class)

    def record(self, scenario: str, request_type: str, microseconds: float, ok: bool) -> None:
        self.scenario_of[request_type] = scenario
        self.by_type[request_type].record(microseconds, ok)
        self.by_second[int(time.time())].record(microseconds, ok)

    def take(self) -> dict[str, Any]:
        """Everything recorded since the last take, encoded; the recorder starts afresh."""
        data = {
            "types": {name: series.encode() for name, series in self.by_type.items()},
            "seconds": {str(second): series.encode() for second, series in self.by_second.items()},
            "scenarios": dict(self.scenario_of),
        }
        self.by_type.clear()
        self.by_second.clear()
        return data

    def merge(self, data: dict[str, Any]) -> None:
        for name, encoded in data.get("types", {}).items():
            self.by_type[name].merge(encoded)
        for second, encoded in data.get("seconds", {}).items():
            self.by_second[int(second)].merge(encoded)
        self.scenario_of.update(data.get("scenarios", {}))

    def summary(self, seconds: float, workers: int) -> dict[str, Any]:
        total = Series()
        for series in self.by_type.values():
            total.histogram.add(series.histogram)
            total.errors += series.errors
        overall = total.summary(seconds)
        return {
            "duration_s": round(seconds, 3),
            "workers": workers,
            "request_types": {
                name: {"scenario": self.scenario_of.get(name), **series.summary(seconds)}
                for name, series in sorted(self.by_type.items())
            },
            "total": {
                **overall,
                "requests_per_s": overall["rps"],
                "requests_per_s_per_worker": round(overall["rps"] / max(workers, 1), 1),
            },
        }

    def timeline(self) -> list[dict[str, Any]]:
        """Per wall-clock second: throughput, errors and p50/p99 (microseconds)."""
        rows = []
        for second in sorted(self.by_second):
            series = self.by_second[second]
            figures = series.summary(1.0)
            rows.append(
                {
                    "second": second,
                    "requests": figures["count"],
                    "errors": series.errors,
                    "p50_us": figures["p50_us"],
                    "p99_us": figures["p99_us"],
                    "max_us": figures["max_us"],
                }
            )
        return rows
