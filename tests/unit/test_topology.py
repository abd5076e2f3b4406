"""Topology loading: shipped defaults are valid, and every bad input is named precisely."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from infra.core.certs import ensure_certificates
from infra.core.errors import ConfigError
from infra.core.layout import Role, nodes
from infra.core.model import Kind, Workload
from infra.core.topology import load_topology, parse_set_flags


@pytest.mark.parametrize("kind", ["single", "sentinel", "cluster"])
def test_shipped_topologies_load_with_secure_defaults(kind: str) -> None:
    topology = load_topology(kind, "trackeep")
    assert topology.kind is Kind(kind)
    assert topology.memory.workload is Workload.DURABLE
    assert topology.memory.policy == "noeviction"
    assert topology.persistence.aof and topology.persistence.appendfsync == "everysec"
    assert set(topology.tls.protocols) == {"TLSv1.2", "TLSv1.3"}
    assert topology.publish.host_ip == "127.0.0.1"
    assert topology.internal_network


def test_node_layout_per_kind() -> None:
    single = nodes(load_topology("single", "a"))
    assert [(n.name, n.role) for n in single] == [("a-redis", Role.MASTER)]
    sentinel = nodes(load_topology("sentinel", "b"))
    assert [n.role for n in sentinel].count(Role.SENTINEL) == 3
    assert [n.role for n in sentinel].count(Role.REPLICA) == 2
    cluster = nodes(load_topology("cluster", "c", {"cluster": {"masters": 4}}))
    assert len(cluster) == 8
    assert {n.shard for n in cluster} == {0, 1, 2, 3}
    assert len({n.name for n in cluster}) == 8


def test_overrides_merge_over_the_kind_defaults() -> None:
    topology = load_topology(
        "single", "x", parse_set_flags(["memory.maxmemory=1gb", "memory.container_limit=3gb"])
    )
    assert topology.memory.maxmemory_bytes == 1024**3
    assert topology.memory.container_limit_bytes == 3 * 1024**3
    assert topology.memory.policy == "noeviction"  # untouched keys keep their default


def test_auto_container_limit_holds_the_worst_case_of_each_kind() -> None:
    # dataset + a second copy for the fork + client memory + the channel names Redis 7.0
    # does not count + one PUBLISH of the largest value to every client + one buffer per
    # replica + the connection names Redis does not count + the process, in whole MiB
    # (a Cluster's sharded channels also keep their name in a per-slot tree)
    def limit(replicas: int, beside_each_name: float) -> int:
        mib = 256 * 2 + 32 + 32 * beside_each_name / 40 + 256 * 1 + 256 * 1 + 64 * replicas + 32
        return math.ceil(mib) * 1024**2

    single = load_topology("single", "x").memory.container_limit_bytes
    assert single == limit(0, 64 + 157) == 1265 * 1024**2
    assert load_topology("sentinel", "x").memory.container_limit_bytes == limit(2, 64 + 157)
    assert load_topology("cluster", "x").memory.container_limit_bytes == limit(1, 2 * 64 + 182)


def test_cache_workload_may_evict() -> None:
    topology = load_topology(
        "single", "cache", {"memory": {"workload": "cache", "policy": "allkeys-lru"}}
    )
    assert topology.memory.policy == "allkeys-lru"


def _problems(kind: str, name: str = "ok", overrides: dict[str, Any] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_topology(kind, name, overrides)
    error = caught.value
    for problem in error.problems:  # every problem says what to do about it
        assert problem.fix, problem
    return error


BAD_INPUTS: list[tuple[str, str, str, dict[str, Any], str, str]] = [
    # id, kind, name, overrides, field, words the rule must contain
    ("unknown kind in file", "single", "ok", {"kind": "master-slave"}, "kind", "is not one of single, sentinel, cluster"),
    ("unknown top-level key", "single", "ok", {"maxmemory": "1gb"}, "maxmemory", "not a known setting"),
    ("unknown nested key", "single", "ok", {"memory": {"max_memory": "1gb"}}, "memory.max_memory", "not a known"),
    ("port is text", "single", "ok", {"port": "six"}, "port", "whole number"),
    ("port out of range", "single", "ok", {"port": 70000}, "port", "at most 65535"),
    ("bool as text", "single", "ok", {"persistence": {"aof": "yes"}}, "persistence.aof", "true or false"),
    ("cluster with 2 masters", "cluster", "ok", {"cluster": {"masters": 2}}, "cluster.masters", "cannot form"),
    ("even sentinel count", "sentinel", "ok", {"sentinel": {"sentinels": 4}}, "sentinel.sentinels", "even"),
    ("too few sentinels", "sentinel", "ok", {"sentinel": {"sentinels": 1, "quorum": 1}}, "sentinel.sentinels", "at least 3"),
    ("impossible quorum", "sentinel", "ok", {"sentinel": {"quorum": 4}}, "sentinel.quorum", "never be reached"),
    ("port clash", "sentinel", "ok", {"sentinel": {"port": 6379}}, "sentinel.port", "also used by port"),
    ("cluster bus beyond 65535", "cluster", "ok", {"port": 60000}, "port", "cluster bus"),
    ("memory limit without fork room", "single", "ok", {"memory": {"container_limit": "384mb"}}, "memory.container_limit", "fork copy-on-write"),
    ("memory limit without replica buffers", "sentinel", "ok", {"memory": {"container_limit": "640mb"}}, "memory.container_limit", "128 MiB replica output buffers"),
    ("memory limit too small to run", "single", "ok", {"memory": {"maxmemory": "1mb", "container_limit": "5mb"}}, "memory.container_limit", "below what a node may hold"),
    ("value larger than a query", "single", "ok", {"clients": {"max_value": "32mb"}}, "clients.query_buffer", "cannot hold a command carrying the largest value"),
    ("reply limit below a value", "single", "ok", {"clients": {"max_value": "2mb", "output_normal": {"hard": "1mb", "soft": "1mb", "seconds": 10}}}, "clients.output_normal.hard", "would be disconnected"),
    ("message limit below a value", "single", "ok", {"clients": {"max_value": "2mb", "output_pubsub": {"hard": "1mb", "soft": "1mb", "seconds": 60}}}, "clients.output_pubsub.hard", "dropped by the largest message"),
    ("channel prefix as long as the limit", "single", "ok", {"access": {"app_channels": ["a" * 64 + "*"]}}, "access.app_channels", "no room under access.max_channel_length"),
    ("soft above hard", "single", "ok", {"clients": {"output_pubsub": {"hard": "8mb", "soft": "9mb", "seconds": 60}}}, "clients.output_pubsub.soft", "above the hard limit"),
    ("buffer limit not a mapping", "single", "ok", {"clients": {"output_replica": "64mb"}}, "clients.output_replica", "hard, soft and seconds"),
    ("client memory below one client", "single", "ok", {"clients": {"total_memory": "8mb"}}, "clients.total_memory", "cannot hold even one client"),
    ("bulk below Redis's minimum", "single", "ok", {"clients": {"max_value": "512kb"}}, "clients.max_value", "below the 1mb Redis accepts"),
    ("script limit past failover", "sentinel", "ok", {"clients": {"busy_reply_ms": 3000}}, "clients.busy_reply_ms", "failed over before anyone could SCRIPT KILL"),
    ("app may reach every channel", "single", "ok", {"access": {"app_channels": ["*"]}}, "access.app_channels", "could reach __sentinel__:hello"),
    ("app may reach sentinel's channel", "sentinel", "ok", {"access": {"app_channels": ["__sentinel__:*"]}}, "access.app_channels", "literal channel prefix"),
    ("glob in the middle", "single", "ok", {"access": {"app_channels": ["a*b"]}}, "access.app_channels", "literal channel prefix"),
    ("eval switch not a boolean", "single", "ok", {"access": {"app_eval": "yes"}}, "access.app_eval", "true or false"),
    ("break-glass shares a name", "single", "ok", {"users": {"breakglass": "admin"}}, "users.breakglass", "own least-privilege user"),
    ("unknown eviction policy", "single", "ok", {"memory": {"policy": "allkeys-lru2"}}, "memory.policy", "not one of"),
    ("durable data with eviction", "single", "ok", {"memory": {"policy": "allkeys-lru"}}, "memory.policy", "never be dropped silently"),
    ("unreadable size", "single", "ok", {"memory": {"maxmemory": "lots"}}, "memory.maxmemory", "not a memory size"),
    ("bad save point", "single", "ok", {"persistence": {"rdb_save": ["900"]}}, "persistence.rdb_save", "<seconds> <changes>"),
    ("unknown fsync mode", "single", "ok", {"persistence": {"appendfsync": "sometimes"}}, "persistence.appendfsync", "not one of"),
    ("name Docker rejects", "single", "My_Redis!", {}, "name", "not a valid deployment name"),
    ("name too long", "single", "a" * 41, {}, "name", "not a valid deployment name"),
    ("default user reused", "single", "ok", {"users": {"app": "default"}}, "users", "built-in user"),
    ("one user for two roles", "single", "ok", {"users": {"admin": "app"}}, "users.admin", "own least-privilege user"),
    ("invalid user name", "single", "ok", {"users": {"app": "my app"}}, "users.app", "not a valid ACL user name"),
    ("old TLS protocol", "single", "ok", {"tls": {"protocols": ["TLSv1.1"]}}, "tls.protocols", "only TLS 1.2 and 1.3"),
    ("publish address is a name", "single", "ok", {"publish": {"host_ip": "localhost"}}, "publish.host_ip", "not an IP address"),
    ("min replicas above replicas", "sentinel", "ok", {"sentinel": {"min_replicas_to_write": 3}}, "sentinel.min_replicas_to_write", "refuse every write"),
    ("section of another kind", "single", "ok", {"cluster": {"masters": 3}}, "cluster", "only applies to kind cluster"),
    ("invalid image reference", "single", "ok", {"image": "Redis Latest!"}, "image", "not a valid image reference"),
    ("TLS file missing", "single", "ok", {"tls": {"ca_file": "/nope/ca.crt", "cert_file": "/nope/s.crt", "key_file": "/nope/s.key", "client_cert_file": "/nope/c.crt", "client_key_file": "/nope/c.key"}}, "tls.ca_file", "does not exist"),
    ("TLS files partly given", "single", "ok", {"tls": {"ca_file": "/nope/ca.crt"}}, "tls.cert_file", "all 5 TLS files"),
    ("cluster clients with certificates", "cluster", "ok", {"tls": {"client_certificates": True}}, "tls.client_certificates", "cluster bus credential"),
    ("client files where clients have none", "cluster", "ok", {"tls": {"ca_file": "/nope/ca.crt", "cert_file": "/nope/s.crt", "key_file": "/nope/s.key", "client_cert_file": "/nope/c.crt"}}, "tls.client_cert_file", "clients present none"),
    ("published ports beyond 65535", "cluster", "ok", {"publish": {"base_port": 65532}}, "publish.base_port", "beyond 65535"),
    ("more cluster nodes than addresses", "cluster", "ok", {"cluster": {"masters": 60}}, "cluster.masters", "120 nodes need 120 fixed addresses; a /24 subnet holds 117"),
    ("more sentinel nodes than addresses", "sentinel", "ok", {"sentinel": {"replicas": 120}}, "sentinel.replicas", "fixed addresses"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "name", "overrides", "field", "words"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_names_field_rule_and_fix(
    kind: str, name: str, overrides: dict[str, Any], field: str, words: str
) -> None:
    error = _problems(kind, name, overrides)
    matching = [p for p in error.problems if p.field == field]
    assert matching, f"no problem for {field} in: {error}"
    assert any(words in p.rule for p in matching), str(error)


def test_unknown_topology_kind_names_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        load_topology("memcached", "ok")
    assert "single, sentinel, cluster" in str(caught.value)


def test_all_problems_are_reported_at_once() -> None:
    error = _problems("single", "Bad Name", {"port": "x", "memory": {"policy": "lru"}})
    assert {"name", "port", "memory.policy"} <= {p.field for p in error.problems}


def test_fix_suggests_the_closest_setting() -> None:
    error = _problems("single", "ok", {"memory": {"max_memory": "1gb"}})
    assert "memory.maxmemory" in error.problems[0].fix


@pytest.mark.parametrize("flag", ["maxmemory", "=1", "memory..policy=x", "memory.policy=[unclosed"])
def test_malformed_set_flags_are_refused(flag: str) -> None:
    with pytest.raises(ConfigError):
        parse_set_flags([flag])


def _tls_override(directory: Path, **replace: str) -> dict[str, Any]:
    files = {
        "ca_file": directory / "ca.crt",
        "cert_file": directory / "nodes" / "byo-redis.crt",
        "key_file": directory / "nodes" / "byo-redis.key",
        "client_cert_file": directory / "client.crt",
        "client_key_file": directory / "client.key",
    }
    return {"tls": {key: str(replace.get(key, path)) for key, path in files.items()}}


def test_brought_certificates_that_fit_are_accepted(tmp_path: Path) -> None:
    ensure_certificates(load_topology("single", "byo"), tmp_path)
    topology = load_topology("single", "byo", _tls_override(tmp_path))
    assert topology.tls.files is not None


def test_brought_key_that_does_not_match_is_refused(tmp_path: Path) -> None:
    ensure_certificates(load_topology("single", "byo"), tmp_path)
    overrides = _tls_override(tmp_path, key_file=str(tmp_path / "client.key"))
    error = _problems("single", "byo", overrides)
    assert any(p.field == "tls.key_file" and "does not belong" in p.rule for p in error.problems)


def test_brought_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    ensure_certificates(load_topology("single", "byo"), tmp_path / "one")
    ensure_certificates(load_topology("single", "byo"), tmp_path / "two")
    overrides = _tls_override(tmp_path / "one", ca_file=str(tmp_path / "two" / "ca.crt"))
    error = _problems("single", "byo", overrides)
    assert any("not signed by tls.ca_file" in p.rule for p in error.problems)


def test_brought_certificate_must_cover_every_node_name(tmp_path: Path) -> None:
    # Issued for a deployment called "other": its SANs do not name byo-redis.
    ensure_certificates(load_topology("single", "other"), tmp_path)
    overrides = _tls_override(
        tmp_path,
        cert_file=str(tmp_path / "nodes" / "other-redis.crt"),
        key_file=str(tmp_path / "nodes" / "other-redis.key"),
    )
    error = _problems("single", "byo", overrides)
    assert any(p.field == "tls.cert_file" and "byo-redis" in p.rule for p in error.problems)
