"""Waiting for a deployment to reach a state, with every reason it has not, on timeout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from infra.core.errors import DeploymentError

State = TypeVar("State")


def until_healthy(
    read: Callable[[], State],
    problems_of: Callable[[State], list[str]],
    timeout_s: float,
    what: str,
    alive: Callable[[], None] | None = None,
    poll_s: float = 0.2,
) -> State:
    """Read the state until it has no problems; raise listing them after `timeout_s`.

    `alive` raises if something the wait depends on died meanwhile (a container that
    stopped), so that fails at once with its own message.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        state = read()
        problems = problems_of(state)
        if not problems:
            return state
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            listed = "\n  - ".join(problems[:20])
            raise DeploymentError(f"{what} not healthy after {timeout_s:.0f} s:\n  - {listed}")
        time.sleep(poll_s)
