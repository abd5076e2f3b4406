"""What an application's suite shows when the plugin cannot give it a deployment: the
message (field, rule, fix; or the engine and how to start it), not the frames of the
plugin, urllib3 and docker-py it passed through. No container is needed: each failure
comes before one would exist."""

from __future__ import annotations

import pytest

NO_ENGINE = "unix:///nonexistent/docker.sock"

SUITE = """
import pytest

def test_single(redis_single):
    redis_single.ping()

@pytest.mark.redis_topology("single", memory__maxmemroy="64mb")
def test_misspelled(redis_client):
    redis_client.ping()
"""


def _one_error(pytester: pytest.Pytester, selection: str) -> pytest.RunResult:
    """The suite's test `selection`, run: it errors at setup, the only outcome."""
    pytester.makepyfile(test_app=SUITE)
    result = pytester.runpytest_inprocess("-p", "redis_infra", "-k", selection)
    result.assert_outcomes(errors=1)
    return result


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)


def test_a_misspelled_setting_fails_its_test_with_the_message_alone(
    pytester: pytest.Pytester,
) -> None:
    output = _one_error(pytester, "misspelled").stdout.str()
    assert "memory.maxmemroy: is not a known setting" in output
    assert "use memory.maxmemory" in output  # the fix
    assert "@pytest.mark.redis_topology of test_app.py::test_misspelled" in output
    assert "plugin.py" not in output and "contextlib" not in output
    # Not again as the cause of the failure (the summary line may repeat it: in full
    # under CI=true, cut to the terminal's width elsewhere).
    assert "During handling of the above exception" not in output


def test_no_engine_fails_each_test_with_how_to_start_one_in_a_few_lines(
    pytester: pytest.Pytester,
) -> None:
    result = _one_error(pytester, "test_single")
    output = result.stdout.str()
    assert "no Docker engine answers" in output and "sudo systemctl start docker" in output
    assert "urllib3" not in output and "Traceback" not in output
    assert len(result.outlines) < 40, output


STUCK_NODE = """
import pytest
from infra.backends.testcontainers_backend import ContainerLogWait


class Stuck:
    \"\"\"A node container that runs and never answers: the wait strategy's target.\"\"\"

    name, status, attrs = "app-redis", "running", {"RestartCount": 0, "State": {}}

    def reload(self):
        pass

    def logs(self, tail=40):
        return b"Fatal TLS error: the node's own words"

    def get_wrapped_container(self):
        return self


@pytest.fixture(autouse=True)
def node_never_answers(monkeypatch):
    def start(deployment):
        wait = ContainerLogWait("authenticated TLS PING", lambda: False, timeout_s=0)
        wait.wait_until_ready(Stuck())

    monkeypatch.setattr("infra.testing.deployment.RedisDeployment.start", start)
"""


def test_a_node_that_never_answers_fails_its_test_with_its_log_alone(
    pytester: pytest.Pytester,
) -> None:
    # The wait strategy's timeout, as a real start would raise it (the node's start
    # itself is replaced: no engine here).
    pytester.makeconftest(STUCK_NODE)
    output = _one_error(pytester, "test_single").stdout.str()
    assert "the single deployment of fixture redis_single_deployment did not start" in output
    assert "app-redis: no authenticated TLS PING within 0 s" in output
    assert "Fatal TLS error: the node's own words" in output  # its log
    assert "Traceback" not in output and "plugin.py" not in output, output


def test_a_missing_connection_file_stops_the_run_once_before_any_test(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pytester.makepyfile(test_app=SUITE)
    missing = tmp_path_factory.mktemp("nothing") / "connection.json"
    result = pytester.runpytest_inprocess(
        "-p", "redis_infra", f"--redis-infra-connection={missing}"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = result.stderr.str()
    assert f"--redis-infra-connection {missing}" in errors and "does not exist" in errors
    assert "redis-infra up" in errors  # the fix
    result.stdout.no_fnmatch_line("*test_single*")  # no test ran


def test_a_factory_of_an_unknown_topology_is_refused_as_the_conftest_is_read(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        "from infra.testing.plugin import redis_deployment_factory\n"
        'fast = redis_deployment_factory("sentinal")\n'
    )
    pytester.makepyfile(test_app="def test_nothing():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "redis_infra")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    wanted = "redis_deployment_factory needs a topology, one of single, sentinel, cluster"
    assert f"{wanted} (got 'sentinal')" in result.stderr.str()
