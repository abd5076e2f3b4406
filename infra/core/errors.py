"""Errors that reach the user: each names the input, the rule it broke and the fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One broken rule in one input field."""

    field: str
    rule: str
    fix: str

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}. Fix: {self.fix}"


class RedisInfraError(Exception):
    """Base class of every error the CLI reports without a traceback."""


class ConfigError(RedisInfraError):
    """Bad input (topology file, stack config, CLI flag), found before any container exists."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"invalid configuration in {source} ({len(problems)} problem(s)):"]
        lines += [f"  - {problem}" for problem in problems]
        super().__init__("\n".join(lines))

    @classmethod
    def single(cls, source: str, field: str, rule: str, fix: str) -> ConfigError:
        return cls(source, [Problem(field, rule, fix)])


class EngineError(RedisInfraError):
    """The Docker engine or an image it needs is not available."""


class DeploymentError(RedisInfraError):
    """A deployment did not reach the state it was asked for."""


class ReadinessTimeoutError(DeploymentError, TimeoutError):
    """A node not ready within its wait strategy's timeout (the test fixtures). A
    TimeoutError too, as testcontainers' wait strategies raise; a RedisInfraError, so it
    is reported as a message, not a traceback."""
