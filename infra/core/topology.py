"""Load a topology file, apply overrides and validate everything into a `Topology`.

Bad input stops here, before any container exists, with every problem listed as
field / rule / fix. The shipped files in `topologies/` hold each kind's defaults;
a stack (`redis-infra:overrides`) or CLI flags (`--set memory.maxmemory=512mb`)
override single keys.

The reading is split by job: `fields` (typed getters that record problems),
`topology_schema` (the keys each section may hold), `topology_sections` and
`topology_services` (one reader per section), `topology_rules` (rules that span
sections); this module loads the files, merges overrides and puts them together.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from infra.assets import TOPOLOGIES_DIR
from infra.core.certs_brought import check_brought_files
from infra.core.errors import ConfigError
from infra.core.model import (
    Kind,
    Topology,
)
from infra.core.topology_rules import CrossFieldRules
from infra.core.topology_schema import (
    NAME_PATTERN,
    TOP_KEYS,
    render_reference,
)
from infra.core.topology_sections import DataSections
from infra.core.topology_services import ServiceSections


def known_kinds() -> list[str]:
    return [kind.value for kind in Kind]


def resolve_topology_file(topology: str) -> Path:
    """The file for a kind name ("single") or a path to a topology file."""
    if topology in known_kinds():
        return TOPOLOGIES_DIR / f"{topology}.yaml"
    path = Path(topology).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path.resolve()
    raise ConfigError.single(
        "--topology",
        "topology",
        f"'{topology}' is neither a known kind ({', '.join(known_kinds())}) "
        "nor an existing .yaml file",
        f"use one of {', '.join(known_kinds())} or a path to a topology file",
    )


def parse_set_flags(assignments: Iterable[str]) -> dict[str, Any]:
    """`["memory.maxmemory=512mb", "sentinel.quorum=2"]` as a nested override mapping."""
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError.single(
                "--set",
                assignment,
                "an override must look like dotted.key=value",
                "write for example --set memory.maxmemory=512mb",
            )
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as exc:
            raise ConfigError.single(
                "--set", key, f"value '{raw}' is not valid YAML ({exc})", "quote the value"
            ) from exc
        _set_dotted(overrides, key.split("."), value)
    return overrides


def _set_dotted(target: dict[str, Any], parts: Sequence[str], value: Any) -> None:
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied key by key (mappings merge, everything else replaces)."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_topology_file(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError.single(
            source, "<file>", f"cannot be read as YAML ({exc})", "fix the file's syntax"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError.single(
            source, "<file>", "must be a mapping of settings", "start from topologies/single.yaml"
        )
    return data


def fields_reference() -> str:
    """The settings table (`topologies/FIELDS.md`), with each shipped kind's defaults."""
    defaults = {kind: read_topology_file(TOPOLOGIES_DIR / f"{kind}.yaml") for kind in known_kinds()}
    return render_reference(defaults)


def load_topology(
    topology: str,
    name: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    override_source: str = "overrides",
) -> Topology:
    """Validated `Topology` for a kind name or file, deployment `name` and overrides."""
    path = resolve_topology_file(topology)
    data = deep_merge(read_topology_file(path), overrides or {})
    source = str(path) if not overrides else f"{path} + {override_source}"
    return build_topology(data, name, source=source, base_dir=path.parent)


def build_topology(data: Mapping[str, Any], name: str, *, source: str, base_dir: Path) -> Topology:
    """Validate an already merged settings mapping; raise ConfigError listing every problem."""
    reader = _Reader(base_dir)
    topology = reader.topology(data, name)
    if reader.problems or topology is None:
        raise ConfigError(source, reader.problems)
    topology = dataclasses.replace(topology, source=source, settings=copy.deepcopy(dict(data)))
    # Brought certificates are checked now too: a mismatch must stop the run before
    # any container exists, not when Redis fails to start.
    problems = check_brought_files(topology)
    if problems:
        raise ConfigError(source, problems)
    return topology


class _Reader(DataSections, ServiceSections, CrossFieldRules):
    """A whole topology: each section read by its own reader, then the rules across them."""

    def topology(self, data: Mapping[str, Any], name: str) -> Topology | None:
        self.unknown_keys(data, TOP_KEYS)
        if not NAME_PATTERN.match(name):
            self.problem(
                "name",
                f"'{name}' is not a valid deployment name: it becomes container names, "
                "hostnames and certificate names, so it must be 1-40 lowercase letters, "
                "digits or '-', not starting or ending with '-'",
                "use a name such as 'app-cache' or 'trackeep'",
            )
        kind_value = self.choice(data, "kind")
        if kind_value not in known_kinds():
            return None  # the problem is recorded; nothing else can be read without it
        kind = Kind(kind_value)
        for other in (Kind.SENTINEL, Kind.CLUSTER):
            if other is not kind and other.value in data:
                self.problem(
                    other.value,
                    f"the '{other.value}' section only applies to kind {other.value}",
                    f"remove it, or set kind: {other.value}",
                )
        image = self.string(data, "image")
        uid = self.integer(data, "uid")
        port = self.integer(data, "port")
        network = self.section(data, "network")
        internal_network = self.boolean(network, "network.internal")
        subnet = self.subnet(network)
        sentinel = self.sentinel(self.section(data, "sentinel")) if kind is Kind.SENTINEL else None
        cluster = self.cluster(self.section(data, "cluster")) if kind is Kind.CLUSTER else None
        clients = self.clients(self.section(data, "clients"))
        access = self.access(self.section(data, "access"))
        replicas = sentinel.replicas if sentinel else cluster.replicas_per_master if cluster else 0
        topology = Topology(
            name=name,
            kind=kind,
            image=image,
            uid=uid,
            port=port,
            internal_network=internal_network,
            subnet=subnet,
            persistence=self.persistence(self.section(data, "persistence")),
            memory=self.memory(
                self.section(data, "memory"),
                clients,
                access,
                replicas,
                cluster=kind is Kind.CLUSTER,
            ),
            limits=self.limits(self.section(data, "limits")),
            clients=clients,
            access=access,
            tls=self.tls(self.section(data, "tls")),
            users=self.users(self.section(data, "users"), kind),
            publish=self.publish(self.section(data, "publish")),
            sentinel=sentinel,
            cluster=cluster,
        )
        self.cross_checks(topology)
        return topology
