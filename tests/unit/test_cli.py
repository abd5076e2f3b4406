"""The command line: bad input stops before the engine is even asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import cli
from infra.backends import docker_engine
from infra.cli import common as cli_commands


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fails the test if anything reaches for the Docker engine."""
    calls: list[str] = []

    def refuse() -> None:
        calls.append("docker_client")
        raise AssertionError("the engine must not be contacted for bad input")

    monkeypatch.setattr(docker_engine, "docker_client", refuse)
    return calls


@pytest.mark.parametrize(
    "argv",
    [
        ["up", "--topology", "single", "--name", "Bad_Name"],
        ["up", "--topology", "single", "--name", "ok", "--set", "memory.policy=allkeys-lru"],
        ["up", "--topology", "single", "--name", "ok", "--set", "memory.container_limit=100mb"],
        ["up", "--topology", "cluster", "--name", "ok", "--set", "cluster.masters=2"],
        ["up", "--topology", "sentinel", "--name", "ok", "--set", "sentinel.sentinels=2"],
        ["up", "--topology", "nosuchkind", "--name", "ok"],
        ["up", "--topology", "single", "--name", "ok", "--image", "Not An Image"],
        ["up", "--topology", "single", "--name", "ok", "--set", "nonsense"],
    ],
)
def test_bad_input_exits_2_before_the_engine(
    argv: list[str], no_engine: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == cli_commands.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Fix:" in err
    assert no_engine == []


def test_render_writes_every_file_with_placeholders_only(
    tmp_path: Path, no_engine: list[str]
) -> None:
    assert (
        cli.main(["render", "--topology", "sentinel", "--name", "r", "--out", str(tmp_path)]) == 0
    )
    files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert {
        "r-data-0/redis.conf",
        "r-data-0/users.acl",
        "r-sentinel-2/sentinel.conf",
        "plan.json",
    } <= files
    acl = (tmp_path / "r-data-0" / "users.acl").read_text()
    assert "<<secret-sha256:app_password>>" in acl
    assert (
        tmp_path / "r-data-0" / "tls" / "server.key"
    ).read_text() == "<<secret:tls_key:r-data-0>>"
    assert no_engine == []


def test_missing_engine_is_reported_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert cli.main(["status", "--name", "x"]) == cli_commands.EXIT_FAILED
    err = capsys.readouterr().err
    assert "no Docker engine answers" in err and "scripts/ensure-docker.sh" in err
