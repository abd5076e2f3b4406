"""Typed reading of a settings mapping that records every problem (field, rule, fix)
instead of stopping at the first."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from infra.core.errors import Problem
from infra.core.sizes import parse_size
from infra.core.topology_schema import SECTION_KEYS, setting


class FieldReader:
    """Reads one settings mapping, recording every problem instead of stopping at the first."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[Problem] = []

    def problem(self, field: str, rule: str, fix: str) -> None:
        self.problems.append(Problem(field, rule, fix))

    # -- typed getters: return a fallback after recording a problem -----------------

    def section(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = data.get(key)
        if not isinstance(value, Mapping):
            self.problem(
                key,
                "is missing" if value is None else f"must be a mapping, got {kind_of(value)}",
                f"add a '{key}:' section (see topologies/single.yaml)",
            )
            return {}
        self.unknown_keys(value, SECTION_KEYS[key], prefix=f"{key}.")
        return value

    def unknown_keys(self, data: Mapping[str, Any], allowed: set[str], prefix: str = "") -> None:
        for key in data:
            if key not in allowed:
                suggestion = closest_choice(str(key), allowed)
                self.problem(
                    f"{prefix}{key}",
                    "is not a known setting",
                    f"remove it{f' or use {prefix}{suggestion}' if suggestion else ''}; "
                    f"known: {', '.join(sorted(allowed))}",
                )

    def _require(self, data: Mapping[str, Any], path: str) -> Any:
        key = path.rsplit(".", 1)[-1]
        if key not in data:
            self.problem(path, "is missing", f"set {path} (see topologies/ for defaults)")
        return data.get(key)

    def integer(self, data: Mapping[str, Any], path: str) -> int:
        """A whole number within the schema's bounds for `path`."""
        bounds = setting(path)
        minimum, maximum = bounds.minimum, bounds.maximum
        value = self._require(data, path)
        if value is None:
            return minimum or 0
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(
                path,
                f"must be a whole number, got {kind_of(value)} {value!r}",
                f"write a number such as {minimum if minimum is not None else 1}",
            )
            return minimum or 0
        if minimum is not None and value < minimum:
            why = f": {bounds.rule}" if bounds.rule else ""
            self.problem(
                path,
                f"must be at least {minimum}, got {value}{why}",
                f"set it to {minimum} or more",
            )
        if maximum is not None and value > maximum:
            self.problem(
                path, f"must be at most {maximum}, got {value}", f"set it to {maximum} or less"
            )
        return value

    def boolean(self, data: Mapping[str, Any], path: str) -> bool:
        value = self._require(data, path)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.problem(
                path,
                f"must be true or false, got {kind_of(value)} {value!r}",
                "write true or false without quotes",
            )
            return False
        return value

    def string(self, data: Mapping[str, Any], path: str) -> str:
        """Text matching the schema's pattern for `path`, if it has one."""
        rules = setting(path)
        value = self._require(data, path)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.problem(path, f"must be text, got {kind_of(value)} {value!r}", "quote the value")
            return ""
        if rules.pattern is not None and not rules.pattern.match(value):
            self.problem(path, f"'{value}' {rules.rule}", f"use a value such as '{rules.example}'")
        return value

    def choice(self, data: Mapping[str, Any], path: str) -> str:
        choices = setting(path).choices
        value = self.string(data, path)
        if value and value not in choices:
            suggestion = closest_choice(value, choices)
            self.problem(
                path,
                f"'{value}' is not one of {', '.join(choices)}",
                f"use {suggestion!r}" if suggestion else f"pick one of {', '.join(choices)}",
            )
        return value

    def size(self, data: Mapping[str, Any], path: str) -> int:
        value = self._require(data, path)
        if value is None:
            return 0
        size = parse_size(value)
        if size is None or size == 0:
            self.problem(
                path,
                f"{value!r} is not a memory size",
                "write a positive size such as 256mb or 1gb",
            )
            return 0
        return size

    def string_list(self, data: Mapping[str, Any], path: str) -> list[str]:
        value = self._require(data, path)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problem(
                path,
                f"must be a list of text values, got {value!r}",
                "write a YAML list such as [a, b]",
            )
            return []
        return list(value)

    # -- sections -------------------------------------------------------------------


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def kind_of(value: object) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def closest_choice(value: str, choices: Iterable[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None
