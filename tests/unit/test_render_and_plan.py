"""Rendering and planning: the hardening is decided here, so it is checked here."""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.core.certs import CertificateSet
from infra.core.cluster_jobs import slot_ranges
from infra.core.errors import ConfigError
from infra.core.layout import Role, nodes
from infra.core.model import Topology
from infra.core.plan import build_plan
from infra.core.plan_specs import LABEL_NAME, LABEL_SPEC, JobKind, Plan
from infra.core.render import CONF_DIR, SECRET_MODE, render_topology
from infra.core.secrets import referenced, resolve
from tests.unit.conftest import TopologyFactory

CertsFor = Callable[[Topology], CertificateSet]


class _Addresses(dict[str, str]):
    """Every node at a made-up address, for rendering without a plan."""

    def __missing__(self, name: str) -> str:
        return f"10.0.0.{sum(map(ord, name)) % 200 + 10}"

    def get(self, name: str, default: str | None = None) -> str:  # type: ignore[override]
        return self[name]


ADDRESSES = _Addresses()


def _conf(text: str) -> dict[str, str]:
    """Directive -> its arguments (last one wins, as in Redis)."""
    result = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            result[key] = value
    return result


def _files(topology: Topology, certs: CertsFor, node: str) -> dict[str, str]:
    return {f.path: f.content for f in render_topology(topology, certs(topology), ADDRESSES)[node]}


def test_single_config_is_tls_only_and_hardened(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    topology = make_topology("single", "t")
    conf = _conf(_files(topology, certificates_for, "t-redis")["redis.conf"])
    assert conf["port"] == "0"  # no plaintext listener
    assert conf["tls-port"] == "6379"
    assert conf["tls-auth-clients"] == "yes"
    assert conf["tls-protocols"] == '"TLSv1.2 TLSv1.3"'
    assert conf["enable-protected-configs"] == "no"
    assert conf["enable-debug-command"] == "no"
    assert conf["enable-module-command"] == "no"
    assert conf["appendonly"] == "yes" and conf["appendfsync"] == "everysec"
    assert conf["save"] == '"900 1 300 10 60 10000"'
    assert conf["maxmemory"] == "256mb" and conf["maxmemory-policy"] == "noeviction"
    assert conf["aclfile"] == "/etc/redis-infra/users.acl"
    assert "rename-command" not in conf  # deprecated; ACLs do the job
    assert "requirepass" not in conf
    assert "tls-replication" not in conf and "cluster-enabled" not in conf


def test_acl_disables_default_and_limits_every_role(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    topology = make_topology("single", "t")
    acl = _files(topology, certificates_for, "t-redis")["users.acl"]
    users = {line.split()[1]: line for line in acl.splitlines() if line.startswith("user ")}
    assert set(users) == {"default", "app", "admin", "breakglass", "health", "replicator"}
    assert " off " in users["default"] and "nocommands" in users["default"]
    # Channels are an allow-list (never &*); code is FCALL only unless EVAL is allowed.
    # ... of bounded length (Redis 7.0 does not count subscribed names as client memory).
    channels = re.findall(r" &(\S+)", users["app"])
    assert channels == ["app:" + "?" * n for n in range(61)]  # up to 64 characters
    # Commands are an allow-list: what the seed's patterns need and clients send.
    allowed = set(re.findall(r" \+(\S+)", users["app"]))
    assert " -@all " in users["app"] and "@" not in users["app"].split(" -@all ")[1]
    assert {"get", "hgetall", "zincrby", "publish", "subscribe", "fcall", "multi"} <= allowed
    unbounded = {"copy", "sunion", "watch", "client|tracking", "xclaim", "blpop", "dump"}
    assert not unbounded & allowed and "client|setname" not in allowed
    # The operator can neither weaken the node, read its secrets nor publish hellos.
    for denied in ("-config|set", "-config|get", "-acl|setuser", "-replicaof", "-shutdown"):
        assert f" {denied} " in f"{users['admin']} "
    assert "&*" not in users["admin"]
    assert users["breakglass"].endswith("&* +@all")
    assert users["health"].endswith("-@all +ping")
    assert users["replicator"].endswith("-@all +psync +replconf +ping")
    # Passwords are stored as hashes of secrets, never in clear.
    for name in ("app", "admin", "breakglass", "health", "replicator"):
        assert re.search(r" #<<secret-sha256:\w+_password>> ", users[name]), users[name]
    resolved = resolve(acl, {n: "x" * 20 + n for n in referenced([acl])})
    assert "<<" not in resolved and re.search(r"#[0-9a-f]{64}", resolved)


def test_eval_is_granted_only_when_asked_and_never_function_writes(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    topology = make_topology("single", "t", access={"app_eval": True, "app_channels": ["tk:*"]})
    acl = _files(topology, certificates_for, "t-redis")["users.acl"]
    app = next(line for line in acl.splitlines() if line.startswith("user app "))
    assert "+eval +evalsha" in app and "+script|load" in app
    assert "function" not in app and "script|flush" not in app
    assert " resetchannels &tk: &tk:? &tk:?? " in app


def test_nodes_bound_what_clients_and_scripts_may_cost(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    conf = _conf(_files(make_topology("single", "t"), certificates_for, "t-redis")["redis.conf"])
    assert conf["proto-max-bulk-len"] == "1mb"
    assert conf["client-query-buffer-limit"] == "4mb"
    assert conf["maxmemory-clients"] == "32mb"
    assert conf["maxclients"] == "256"
    assert conf["busy-reply-threshold"] == "500"
    text = _files(make_topology("single", "t"), certificates_for, "t-redis")["redis.conf"]
    assert "client-output-buffer-limit normal 8mb 4mb 10" in text
    assert "client-output-buffer-limit replica 64mb 32mb 60" in text
    assert "client-output-buffer-limit pubsub 4mb 1mb 60" in text
    # TLS 1.2 only with AEAD ciphers and forward secrecy.
    ciphers = conf["tls-ciphers"].split(":")
    assert ciphers and all(c.startswith("ECDHE-") for c in ciphers)
    assert all("GCM" in c or "CHACHA20" in c for c in ciphers)


def test_sentinels_let_the_operator_observe_but_not_steer(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    sentinel = _files(make_topology("sentinel", "s"), certificates_for, "s-sentinel-0")
    users = {
        line.split()[1]: line
        for line in sentinel["sentinel.conf"].splitlines()
        if line.startswith("user ")
    }
    for denied in ("-publish", "-sentinel|set", "-sentinel|monitor", "-sentinel|config"):
        assert f" {denied} " in f"{users['admin']} "
    assert "+publish" not in users["app"]


def test_secret_bearing_files_are_owner_read_only(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    for kind in ("single", "sentinel", "cluster"):
        topology = make_topology(kind, "m")
        for files in render_topology(topology, certificates_for(topology), ADDRESSES).values():
            for rendered in files:
                if rendered.holds_secret:
                    assert rendered.mode == SECRET_MODE, (kind, rendered.path)


def test_sentinel_data_nodes_replicate_over_tls_with_credentials(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    topology = make_topology("sentinel", "s")
    conf = _conf(_files(topology, certificates_for, "s-data-1")["redis.conf"])
    assert conf["tls-replication"] == "yes"
    assert conf["masteruser"] == "replicator"  # on every node: roles swap on failover
    assert conf["masterauth"] == "<<secret:replication_password>>"
    assert conf["min-replicas-to-write"] == "1"
    assert conf["replica-announce-ip"] == ADDRESSES["s-data-1"]
    sentinel = _files(topology, certificates_for, "s-sentinel-0")["sentinel.conf"]
    assert f"sentinel monitor mymaster {ADDRESSES['s-data-0']} 6379 2" in sentinel
    assert "sentinel deny-scripts-reconfig yes" in sentinel
    # By address, never by name: Docker's DNS changes as containers stop and reconnect.
    assert "sentinel resolve-hostnames no" in sentinel
    assert f"sentinel announce-ip {ADDRESSES['s-sentinel-0']}" in sentinel


def test_cluster_nodes_encrypt_the_bus_and_announce_names(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    topology = make_topology("cluster", "c")
    conf = _conf(_files(topology, certificates_for, "c-node-0")["redis.conf"])
    assert conf["cluster-enabled"] == "yes"
    assert conf["tls-cluster"] == "yes" and conf["tls-replication"] == "yes"
    assert conf["cluster-config-file"] == "/data/nodes.conf"  # on the node's volume
    assert conf["cluster-announce-hostname"] == "c-node-0"  # MOVED names, for clients
    assert conf["cluster-announce-ip"] == ADDRESSES["c-node-0"]  # what peers use


def _plan(make_topology: TopologyFactory, certs: CertsFor, kind: str, **overrides: object) -> Plan:
    topology = make_topology(kind, "p", **overrides)
    return build_plan(topology, certs(topology), subnet="10.213.7.0/24")


def plan_limit(kind: str) -> int:
    """dataset + fork copy + client memory + uncounted channel names + one PUBLISH to
    every client + replica buffers + process, in whole MiB (infra/core/memory_budget.py)."""
    replicas = {"single": 0, "sentinel": 2, "cluster": 1}[kind]
    beside = 2 * 64 + 182 if kind == "cluster" else 64 + 157  # per subscription, uncounted
    mib = 256 * 2 + 32 + 32 * beside / 40 + 256 * 1 + 256 * 1 + 64 * replicas + 32
    return math.ceil(mib) * 1024**2


def test_every_container_is_hardened(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    for kind in ("single", "sentinel", "cluster"):
        plan = _plan(make_topology, certificates_for, kind)
        for spec in plan.containers:
            assert spec.user == "999:999"
            assert spec.read_only
            assert spec.cap_drop == ("ALL",) and spec.cap_add == ()
            assert "no-new-privileges:true" in spec.security_opt
            wanted = 176 * 1024**2 if spec.node.role is Role.SENTINEL else None
            assert spec.memory_bytes == (wanted or plan_limit(kind)) and spec.pids_limit == 256
            assert spec.restart == "unless-stopped"
            assert all(port.host_ip == "127.0.0.1" for port in spec.ports)
            assert spec.labels[LABEL_NAME] == "p" and spec.labels[LABEL_SPEC]
            mounts = {m.target: m.read_only for m in spec.mounts}
            assert mounts == {"/etc/redis-infra": True, "/data": False}
            # The health check reads its password from the config volume, never argv.
            kind_of_test, shell = spec.healthcheck.test
            assert kind_of_test == "CMD-SHELL" and "<<secret" not in shell
            assert 'REDISCLI_AUTH="$(cat /etc/redis-infra/health-password)" redis-cli' in shell
            assert "--user health" in shell and shell.endswith("ping | grep -q PONG")


def test_networks_are_internal_and_publishing_is_isolated(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    plan = _plan(make_topology, certificates_for, "single")
    internal, publish = plan.networks
    assert internal.internal and internal.name == "p-net"
    assert not publish.internal
    assert publish.options["com.docker.network.bridge.enable_icc"] == "false"
    assert publish.options["com.docker.network.bridge.enable_ip_masquerade"] == "false"
    unpublished = _plan(make_topology, certificates_for, "single", publish={"enabled": False})
    assert [n.name for n in unpublished.networks] == ["p-net"]
    assert all(spec.ports == () for spec in unpublished.containers)


def test_config_job_installs_files_without_network_or_extra_privilege(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    plan = _plan(make_topology, certificates_for, "single")
    job = plan.config_job
    assert job.kind is JobKind.CONFIG and job.network is None
    assert job.cap_drop == ("ALL",) and set(job.cap_add) == {"CHOWN", "DAC_OVERRIDE", "FOWNER"}
    assert {u.path for u in job.uploads} == {
        "/stage/p-redis/redis.conf",
        "/stage/p-redis/users.acl",
        "/stage/p-redis/tls/ca.crt",
        "/stage/p-redis/tls/server.crt",
        "/stage/p-redis/tls/server.key",
        "/stage/p-redis/health-password",
    }
    script = job.command[2]
    assert (
        "install_file /stage/p-redis/tls/server.key /volumes/p-redis/config/tls/server.key 0400"
        in script
    )
    assert "install_file /stage/p-redis/users.acl /volumes/p-redis/config/users.acl 0400" in script
    assert "own_directory /volumes/p-redis/config 0500" in script
    assert script.rstrip().endswith("echo config job: files installed")
    # Staged secrets do not outlive the job, however it ends.
    assert script.splitlines()[1] == "trap 'rm -rf /stage' EXIT"


def test_each_sentinel_starts_knowing_its_peers_by_their_own_ids(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    topology = make_topology("sentinel", name="p")
    sentinels = [n.name for n in nodes(topology) if n.role is Role.SENTINEL]
    texts = {name: _files(topology, certificates_for, name)["sentinel.conf"] for name in sentinels}
    own = {
        name: re.findall(r"^sentinel myid ([0-9a-f]{40})$", text, re.M)
        for name, text in texts.items()
    }
    assert all(len(ids) == 1 for ids in own.values())
    assert len({ids[0] for ids in own.values()}) == 3
    for name, text in texts.items():
        peers = re.findall(r"^sentinel known-sentinel mymaster (\S+) 26379 (\S+)$", text, re.M)
        # Every other sentinel, at its address, under the id it gives itself.
        assert sorted(peers) == sorted(
            (ADDRESSES[peer], own[peer][0]) for peer in sentinels if peer != name
        )
    # Another deployment's sentinels are other sentinels.
    other = make_topology("sentinel", name="q")
    other_text = _files(other, certificates_for, "q-sentinel-0")["sentinel.conf"]
    assert own["p-sentinel-0"][0] not in other_text


def test_sentinel_plan_keeps_sentinel_state_across_reruns(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    plan = _plan(make_topology, certificates_for, "sentinel")
    sentinels = [s for s in plan.containers if s.node.role is Role.SENTINEL]
    assert len(sentinels) == 3
    assert sentinels[0].command[2].endswith("; exec redis-sentinel /data/sentinel.conf")
    script = plan.config_job.command[2]
    assert (
        "install_keeping_sentinel_state /stage/p-sentinel-0/sentinel.conf "
        "/volumes/p-sentinel-0/data/sentinel.conf 0600"
    ) in script
    data = [s for s in plan.containers if s.node.role is not Role.SENTINEL]
    assert all(s.command[2].endswith("; exec redis-server /data/redis.conf") for s in data)
    assert (
        "install_keeping_role /stage/p-data-1/redis.conf /volumes/p-data-1/data/redis.conf"
        in script
    )
    assert "own_directory /volumes/p-data-1/data 0700" in script
    # Whether any sentinel recorded state is asked before anything is installed.
    recorded = script.index("note_recorded_sentinels /volumes/p-sentinel-0/data/sentinel.conf")
    assert recorded < script.index("install_keeping_role /stage/")
    assert plan.outputs.service_name == "mymaster"


def test_cluster_plan_forms_the_cluster_with_a_job(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    plan = _plan(make_topology, certificates_for, "cluster")
    (job,) = plan.bootstrap_jobs
    assert job.kind is JobKind.CLUSTER_CREATE and job.network == "p-net"
    script = job.command[2]
    # Masters first, by fixed address, each with its slots and epoch; then each replica
    # onto its own shard's master.
    lines = script.splitlines()
    assert [line for line in lines if "assign_slots" in line and "()" not in line] == [
        "  assign_slots 10.213.7.10 0 5460 1",
        "  assign_slots 10.213.7.12 5461 10921 2",
        "  assign_slots 10.213.7.14 10922 16383 3",
    ]
    # Every node meets every later one: each pair once, no node left to gossip.
    meets = [line.split()[1:] for line in lines if line.startswith("  meet_all ")]
    pairs = {frozenset((meeting[0], peer)) for meeting in meets for peer in meeting[1:]}
    assert len(meets) == 5 and len(pairs) == 15  # 6 nodes: 6 * 5 / 2
    assert "replicate 10.213.7.11 10.213.7.10" in script
    assert "replicate 10.213.7.15 10.213.7.14" in script
    # Then, handshakes done, every node meets every other again, so each learns the
    # others' slots and roles at once rather than after cluster-node-timeout / 2.
    settle = [i for i, line in enumerate(lines) if line.startswith("wait_settled ")]
    again = [i for i, line in enumerate(lines) if line.startswith("meet_all ")]
    last_replicate = max(i for i, line in enumerate(lines) if line.startswith("replicate "))
    agreement = lines.index("wait_agreement 10.213.7.10")
    assert len(settle) == 6 and all(lines[i].endswith(" 6") for i in settle)
    assert last_replicate < min(settle) and max(settle) < min(again) and max(again) < agreement
    introduced = {(lines[i].split()[1], peer) for i in again for peer in lines[i].split()[2:]}
    assert len(introduced) == 30  # 6 nodes, each to the 5 others
    assert "cluster_slots_assigned" in script  # idempotent on a formed cluster
    # The operator's password travels as an upload, never on the command line, and is
    # deleted before anything else runs (under Pulumi the exited job container stays).
    assert "<<secret" not in script
    password = job.uploads[0]
    assert (password.path, password.content) == (
        "/stage/admin-password",
        "<<secret:admin_password>>",
    )
    lines = script.splitlines()
    assert lines[1:4] == [
        "trap 'rm -rf /stage' EXIT",
        "REDISCLI_AUTH=$(cat /stage/admin-password)",
        "rm -f /stage/admin-password",
    ]
    # Root only to delete what Docker uploaded as root; one capability, to read the key.
    assert job.user == "0:0" and job.cap_drop == ("ALL",) and job.cap_add == ("DAC_READ_SEARCH",)
    # Ready at exit: the library on today's masters, then every node read once for all.
    assert lines[-3].startswith("load_functions 10.213.7.10 10.213.7.11")
    assert lines[-2].startswith("wait_ready 6 10.213.7.10 10.213.7.11")
    assert lines[-1] == "echo cluster formed"
    assert {spec.node.shard for spec in plan.containers} == {0, 1, 2}


def test_the_same_job_grows_a_formed_cluster(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    # A stack whose cluster.masters grew gets a job that joins the new shard and moves
    # slots onto it: the job converges the cluster to the plan, it does not only create.
    plan = _plan(make_topology, certificates_for, "cluster", cluster={"masters": 4})
    script = plan.bootstrap_jobs[0].command[2]
    assert (
        "if alone 10.213.7.16; then cli --cluster add-node 10.213.7.16:6379 10.213.7.10:6379"
        in script
    )
    assert "replicate 10.213.7.17 10.213.7.16" in script
    assert "if cli --cluster info 10.213.7.10:6379 | grep -q '| 0 slots |'; then" in script
    assert "  wait_known 10.213.7.10 8" in script
    assert "  wait_ok 10.213.7.16" in script
    assert "  cli --cluster rebalance 10.213.7.10:6379 --cluster-use-empty-masters" in script
    assert "close_open_slots 10.213.7.10" in script  # an interrupted rebalance is finished


def test_cluster_placement_refuses_a_shard_in_one_domain(make_topology: TopologyFactory) -> None:
    with pytest.raises(ConfigError) as caught:
        make_topology(
            "cluster",
            "p",
            cluster={"failure_domains": ["host-a", "host-b"], "placement": {"node-1": "host-a"}},
        )
    problem = caught.value.problems[0]
    assert problem.field == "cluster.placement"
    assert "p-node-0 (master) and p-node-1, its only replica, are both on host-a" in problem.rule
    spread = make_topology("cluster", "p", cluster={"failure_domains": ["host-a", "host-b"]})
    domains = {node.name: node.domain for node in nodes(spread)}
    assert domains["p-node-0"] != domains["p-node-1"]  # spread by default


def test_plan_needs_secrets_only_by_reference(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    plan = _plan(make_topology, certificates_for, "single")
    assert plan.secret_names == [
        "admin_password",
        "app_password",
        "breakglass_password",
        "health_password",
        "replication_password",
        "tls_key:p-redis",
    ]
    assert not any("PRIVATE KEY" in u.content for u in plan.config_job.uploads)


def test_spec_hash_changes_with_what_decides_the_container(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    base = _plan(make_topology, certificates_for, "single").containers[0]
    same = _plan(make_topology, certificates_for, "single").containers[0]
    bigger = _plan(
        make_topology,
        certificates_for,
        "single",
        memory={"maxmemory": "300mb"},
    ).containers[0]
    assert base.labels[LABEL_SPEC] == same.labels[LABEL_SPEC]
    assert base.labels[LABEL_SPEC] != bigger.labels[LABEL_SPEC]


def test_single_and_sentinel_load_the_function_library_as_the_operator(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    for kind, target in (
        ("single", "p-redis"),
        ("sentinel", "10.213.7.10 10.213.7.11 10.213.7.12"),
    ):
        (job,) = _plan(make_topology, certificates_for, kind).bootstrap_jobs
        assert job.kind is JobKind.FUNCTIONS and job.network == "p-net"
        assert f"load_functions {target}" in job.command[2].splitlines()
        library = next(u for u in job.uploads if u.path == "/stage/functions.lua")
        assert library.content.startswith("#!lua name=ratelimit")
        assert "register_function('token_bucket'" in library.content


def test_the_largest_cluster_that_fits_its_subnet_is_planned(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    """Validation's address rule and the plan agree at the boundary: 58 shards of 2 fit
    the default /24 (60 are refused by validation, see test_topology), 60 fit a /23."""
    for masters, subnet in ((58, "10.213.9.0/24"), (60, "10.220.0.0/23")):
        topology = make_topology(
            "cluster", "big", cluster={"masters": masters}, network={"subnet": subnet}
        )
        plan = build_plan(topology, certificates_for(topology))
        data = [c for c in plan.containers if c.name.startswith("big-node-")]
        assert len(data) == 2 * masters


def test_every_job_script_passes_the_shell_linter(
    make_topology: TopologyFactory, certificates_for: CertsFor
) -> None:
    """The jobs' shell programs live in redis/jobs/*.sh; what a job really runs is those
    functions plus the lines the plan writes around them: lint the whole of it, and the
    variants a backend runs when the host finishes a job."""
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck is missing (scripts/setup.sh installs it)")
        pytest.skip("shellcheck is not installed (scripts/setup.sh installs it)")
    for kind in ("single", "sentinel", "cluster"):
        plan = _plan(make_topology, certificates_for, kind)
        variants = [job.host_finishes for job in plan.bootstrap_jobs if job.host_finishes]
        for job in (plan.config_job, *plan.bootstrap_jobs, *variants):
            assert job.command[:2] == ("sh", "-c")
            linted = subprocess.run(
                [shellcheck, "-s", "sh", "-"],
                input=job.command[2],
                capture_output=True,
                text=True,
                check=False,
            )
            assert linted.returncode == 0, f"{kind} {job.kind}:\n{linted.stdout}"


@pytest.mark.parametrize("masters", [3, 4, 7, 60, 100])
def test_the_slots_are_split_evenly_and_whole(masters: int) -> None:
    ranges = slot_ranges(masters)
    assert ranges[0][0] == 0 and ranges[-1][1] == 16383
    assert all(after[0] == before[1] + 1 for before, after in itertools.pairwise(ranges))
    sizes = [high - low + 1 for low, high in ranges]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(
    ("kind", "first"),
    [
        ("single", ["p-redis"]),
        ("sentinel", ["p-data-0", "p-sentinel-0", "p-sentinel-1", "p-sentinel-2"]),
        ("cluster", ["p-node-0", "p-node-2", "p-node-4"]),
    ],
)
def test_replicas_start_in_a_wave_after_every_master_and_sentinel(
    make_topology: TopologyFactory, certificates_for: CertsFor, kind: str, first: list[str]
) -> None:
    plan = _plan(make_topology, certificates_for, kind)
    waves = plan.start_waves
    assert [spec.name for spec in waves[0]] == first
    assert all(spec.node.role is not Role.REPLICA for spec in waves[0])
    assert all(spec.node.role is Role.REPLICA for wave in waves[1:] for spec in wave)
    started = [spec.name for wave in waves for spec in wave]
    assert sorted(started) == sorted(spec.name for spec in plan.containers)  # each once
    assert len(waves) == (1 if kind == "single" else 2)


@pytest.mark.parametrize("kind", ["single", "sentinel", "cluster"])
def test_the_config_job_marks_each_node_installed_after_its_last_file(
    make_topology: TopologyFactory, certificates_for: CertsFor, kind: str
) -> None:
    plan = _plan(make_topology, certificates_for, kind)
    lines = plan.config_job.command[2].splitlines()
    for spec in plan.containers:
        root = f"/volumes/{spec.name}/"
        mine = [i for i, line in enumerate(lines) if root in line]
        marker = f"mark_installed {root}config/files-installed"
        # The node's very last step; before it, its folders (data too: a node mounts
        # its volumes no_copy, so nothing else hands the data folder to Redis).
        assert lines[mine[-1]] == marker
        assert lines.count(marker) == 1
        assert f"own_directory {root}data 0700" in lines[: mine[-1]]
        assert spec.command[:2] == ("sh", "-c")
        assert spec.command[2].index(f"-e {CONF_DIR}/files-installed") < spec.command[2].index(
            "exec redis-"
        )


BUSYBOX = shutil.which("busybox") or "/bin/busybox"  # the local image's shell


def _node_command(
    tmp_path: Path, plan: Plan, shell: str = BUSYBOX
) -> tuple[list[str], Path, dict[str, str]]:
    """The node's command, run with busybox sh (the local image's) or another shell; its
    marker under tmp_path, and a fake redis-server that says it ran."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "redis-server"
    fake.write_text('#!/bin/sh\necho "redis-server ran with $1"\n')
    fake.chmod(0o755)
    marker = tmp_path / "files-installed"
    script = plan.containers[0].command[2].replace(f"{CONF_DIR}/files-installed", str(marker))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    prefix = [BUSYBOX, "sh"] if shell == BUSYBOX else [shell]
    return [*prefix, "-c", script], marker, env


# busybox ash in the local image; dash is /bin/sh in Debian-based official images.
SHELLS = [BUSYBOX, *filter(None, [shutil.which("dash")])]


def _still_waiting(
    command: list[str], env: dict[str, str], seconds: float
) -> subprocess.Popen[str]:
    """The node's command started, and still waiting (Redis not started) `seconds` later."""
    node = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            node.wait(timeout=seconds)
    except BaseException:
        node.kill()
        raise
    return node


@pytest.mark.parametrize("shell", SHELLS)
def test_a_node_starts_redis_only_once_its_files_are_installed(
    make_topology: TopologyFactory, certificates_for: CertsFor, tmp_path: Path, shell: str
) -> None:
    plan = _plan(make_topology, certificates_for, "single")
    command, marker, env = _node_command(tmp_path, plan, shell)
    node = _still_waiting(command, env, 0.5)  # no marker yet
    try:
        marker.touch()
        out, _ = node.communicate(timeout=10)
    finally:
        node.kill()
    assert node.returncode == 0
    assert out.strip() == "redis-server ran with /etc/redis-infra/redis.conf"


@pytest.mark.parametrize("shell", SHELLS)
def test_a_node_still_waiting_for_its_files_stops_on_term(
    make_topology: TopologyFactory, certificates_for: CertsFor, tmp_path: Path, shell: str
) -> None:
    # As PID 1 (in the container) a shell ignores TERM unless it traps it, and docker
    # stop would wait 10 s. Not PID 1 here: the trap shows as exit 143, not death by -15.
    plan = _plan(make_topology, certificates_for, "single")
    command, _, env = _node_command(tmp_path, plan, shell)
    node = _still_waiting(command, env, 0.3)
    try:
        node.terminate()
        out, _ = node.communicate(timeout=5)
    finally:
        node.kill()
    assert node.returncode == 143
    assert out == ""


@pytest.mark.parametrize("shell", SHELLS)
def test_a_node_whose_files_never_come_exits_saying_why(
    make_topology: TopologyFactory,
    certificates_for: CertsFor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    shell: str,
) -> None:
    monkeypatch.setattr("infra.core.plan.FILES_WAIT_POLLS", 100)  # 2 s
    plan = _plan(make_topology, certificates_for, "single")
    command, _, env = _node_command(tmp_path, plan, shell)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 1  # its restart policy tries again; up reports the restart
    assert "no config files after 2 s: did the config job fail?" in done.stderr
    assert "redis-server ran" not in done.stdout
