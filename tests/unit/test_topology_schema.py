"""The settings table and the readers agree: every setting it lists is read, with the
bounds it states, and the rendered reference in topologies/ is current."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from infra.assets import TOPOLOGIES_DIR
from infra.core.errors import ConfigError
from infra.core.model import Kind
from infra.core.topology import build_topology, fields_reference, read_topology_file
from infra.core.topology_schema import SCHEMA, Setting, Type, applies_to

REPO = Path(__file__).resolve().parents[2]


def _problems(kind: Kind, edit: Any) -> list[tuple[str, str]]:
    data = copy.deepcopy(read_topology_file(TOPOLOGIES_DIR / f"{kind.value}.yaml"))
    edit(data)
    try:
        build_topology(data, "schema", source="test", base_dir=TOPOLOGIES_DIR)
    except ConfigError as exc:
        return [(p.field, p.rule) for p in exc.problems]
    return []


def _cases(select: Any) -> list[Any]:
    return [
        pytest.param(kind, path, entry, id=f"{kind.value}:{path}")
        for kind in Kind
        for path, entry in SCHEMA.items()
        if applies_to(path, kind) and select(entry)
    ]


def _parent(data: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    *sections, key = path.split(".")
    for section in sections:
        data = data[section]
    return data, key


@pytest.mark.parametrize(
    ("kind", "path", "entry"),
    _cases(lambda e: e.type not in (Type.SECTION, Type.OTHER) and not e.nullable),
)
def test_every_required_setting_is_read(kind: Kind, path: str, entry: Setting) -> None:
    def drop(data: dict[str, Any]) -> None:
        parent, key = _parent(data, path)
        del parent[key]

    assert (path, "is missing") in _problems(kind, drop)


@pytest.mark.parametrize(
    ("kind", "path", "entry"),
    _cases(lambda e: e.type is Type.INTEGER and (e.minimum or e.maximum) is not None),
)
def test_every_stated_bound_is_enforced(kind: Kind, path: str, entry: Setting) -> None:
    for value, words in ((entry.minimum, "at least"), (entry.maximum, "at most")):
        if value is None:
            continue
        outside = value - 1 if words == "at least" else value + 1

        def put(data: dict[str, Any], outside: int = outside) -> None:
            parent, key = _parent(data, path)
            parent[key] = outside

        found = [rule for field, rule in _problems(kind, put) if field == path]
        assert any(rule.startswith(f"must be {words} {value}") for rule in found), found


def test_the_shipped_files_hold_every_setting_of_their_kind() -> None:
    for kind in Kind:
        data = read_topology_file(TOPOLOGIES_DIR / f"{kind.value}.yaml")
        for path in SCHEMA:
            parent: Any = data
            for part in path.split("."):
                parent = parent.get(part, KeyError) if isinstance(parent, dict) else KeyError
            optional_file = path.startswith("tls.") and path.endswith("_file")
            if applies_to(path, kind) and not optional_file and path != "cluster.placement":
                assert parent is not KeyError, f"{kind.value}.yaml lacks {path}"


def test_the_reference_in_topologies_is_current() -> None:
    written = (REPO / "topologies" / "FIELDS.md").read_text(encoding="utf-8")
    assert written == fields_reference(), "run: redis-infra fields > topologies/FIELDS.md"
