"""Memory sizes as Redis writes them ("256mb", "1gb"): parsing and formatting."""

from __future__ import annotations

import re

# Redis semantics: "kb"/"mb"/"gb" are powers of 1024, "k"/"m"/"g" powers of 1000.
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}
_SIZE = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$")


def parse_size(value: object) -> int | None:
    """Bytes for `value` (an int of bytes or a string such as "256mb"), None if unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    match = _SIZE.match(value.lower())
    if match is None or match.group(2) not in _UNITS:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_size(size_bytes: int) -> str:
    """The shortest exact Redis notation for a byte count ("256mb", "1536kb", "1000")."""
    for unit, factor in (("gb", 1024**3), ("mb", 1024**2), ("kb", 1024)):
        if size_bytes and size_bytes % factor == 0:
            return f"{size_bytes // factor}{unit}"
    return str(size_bytes)


def to_mebibytes(size_bytes: int) -> int:
    """Whole MiB, rounded up: the unit pulumi-docker takes for container memory."""
    return -(-size_bytes // 1024**2)


def format_human(size_bytes: int) -> str:
    """A size for people: "608 MiB", "1.5 GiB"."""
    if size_bytes >= 1024**3:
        return f"{size_bytes / 1024**3:.3g} GiB"
    return f"{size_bytes / 1024**2:.4g} MiB"
