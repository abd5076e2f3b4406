"""A small application, as an application team would write it: the seed's session
store, token-bucket rate limit and leaderboard on redis-py. It knows nothing of
redis-infra; its tests (test_shop.py) get a hardened deployment from the plugin."""

from __future__ import annotations

import json
import secrets
from typing import Any

import redis

SESSION_TTL_S = 1800


class Sessions:
    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def create(self, user: str, data: dict[str, Any]) -> str:
        token = secrets.token_urlsafe(16)
        self.r.set(f"app:session:{token}", json.dumps({"user": user, **data}), ex=SESSION_TTL_S)
        return token

    def get(self, token: str) -> dict[str, Any] | None:
        raw = self.r.get(f"app:session:{token}")
        return json.loads(raw) if raw else None

    def end(self, token: str) -> None:
        self.r.delete(f"app:session:{token}")


class RateLimit:
    """The deployment's `token_bucket` function (the app may not send its own scripts)."""

    def __init__(self, r: redis.Redis, capacity: int, refill_per_s: float) -> None:
        self.r, self.capacity, self.refill = r, capacity, refill_per_s

    def allow(self, client_id: str) -> bool:
        taken = self.r.fcall("token_bucket", 1, f"app:rate:{client_id}", self.capacity, self.refill)
        return bool(taken)


class Leaderboard:
    def __init__(self, r: redis.Redis, board: str = "weekly") -> None:
        self.r, self.key = r, f"app:leaderboard:{board}"

    def score(self, player: str, points: float) -> None:
        self.r.zincrby(self.key, points, player)

    def top(self, n: int) -> list[tuple[str, float]]:
        ranked: list[tuple[bytes, float]] = self.r.zrevrange(self.key, 0, n - 1, withscores=True)  # type: ignore[assignment]
        return [(player.decode(), float(points)) for player, points in ranked]
