"""Users modelled on the seed's use cases (Trackeep): sessions, query caches, token-bucket
rate limiting, leaderboards, streak counters and pub/sub fan-out. Key names follow
the seed's scheme; keys a request touches together share a hash tag, so every
scenario runs unchanged on a Redis Cluster."""

from __future__ import annotations

import os
import random
import secrets
import time
from typing import Any

import gevent
from locust import task
from redis.exceptions import RedisError

from loadtests.redis_user import RedisUser, connection_info, recorder

SESSION_TTL_S = 24 * 3600
CACHE_TTL_S = 300
HIT_RATIO = float(os.environ.get("REDIS_INFRA_CACHE_HIT_RATIO", "0.8"))
VALUE_BYTES = int(os.environ.get("REDIS_INFRA_VALUE_BYTES", "512"))
USERS = 10_000  # distinct application users the keys are spread over


def channel_prefix() -> str:
    """The literal prefix of the first channel pattern the application may use."""
    channels = connection_info().access.get("channels") or []
    if not channels:
        raise RuntimeError("the deployment grants the application no pub/sub channel")
    return str(channels[0]).rstrip("*")


def _user_id() -> int:
    return random.randrange(USERS)  # noqa: S311 - load pattern, not security


class SessionUser(RedisUser):
    """A logged-in user: the session is read (and its TTL refreshed) on every request."""

    weight = 4
    scenario = "session"

    def on_start(self) -> None:
        self.uid = _user_id()
        self.session = f"tk:session:{{{self.uid}}}:{secrets.token_hex(8)}"
        fields: Any = {  # redis-py's mapping type is stricter than it needs to be
            "user_id": self.uid,
            "email": f"u{self.uid}@example.org",
            "role": "member",
            "ip_address": "10.0.0.1",
            "created_at": int(time.time()),
        }
        self.timed("session.create", lambda: self._login(fields))

    def _login(self, fields: Any) -> list[Any]:
        """One round trip: the session hash and its TTL."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.session, mapping=fields)
        pipe.expire(self.session, SESSION_TTL_S)
        return list(pipe.execute())

    @task(10)
    def read(self) -> None:
        self.timed("session.read", lambda: self.redis.hgetall(self.session))
        self.timed("session.touch", lambda: self.redis.expire(self.session, SESSION_TTL_S))

    @task(1)
    def track_last_active(self) -> None:
        self.timed(
            "session.update", lambda: self.redis.hset(self.session, "last_active", int(time.time()))
        )


class CacheUser(RedisUser):
    """Query caching: GET, and on a miss SET EX (the hit ratio is configurable)."""

    weight = 4
    scenario = "cache"

    def on_start(self) -> None:
        self.uid = _user_id()
        self.hot = [f"tk:search:{self.uid}:{i}" for i in range(20)]
        self.value = "x" * VALUE_BYTES
        for key in self.hot:  # pre-populate the hot set, untimed: it is not a request
            self.redis.set(key, self.value, ex=CACHE_TTL_S)

    @task
    def lookup(self) -> None:
        hit = random.random() < HIT_RATIO  # noqa: S311
        key = (
            random.choice(self.hot)  # noqa: S311
            if hit
            else f"tk:search:{self.uid}:miss:{secrets.token_hex(6)}"
        )
        if self.timed("cache.get", lambda: self.redis.get(key)) is None:
            self.timed("cache.set", lambda: self.redis.set(key, self.value, ex=CACHE_TTL_S))


class RateLimitUser(RedisUser):
    """The seed's token bucket (100 requests a minute), per user and endpoint, through the
    deployment's function library (applications may not send their own scripts)."""

    weight = 2
    scenario = "ratelimit"

    def on_start(self) -> None:
        self.bucket = f"tk:rl:{{{_user_id()}}}:api"

    @task
    def check(self) -> None:
        self.timed(
            "ratelimit.fcall",
            lambda: self.redis.fcall("token_bucket", 1, self.bucket, 100, 1.67),
        )


class LeaderboardUser(RedisUser):
    """Challenge leaderboards: score updates and top-10 reads."""

    weight = 1
    scenario = "leaderboard"

    def on_start(self) -> None:
        self.board = f"tk:challenge:{random.randrange(20)}:leaderboard"  # noqa: S311

    @task(3)
    def score(self) -> None:
        self.timed(
            "leaderboard.zincrby", lambda: self.redis.zincrby(self.board, 1, f"user:{_user_id()}")
        )

    @task(1)
    def top(self) -> None:
        self.timed(
            "leaderboard.top10", lambda: self.redis.zrevrange(self.board, 0, 9, withscores=True)
        )


class CounterUser(RedisUser):
    """Learning streaks and daily counters: INCR and EXPIRE."""

    weight = 1
    scenario = "counters"

    @task
    def bump(self) -> None:
        key = f"tk:u:{_user_id()}:streak:{time.strftime('%Y%m%d')}"
        self.timed("counters.incr", lambda: self.redis.incr(key))
        self.timed("counters.expire", lambda: self.redis.expire(key, 2 * 24 * 3600))


class PubSubUser(RedisUser):
    """Cross-instance messaging: every user listens on its conversation's channel and
    posts to it; delivery latency is measured from PUBLISH to each receipt."""

    weight = 1
    scenario = "pubsub"
    CHANNELS = 8

    def on_start(self) -> None:
        # Inside the channels the application may use (access.app_channels).
        self.channel = f"{channel_prefix()}messages:{random.randrange(self.CHANNELS)}"  # noqa: S311
        self.pubsub = self.redis.pubsub()
        self.pubsub.subscribe(self.channel)
        self.listener = gevent.spawn(self._listen)

    def on_stop(self) -> None:
        self.listener.kill(block=True, timeout=2)
        self.pubsub.close()

    def _listen(self) -> None:
        pid = str(os.getpid())
        while True:
            try:
                message: Any = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (ConnectionError, OSError, ValueError, RedisError):
                return  # the run is stopping and the subscription is being closed
            if not message:
                continue
            sender, _, sent = str(message["data"], "ascii").partition(":")
            if sender == pid:  # perf_counter is per process: time only our own messages
                elapsed = time.perf_counter() - float(sent)
                recorder().record(self.scenario, "pubsub.deliver", elapsed * 1_000_000, True)

    @task
    def post(self) -> None:
        payload = f"{os.getpid()}:{time.perf_counter()!r}"
        self.timed("pubsub.publish", lambda: self.redis.publish(self.channel, payload))
        gevent.sleep(0.01)  # conversations, not a firehose


class BenchUser(RedisUser):
    """Plain GET/SET of small values, the shape redis-benchmark measures."""

    scenario = "bench"

    def on_start(self) -> None:
        self.key = f"bench:{secrets.token_hex(4)}"
        self.redis.set(self.key, "x" * 3)

    @task
    def get_and_set(self) -> None:
        self.timed("bench.set", lambda: self.redis.set(self.key, "xyz"))
        self.timed("bench.get", lambda: self.redis.get(self.key))
