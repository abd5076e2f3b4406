"""Files that hold secrets on the deploying machine: written owner-only, trusted only so.

A state folder another user can write to, or a key file others can read, is not
ours to trust: someone may have planted the passwords or CA key we would deploy,
or read them. Such files stop a run with the fix instead of being used.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from infra.core.errors import ConfigError


def _owner_problem(path: Path, info: os.stat_result) -> str | None:
    if info.st_uid != os.getuid():
        return f"belongs to uid {info.st_uid}, not to you (uid {os.getuid()})"
    return None


def check_private_dir(path: Path) -> None:
    """`path` (if it exists) is ours and nobody else may add, remove or swap files in it."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    problem = _owner_problem(path, info)
    if problem is None and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"is writable by others (mode {stat.S_IMODE(info.st_mode):04o})"
    if problem is not None:
        raise ConfigError.single(
            str(path),
            "<state folder>",
            f"{problem}: its passwords and keys cannot be trusted",
            f"use a folder only you can write (chmod go-w {path}), or another "
            "REDIS_INFRA_STATE_HOME",
        )


def check_private_file(path: Path) -> None:
    """A secret file (if it exists) is ours and readable by nobody else."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    problem = _owner_problem(path, info)
    if problem is None and not stat.S_ISREG(info.st_mode):
        problem = "is not a regular file (a link could point anywhere)"
    if problem is None and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        problem = (
            f"is readable or writable by others (mode {stat.S_IMODE(info.st_mode):04o}), "
            "so the secret in it may be known"
        )
    if problem is not None:
        raise ConfigError.single(
            str(path),
            "<secret file>",
            problem,
            f"if you are sure nobody read it, chmod 600 {path}; otherwise delete it to have "
            "a new one made (the deployment then needs `down --keep-data` and `up`)",
        )


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) owner-only if missing; check it if it exists."""
    if not path.exists():
        path.mkdir(parents=True, mode=0o700)
        path.chmod(0o700)  # mkdir's mode is filtered by the umask
    check_private_dir(path)
    return path


def claim_private_dir(path: Path, field: str) -> None:
    """A folder the user named to hold secrets: made 0700 if missing; if it exists, it
    must be a real folder (not a file, not a link that could point anywhere) of theirs,
    and is set to 0700."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        ensure_private_dir(path)
        return
    problem = _owner_problem(path, info)
    if problem is None and not stat.S_ISDIR(info.st_mode):
        problem = "is not a folder (a file, or a link that could point anywhere)"
    if problem is not None:
        raise ConfigError.single(str(path), field, problem, "name a new folder, or one of yours")
    path.chmod(0o700)


def write_private_bytes(path: Path, data: bytes) -> None:
    """Owner-only from the first byte, replaced atomically (never half-written)."""
    ensure_private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    temporary.replace(path)


def write_private_json(path: Path, data: Any) -> None:
    write_private_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def read_private_text(path: Path) -> str:
    check_private_file(path)
    return path.read_text(encoding="utf-8")
