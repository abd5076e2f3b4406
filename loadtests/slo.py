"""Service-level objectives, and the verdict of a run: passed, missed or inconclusive.

rate: 3000             # requests/s (all worker processes) the targets are judged at
default:               # applies to every request type
  p99_ms: 5
  max_error_ratio: 0.001
session:               # a scenario ...
  p50_ms: 1
session.read:          # ... or a single request type; the most specific wins
  p999_ms: 20
total:                 # the whole run
  min_rps: 10000

Latency targets are judged on the response time from each request's intended start
(what an application sees), and only in an open-loop run at the file's rate: a
closed loop's percentiles include the generator's queueing. Before the targets,
a validity gate: a run whose generator fell behind (achieved rate below 99% of the
target, start lag p99 above max(2 ms, 10% of the tightest latency target), or a
worker process above 65% of a core) is inconclusive, never a pass or a fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TARGETS = {"p50_ms": "p50_us", "p95_ms": "p95_us", "p99_ms": "p99_us", "p999_ms": "p999_us"}
KNOWN = {*TARGETS, "max_error_ratio", "min_rps"}
MIN_ACHIEVED = 0.99
MAX_LAG_FLOOR_MS = 2.0
MAX_LAG_SHARE = 0.10
MAX_WORKER_CPU = 0.65

EXIT_PASSED = 0
EXIT_MISSED = 1
EXIT_INCONCLUSIVE = 4


class SloFileError(ValueError):
    """The SLO file cannot be used; the message names the field and the fix."""


@dataclass(frozen=True)
class Slo:
    sections: dict[str, dict[str, float]]
    rate: float | None  # requests/s the targets hold at; None: judged at any rate

    def tightest_ms(self) -> float | None:
        limits = [v for s in self.sections.values() for k, v in s.items() if k in TARGETS]
        return min(limits) if limits else None


@dataclass(frozen=True)
class Miss:
    """One target that the run missed."""

    subject: str  # request type or "total"
    target: str
    limit: float
    measured: float

    def __str__(self) -> str:
        if self.target == "min_rps":
            return (
                f"{self.subject}: {self.measured:.0f} requests/s, below the {self.limit:.0f} "
                f"target by {self.limit - self.measured:.0f}/s"
            )
        if self.target == "max_error_ratio":
            return f"{self.subject}: error ratio {self.measured:.4%}, above {self.limit:.4%}"
        return (
            f"{self.subject}: {self.target.removesuffix('_ms')} {self.measured:.3f} ms, "
            f"above the {self.limit:g} ms target by {self.measured - self.limit:.3f} ms"
        )


def load_slo(path: Path) -> Slo:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SloFileError(f"{path}: cannot be read as YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise SloFileError(
            f"{path}: must map sections (default, a scenario, a request type, total) to targets"
        )
    rate = data.pop("rate", None)
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0
    ):
        raise SloFileError(f"{path}: rate: {rate!r} is not a positive number of requests/s")
    sections: dict[str, dict[str, float]] = {}
    for section, targets in data.items():
        if not isinstance(targets, dict):
            raise SloFileError(f"{path}: {section}: must be a mapping of targets such as p99_ms: 5")
        for key, value in targets.items():
            if key not in KNOWN:
                raise SloFileError(
                    f"{path}: {section}.{key}: unknown target; use one of {sorted(KNOWN)}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise SloFileError(
                    f"{path}: {section}.{key}: {value!r} is not a non-negative number"
                )
        sections[str(section)] = {str(k): float(v) for k, v in targets.items()}
    return Slo(sections, float(rate) if rate is not None else None)


def _effective(slo: Slo, request_type: str, scenario: str | None) -> dict[str, float]:
    targets = dict(slo.sections.get("default", {}))
    if scenario:
        targets.update(slo.sections.get(scenario, {}))
    targets.update(slo.sections.get(request_type, {}))
    return targets


def check(slo: Slo, summary: dict[str, Any], *, latency: bool = True) -> list[Miss]:
    """Every target the summary misses (empty: the run passes). Without `latency` (a
    closed loop), only throughput and error targets are judged."""
    misses: list[Miss] = []
    for name, figures in summary["request_types"].items():
        targets = _effective(slo, name, figures.get("scenario"))
        misses += _check_figures(name, figures, targets, latency)
    misses += _check_figures("total", summary["total"], slo.sections.get("total", {}), latency)
    return misses


def _check_figures(
    subject: str, figures: dict[str, Any], targets: dict[str, float], latency: bool
) -> list[Miss]:
    misses: list[Miss] = []
    for target, limit in targets.items():
        if target in TARGETS:
            measured_us = (figures.get("response") or {}).get(TARGETS[target])
            if latency and measured_us is not None and measured_us / 1000 > limit:
                misses.append(Miss(subject, target, limit, measured_us / 1000))
        elif target == "max_error_ratio":
            count = figures.get("count") or 0
            ratio = (figures.get("errors") or 0) / count if count else 0.0
            if ratio > limit:
                misses.append(Miss(subject, target, limit, ratio))
        elif target == "min_rps":
            measured = figures.get("rps") or 0.0
            if measured < limit:
                misses.append(Miss(subject, target, limit, measured))
    return misses


@dataclass
class Verdict:
    code: int
    status: str  # "passed", "missed", "inconclusive", "capacity"
    reasons: list[str] = field(default_factory=list)  # why inconclusive, or what was missed

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "exit_code": self.code, "reasons": self.reasons}


def validity_problems(summary: dict[str, Any], target_rate: float, slo: Slo | None) -> list[str]:
    """Why this run cannot be judged: its generator did not keep to the schedule, or
    the schedule was not the one the targets hold at."""
    problems = []
    total = summary["total"]
    expected = int(summary.get("expected_workers") or summary.get("workers") or 1)
    schedules = total.get("schedules")
    if schedules is not None and schedules < expected:
        problems.append(
            f"{schedules} of {expected} worker processes kept a schedule: the others never "
            "started theirs (see locust.log). Fix: what the log names, then run again"
        )
    scheduled_rps = total.get("scheduled_rps")
    if scheduled_rps is not None and scheduled_rps < MIN_ACHIEVED * target_rate:
        problems.append(
            f"the schedules asked for {scheduled_rps:.0f} requests/s, not the {target_rate:.0f} "
            "targeted. Fix: --duration long enough for the warm-up and drain, all processes up"
        )
    if slo is not None and slo.rate and abs(target_rate - slo.rate) > 0.01 * slo.rate:
        problems.append(
            f"run at {target_rate:.0f} requests/s, while the SLO file's targets hold at "
            f"{slo.rate:.0f}/s. Fix: --rate {slo.rate:.0f}, or leave --rate out"
        )
    if slo is not None:
        problems += _unjudged_sections(slo, summary)
    # Of the requests the schedule asked for, how many finished: a generator that fell
    # behind leaves some waiting when the run ends.
    share = total.get("completed_share")
    achieved = target_rate * share if share is not None else total["rps"]
    if achieved < MIN_ACHIEVED * target_rate:
        problems.append(
            f"achieved {achieved:.0f} requests/s, {achieved / target_rate:.1%} of the "
            f"{target_rate:.0f} asked (needs {MIN_ACHIEVED:.0%}): the generator fell behind. "
            "Fix: a lower --rate, more --processes, or fewer --users per process"
        )
    tightest = slo.tightest_ms() if slo else None
    allowed_ms = max(MAX_LAG_FLOOR_MS, MAX_LAG_SHARE * tightest) if tightest else MAX_LAG_FLOOR_MS
    lag_p99 = (summary.get("start_lag") or {}).get("p99_us")
    if lag_p99 is not None and lag_p99 / 1000 > allowed_ms:
        problems.append(
            f"start lag p99 {lag_p99 / 1000:.2f} ms, above {allowed_ms:g} ms: requests left "
            "late, so their latency is partly the generator's. Fix: more --processes or a "
            "lower --rate"
        )
    for worker, cpu in (summary.get("generator_cpu") or {}).items():
        if cpu["max"] > MAX_WORKER_CPU:
            problems.append(
                f"worker {worker} used {cpu['max']:.0%} of a core (limit {MAX_WORKER_CPU:.0%}): "
                "near saturation a generator measures itself. Fix: more --processes, fewer "
                "--users per process, or a lower --rate"
            )
    return problems


def _unjudged_sections(slo: Slo, summary: dict[str, Any]) -> list[str]:
    """Sections naming no request type or scenario the run measured would judge nothing."""
    measured = {name for name, figures in summary["request_types"].items() if figures.get("count")}
    measured |= {f.get("scenario") for f in summary["request_types"].values() if f.get("count")}
    return [
        f"the SLO file's section {section!r} names no request type or scenario this run "
        f"measured (measured: {', '.join(sorted(str(m) for m in measured if m))}). Fix: the "
        "section's name, or a profile (and enough --users) that runs it"
        for section in slo.sections
        if section not in ("default", "total") and section not in measured
    ]


def judge(
    summary: dict[str, Any],
    slo: Slo | None,
    target_rate: float | None,
    harness_problems: list[str] | None = None,
) -> Verdict:
    """The run's verdict: the validity gate first, then the targets. `harness_problems`:
    what went wrong in the harness itself (a user's exception, records lost)."""
    if harness_problems:
        return Verdict(EXIT_INCONCLUSIVE, "inconclusive", list(harness_problems))
    if target_rate is None:  # a closed loop: throughput and errors only
        misses = check(slo, summary, latency=False) if slo else []
        if misses:
            return Verdict(EXIT_MISSED, "missed", [str(m) for m in misses])
        return Verdict(EXIT_PASSED, "capacity")
    problems = validity_problems(summary, target_rate, slo)
    if problems:
        return Verdict(EXIT_INCONCLUSIVE, "inconclusive", problems)
    misses = check(slo, summary) if slo else []
    if misses:
        return Verdict(EXIT_MISSED, "missed", [str(m) for m in misses])
    return Verdict(EXIT_PASSED, "passed")
