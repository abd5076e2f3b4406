"""pytest plugin: hardened Redis deployments as fixtures for an application's test suite.

Registered as the `redis_infra` entry point (`pytest11`), so installing redis-infra
is enough; `pytest -p redis_infra` names it explicitly.

Fixtures (the shape pytest-redis users know):

- `redis_single_deployment`, `redis_sentinel_deployment`, `redis_cluster_deployment`:
  one deployment per test session, started on first use, removed at the end;
- `redis_single`, `redis_sentinel`, `redis_cluster`: a redis-py client for one test
  (Sentinel- or Cluster-aware), every key deleted after the test;
- `redis_deployment` / `redis_client`: the topology picked by
  `@pytest.mark.redis_topology("sentinel", **settings)` or by indirect parametrization;
  with settings, a deployment of its own for that test.

Factories declare more: `redis_deployment_factory("sentinel", settings={...})` for a
deployment with other settings (or several), `redis_client_factory("fixture_name")`
for its client. `--redis-infra-connection FILE` (or REDIS_INFRA_CONNECTION, paths
separated by the OS path separator) attaches the session fixtures of that file's
topology to an existing deployment instead of starting one.

At the start of each session, a sweep removes what a killed earlier run left behind
(see `sweep.py`); Ryuk is not needed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from infra.core.connection import read_connection_file
from infra.core.errors import EngineError, RedisInfraError
from infra.testing.deployment import RedisClient, RedisDeployment
from infra.testing.sweep import sweep
from infra.testing.topologies import KINDS

CONNECTION_ENV = "REDIS_INFRA_CONNECTION"
MARKER = "redis_topology"
ATTACHED = pytest.StashKey[dict[str, Path]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("redis-infra", "hardened Redis deployments as fixtures")
    group.addoption(
        "--redis-infra-connection",
        action="append",
        default=[],
        metavar="FILE",
        help="attach the session fixtures of FILE's topology to that existing deployment "
        "(a connection file `redis-infra up` wrote; repeatable)",
    )
    group.addoption(
        "--redis-infra-image",
        default=None,
        help="Redis image of the deployments (default: the project's local image)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(kind, **settings): the topology (single, sentinel, cluster) that the "
        "redis_deployment and redis_client fixtures give this test; settings (dotted "
        "paths, e.g. sentinel__down_after_ms=1000 or {'sentinel.down_after_ms': 1000}) "
        "give it a deployment of its own",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """Read the connection files to attach to (a bad one stops the run here, once);
    remove what a killed earlier run left (no engine here: nothing to sweep)."""
    import docker.errors

    from infra.backends.docker_engine import docker_client

    session.config.stash[ATTACHED] = _read_attached_files(session.config)
    with contextlib.suppress(EngineError, OSError, docker.errors.DockerException):
        sweep(docker_client())


def _read_attached_files(config: pytest.Config) -> dict[str, Path]:
    """Topology kind -> connection file of a deployment to attach to."""
    paths = list(config.getoption("--redis-infra-connection"))
    paths += [p for p in os.environ.get(CONNECTION_ENV, "").split(os.pathsep) if p]
    files: dict[str, Path] = {}
    for path in paths:
        resolved = Path(path).expanduser().resolve()
        try:
            info = read_connection_file(resolved)
        except RedisInfraError as exc:
            raise pytest.UsageError(
                f"redis-infra: --redis-infra-connection {path}: {exc}"
            ) from None
        files[info.topology] = resolved
    return files


def _attached_files(config: pytest.Config) -> dict[str, Path]:
    """As pytest_sessionstart read them."""
    return config.stash[ATTACHED]


def _settings_of(values: Mapping[str, Any]) -> dict[str, Any]:
    """Marker keywords: `sentinel__down_after_ms=1000` reads as `sentinel.down_after_ms`."""
    return {key.replace("__", "."): value for key, value in values.items()}


def _check_kind(kind: object, where: str) -> None:
    if kind not in KINDS:
        raise pytest.UsageError(
            f"redis-infra: {where} needs a topology, one of {', '.join(KINDS)} (got {kind!r})"
        )


@contextlib.contextmanager
def deployment_of(
    config: pytest.Config,
    kind: str,
    settings: Mapping[str, Any] | None = None,
    *,
    origin: str = "this fixture",
) -> Iterator[RedisDeployment]:
    """A started deployment of `kind` (or the attached one), removed afterwards. A
    deployment that cannot start fails the test with redis-infra's message alone (it
    names the setting, the rule and the fix, or the node and its log): the frames
    through this plugin would only bury it."""
    _check_kind(kind, origin)
    attached = _attached_files(config).get(kind)
    if attached is not None and not settings:  # one with settings of its own is started
        yield KINDS[kind].attach(attached)
        return
    image = config.getoption("--redis-infra-image")
    deployment = KINDS[kind](image) if image else KINDS[kind]()
    deployment.settings_source = f"the settings of {origin}"
    with contextlib.ExitStack() as stack:
        try:
            started = stack.enter_context(deployment.with_settings(settings or {}))
        except RedisInfraError as exc:
            failure = exc
        else:
            yield started
            return
    # Outside the `except`: pytest would print the message again, as the cause.
    pytest.fail(
        f"redis-infra: the {kind} deployment of {origin} did not start: {failure}", pytrace=False
    )


def redis_deployment_factory(
    kind: str, *, settings: Mapping[str, Any] | None = None, scope: Any = "session"
) -> Any:
    """A fixture that gives a deployment of `kind` with `settings` (dotted paths),
    started once per `scope`. Assign it to a name in a conftest.py:

        redis_fast_sentinel = redis_deployment_factory(
            "sentinel", settings={"sentinel.down_after_ms": 1000})
    """
    _check_kind(kind, "redis_deployment_factory")  # as the conftest is read, not at first use

    @pytest.fixture(scope=scope)
    def deployment(request: pytest.FixtureRequest) -> Iterator[RedisDeployment]:
        origin = f"fixture {request.fixturename}"
        with deployment_of(request.config, kind, settings, origin=origin) as started:
            yield started

    return deployment


def redis_client_factory(deployment_fixture: str, *, role: str = "app") -> Any:
    """A function-scoped fixture: a client of the deployment fixture named
    `deployment_fixture`, as `role`; every key is deleted after the test (an operator
    FLUSHALL, so the deployment is reused, not rebuilt)."""

    @pytest.fixture
    def client(request: pytest.FixtureRequest) -> Iterator[RedisClient]:
        deployment: RedisDeployment = request.getfixturevalue(deployment_fixture)
        yield from _client_of(deployment, role)

    return client


def _client_of(deployment: RedisDeployment, role: str) -> Iterator[RedisClient]:
    client = deployment.client(role)
    try:
        yield client
    finally:
        client.close()
        deployment.reset()


redis_single_deployment = redis_deployment_factory("single")
redis_sentinel_deployment = redis_deployment_factory("sentinel")
redis_cluster_deployment = redis_deployment_factory("cluster")
redis_single = redis_client_factory("redis_single_deployment")
redis_sentinel = redis_client_factory("redis_sentinel_deployment")
redis_cluster = redis_client_factory("redis_cluster_deployment")


@pytest.fixture
def redis_deployment(request: pytest.FixtureRequest) -> Iterator[RedisDeployment]:
    """The deployment the test asks for: `@pytest.mark.redis_topology(kind, **settings)`
    or `@pytest.mark.parametrize("redis_deployment", [kinds], indirect=True)`; the
    session's deployment of that kind unless settings ask for one of its own."""
    kind, settings = _requested(request)
    if settings:
        origin = f"@pytest.mark.{MARKER} of {request.node.nodeid}"
        with deployment_of(request.config, kind, settings, origin=origin) as own:
            yield own
        return
    yield request.getfixturevalue(f"redis_{kind}_deployment")


@pytest.fixture
def redis_client(redis_deployment: RedisDeployment) -> Iterator[RedisClient]:
    """A client of `redis_deployment`, every key deleted after the test."""
    yield from _client_of(redis_deployment, "app")


def _requested(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    param: Callable[[], Any] | str | None = getattr(request, "param", None)
    if isinstance(param, str):
        return param, {}
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        raise pytest.UsageError(
            "redis_deployment needs a topology: mark the test "
            f"@pytest.mark.{MARKER}('sentinel') or parametrize it indirectly"
        )
    keywords = dict(marker.kwargs)
    kind = marker.args[0] if marker.args else keywords.pop("kind", None)
    _check_kind(kind, f"@pytest.mark.{MARKER}")
    settings: dict[str, Any] = {}
    for arg in marker.args[1:]:
        if not isinstance(arg, Mapping):
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER}: settings are a mapping of dotted paths, not {arg!r}"
            )
        settings.update(arg)
    settings.update(_settings_of(keywords))
    return str(kind), settings
