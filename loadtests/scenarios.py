"""The seed's access patterns (Trackeep) as virtual users: sessions, query caches,
token-bucket rate limits, leaderboards, streak counters and pub/sub fan-out.

A virtual user owns one connection per node it talks to and does one request per
step (a pipelined request counts as one: one round trip, as an application would
send it), so an open-loop schedule of steps is a schedule of requests. Keys follow
the seed's scheme; keys a request touches together share a hash tag, so every
scenario runs unchanged on a Cluster. Commands are packed once where they do not
change; what varies per request is packed with `pack`.
"""

from __future__ import annotations

import itertools
import os
import random
import secrets
import time
from collections.abc import Callable
from typing import ClassVar

import gevent

from loadtests.recording import Recorder
from loadtests.routing import Client, Router
from loadtests.wire import Connection, pack

SESSION_TTL_S = 24 * 3600
CACHE_TTL_S = 300
HIT_RATIO = float(os.environ.get("REDIS_INFRA_CACHE_HIT_RATIO", "0.8"))
VALUE_BYTES = int(os.environ.get("REDIS_INFRA_VALUE_BYTES", "512"))
USERS = 10_000  # distinct application users the keys are spread over

Report = Callable[[str, float, Exception | None], None]  # name, ms, error: to Locust


def _user_id() -> int:
    return random.randrange(USERS)  # noqa: S311 - load pattern, not security


class VirtualUser:
    """One simulated application user: setup once (untimed), then one request a step."""

    scenario: ClassVar[str] = "redis"
    weight: ClassVar[int] = 1  # its share among the virtual users of a mixed profile
    tasks: ClassVar[tuple[tuple[str, int], ...]] = ()  # (method, weight)

    def __init__(self, router: Router, recorder: Recorder, report: Report | None) -> None:
        self.client = Client(router)
        self.recorder = recorder
        self.report = report
        order = [name for name, weight in self.tasks for _ in range(weight)]
        random.shuffle(order)
        self._next = itertools.cycle([getattr(self, name) for name in order])
        self._ids: dict[str, int] = {}
        self.intended_ns = 0
        self.waited_ns = 0
        self.setup()

    def setup(self) -> None:
        """Untimed preparation (a login, a warm cache): not a request of the scenario."""

    def step(self, intended_ns: int = 0, waited_ns: int = 0) -> None:
        """One request; `intended_ns` is its place on an open-loop schedule (0: now),
        `waited_ns` how long it waited for this connection to be free."""
        self.intended_ns = intended_ns
        self.waited_ns = waited_ns
        next(self._next)()

    def request(self, name: str, key: bytes, packed: bytes, replies: int = 1) -> object:
        """Time one request, record it exactly, tell Locust; failures are counted."""
        type_id = self._ids.get(name)
        if type_id is None:
            type_id = self._ids[name] = self.recorder.type_id(name, self.scenario)
        sent = time.perf_counter_ns()
        intended = self.intended_ns or sent
        error: Exception | None = None
        reply: object = None
        try:
            reply = self.client.call(key, packed, replies)
        except Exception as exc:  # any failure is this request's error, never a lost record
            error = exc
        done = time.perf_counter_ns()
        self.recorder.record(type_id, intended, sent, done, error is None, self.waited_ns)
        self.waited_ns = 0  # a second request of the same step did not wait
        if self.report is not None:
            self.report(name, (done - intended) / 1e6, error)
        return reply

    def stop(self) -> None:
        self.client.close()


class SessionUser(VirtualUser):
    """A logged-in user: every page reads the session and refreshes its TTL."""

    scenario = "session"
    weight = 4
    tasks = (("read", 10), ("update", 1))

    def setup(self) -> None:
        self.uid = _user_id()
        self.key = f"tk:session:{{{self.uid}}}:{secrets.token_hex(8)}".encode()
        login = pack(
            "HSET",
            self.key,
            "user_id",
            self.uid,
            "email",
            f"u{self.uid}@example.org",
            "role",
            "member",
            "ip_address",
            "10.0.0.1",
            "created_at",
            int(time.time()),
        ) + pack("EXPIRE", self.key, SESSION_TTL_S)
        self.client.call(self.key, login, replies=2)
        self.read_packed = pack("HGETALL", self.key) + pack("EXPIRE", self.key, SESSION_TTL_S)

    def read(self) -> None:
        self.request("session.read", self.key, self.read_packed, replies=2)

    def update(self) -> None:
        packed = pack("HSET", self.key, "last_active", int(time.time()))
        self.request("session.update", self.key, packed)


class CacheUser(VirtualUser):
    """Query caching: hits read a cached result, misses store a freshly computed one."""

    scenario = "cache"
    weight = 4
    tasks = (("lookup", 1),)

    def setup(self) -> None:
        self.uid = _user_id()
        self.hot = [f"tk:search:{self.uid}:{i}".encode() for i in range(20)]
        self.value = b"x" * VALUE_BYTES
        for key in self.hot:  # warm, untimed: not a request of the scenario
            self.client.call(key, pack("SET", key, self.value, "EX", CACHE_TTL_S))
        self.gets = {key: pack("GET", key) for key in self.hot}

    def lookup(self) -> None:
        if random.random() < HIT_RATIO:  # noqa: S311
            key = random.choice(self.hot)  # noqa: S311
            self.request("cache.get", key, self.gets[key])
        else:
            key = f"tk:search:{self.uid}:miss:{secrets.token_hex(6)}".encode()
            self.request("cache.fill", key, pack("SET", key, self.value, "EX", CACHE_TTL_S))


class RateLimitUser(VirtualUser):
    """The seed's token bucket (100 requests a minute) through the shipped library."""

    scenario = "ratelimit"
    weight = 2
    tasks = (("check", 1),)

    def setup(self) -> None:
        self.key = f"tk:rl:{{{_user_id()}}}:api".encode()
        self.packed = pack("FCALL", "token_bucket", 1, self.key, 100, 1.67)

    def check(self) -> None:
        self.request("ratelimit.fcall", self.key, self.packed)


class LeaderboardUser(VirtualUser):
    """Challenge leaderboards: score updates and top-10 reads."""

    scenario = "leaderboard"
    weight = 1
    tasks = (("score", 3), ("top", 1))

    def setup(self) -> None:
        self.key = f"tk:challenge:{random.randrange(20)}:leaderboard".encode()  # noqa: S311
        self.top_packed = pack("ZREVRANGE", self.key, 0, 9, "WITHSCORES")

    def score(self) -> None:
        packed = pack("ZINCRBY", self.key, 1, f"user:{_user_id()}")
        self.request("leaderboard.zincrby", self.key, packed)

    def top(self) -> None:
        self.request("leaderboard.top10", self.key, self.top_packed)


class CounterUser(VirtualUser):
    """Learning streaks and daily counters: INCR and its expiry, one round trip."""

    scenario = "counters"
    weight = 1
    tasks = (("bump", 1),)

    def bump(self) -> None:
        key = f"tk:u:{{{_user_id()}}}:streak:{time.strftime('%Y%m%d')}".encode()
        packed = pack("INCR", key) + pack("EXPIRE", key, 2 * 24 * 3600)
        self.request("counters.incr", key, packed, replies=2)


class PubSubUser(VirtualUser):
    """Cross-instance messaging: each user listens on its conversation's channel and posts
    to it; delivery is timed from PUBLISH to each receipt."""

    scenario = "pubsub"
    weight = 1
    tasks = (("post", 1),)
    CHANNELS = 8
    prefix: ClassVar[str] = "app:"  # set from the connection file (access.app_channels)

    def setup(self) -> None:
        self.channel = f"{self.prefix}messages:{random.randrange(self.CHANNELS)}".encode()  # noqa: S311
        router = self.client.router
        self.listener_connection: Connection = router.connect(router.address_for(self.channel))
        self.listener_connection.request(pack("SUBSCRIBE", self.channel))
        self.listener = gevent.spawn(self._listen)
        self.pid = str(os.getpid()).encode()

    def _listen(self) -> None:
        while True:
            try:
                message = self.listener_connection.read_push()
            except (OSError, ValueError):  # ValueError: gevent's read on a closed socket
                return  # the run is stopping, or the node went: no more deliveries
            if not isinstance(message, list) or message[0] != b"message":
                continue
            sender, _, sent = message[2].partition(b":")
            if sender == self.pid:  # perf_counter is per process: time only our own
                latency = (time.perf_counter_ns() - int(sent)) // 1000
                self.recorder.record_delivery("pubsub.deliver", self.scenario, latency)

    def post(self) -> None:
        payload = b"%s:%d" % (self.pid, time.perf_counter_ns())
        self.request("pubsub.publish", self.channel, pack("PUBLISH", self.channel, payload))

    def stop(self) -> None:
        self.listener.kill(block=True, timeout=1)  # before its socket closes under it
        self.listener_connection.close()
        super().stop()


class BenchUser(VirtualUser):
    """GET and SET of a small value, the shape redis-benchmark measures."""

    scenario = "bench"
    tasks = (("get", 1), ("set", 1))

    def setup(self) -> None:
        self.key = f"bench:{secrets.token_hex(4)}".encode()
        self.set_packed = pack("SET", self.key, "xyz")
        self.get_packed = pack("GET", self.key)
        self.client.call(self.key, self.set_packed)

    def get(self) -> None:
        self.request("bench.get", self.key, self.get_packed)

    def set(self) -> None:
        self.request("bench.set", self.key, self.set_packed)


PROFILES: dict[str, list[type[VirtualUser]]] = {
    "session": [SessionUser],
    "cache": [CacheUser],
    "ratelimit": [RateLimitUser],
    "leaderboard": [LeaderboardUser],
    "counters": [CounterUser],
    "pubsub": [PubSubUser],
    "bench": [BenchUser],
}
PROFILES["mixed"] = [
    SessionUser,
    CacheUser,
    RateLimitUser,
    LeaderboardUser,
    CounterUser,
    PubSubUser,
]


def mix(profile: str, count: int) -> list[type[VirtualUser]]:
    """`count` virtual user classes in the profile's proportions (at least one of each)."""
    kinds = PROFILES[profile]
    total = sum(kind.weight for kind in kinds)
    chosen = list(kinds)  # one of each first, so no scenario (and no target) goes unrun
    while len(chosen) < count:  # then the one furthest below its share
        behind = max(kinds, key=lambda k: count * k.weight / total - chosen.count(k))
        chosen.append(behind)
    return chosen
