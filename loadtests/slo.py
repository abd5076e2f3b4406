"""Service-level objectives for load runs, checked against the exact summary.

default:               # applies to every request type
  p99_ms: 5
  max_error_ratio: 0.001
session:               # a scenario (user class) ...
  p50_ms: 1
session.read:          # ... or a single request type; the most specific wins
  p999_ms: 20
total:                 # the whole run
  min_rps: 10000
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TARGETS = {"p50_ms": "p50_us", "p95_ms": "p95_us", "p99_ms": "p99_us", "p999_ms": "p999_us"}
KNOWN = {*TARGETS, "max_error_ratio", "min_rps"}


class SloFileError(ValueError):
    """The SLO file cannot be used; the message names the field and the fix."""


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


def load_slo(path: Path) -> dict[str, dict[str, float]]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SloFileError(f"{path}: cannot be read as YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise SloFileError(
            f"{path}: must map sections (default, a scenario, a request type, total) to targets"
        )
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
    return sections


def _effective(
    sections: dict[str, dict[str, float]], request_type: str, scenario: str | None
) -> dict[str, float]:
    targets = dict(sections.get("default", {}))
    if scenario:
        targets.update(sections.get(scenario, {}))
    targets.update(sections.get(request_type, {}))
    return targets


def check(sections: dict[str, dict[str, float]], summary: dict[str, Any]) -> list[Miss]:
    """Every target the summary misses (empty: the run passes)."""
    misses: list[Miss] = []
    for name, figures in summary["request_types"].items():
        targets = _effective(sections, name, figures.get("scenario"))
        misses += _check_figures(name, figures, targets)
    total = summary["total"]
    misses += _check_figures("total", total, sections.get("total", {}))
    return misses


def _check_figures(subject: str, figures: dict[str, Any], targets: dict[str, float]) -> list[Miss]:
    misses: list[Miss] = []
    for target, limit in targets.items():
        if target in TARGETS:
            measured_us = figures.get(TARGETS[target])
            if measured_us is not None and measured_us / 1000 > limit:
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
