"""The README's Python client example, run as written against a real deployment."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from infra.operations.client import connect
from tests.integration.conftest import DeployFactory

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[
        text.index("Python (redis-py), as `tests/integration/test_client_examples.py`") :
    ]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "the README lost its Python example"
    return found.group(1)


def test_the_readme_python_example_works_as_written(
    deploy: DeployFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = deploy("single", "example")  # ~1.5 s: the example must not depend on others
    shutil.copy(single.connection_file, tmp_path / "connection.json")
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_example(), "README.md", "exec"), {})  # noqa: S102 - our own README
    # What it wrote is there for the application's other clients.
    assert connect(single.info).get("app:session:1") == b"alice"
