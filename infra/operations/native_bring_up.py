"""The anchor for bring-up times: the same topology as native `redis-server` processes
on loopback, with the same TLS settings and the same readiness check, timed from the
first process spawned to ready.

Ready means what it means for `redis-infra up` (plan_specs.READY_MEANS): single, an
authenticated TLS PING; Sentinel, every sentinel sees the master, every replica
healthy and every other sentinel; Cluster, every node `cluster_state:ok`, knowing
every other and seeing each master's replica, every replica linked. Debian's
redis-tools ships the server as `redis-check-rdb` (the binary takes its role from its
name), so a `redis-server` link to it in a temporary folder runs it; nothing is
installed.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from infra.core.certs import ensure_certificates
from infra.core.errors import RedisInfraError
from infra.core.topology import load_topology
from infra.operations.observe_cluster import parse_cluster_nodes
from infra.operations.pinned_tls import pinned_client

SERVER_BINARIES = ("redis-server", "redis-check-rdb")
PASSWORD = "native-anchor-password-0123456789"  # noqa: S105 - throwaway processes on loopback
LOWEST_PORT = 10000
LOG_TAIL_LINES = 15


class AnchorError(RedisInfraError):
    """An anchor (native processes, Docker's floor) did not come up: no figure."""


@dataclass(frozen=True)
class NativeBringUp:
    kind: str
    nodes: int
    seconds_to_ready: float
    seconds_formation: float  # Cluster: redis-cli --cluster create; Sentinel: 0


def _server_binary() -> str:
    for name in SERVER_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("no redis-server (or redis-check-rdb) on PATH: install redis-tools")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_ports(count: int, *, with_bus: bool = False) -> list[int]:
    """Free loopback ports; `with_bus`: also port + 10000 (a Cluster node's bus). All
    below the kernel's ephemeral range: a port found free there can be taken by an
    outgoing connection before Redis binds it (a Cluster anchor's node once never
    came up)."""
    found: list[int] = []
    end = _ephemeral_low() - (10000 if with_bus else 0)
    start = random.randrange(LOWEST_PORT, max(LOWEST_PORT + 1, end - 2000))  # noqa: S311 - spreads concurrent runs
    for port in range(start, end):
        if _bindable(port) and (not with_bus or _bindable(port + 10000)):
            found.append(port)
            if len(found) == count:
                return found
    raise OSError("no free loopback ports for the native anchor")


class _Tls:
    def __init__(self, directory: Path, kind: str) -> None:
        topology = load_topology(kind, "native")
        bundle = ensure_certificates(topology, directory / "certs")
        node = next(iter(bundle.certificates.server_pems))
        self.ca = str(bundle.certificates.ca_file)
        self.cert = str(directory / "certs" / "nodes" / f"{node}.crt")
        self.key = str(directory / "certs" / "nodes" / f"{node}.key")

    def server_args(self) -> list[str]:
        return [
            "--tls-ca-cert-file", self.ca, "--tls-cert-file", self.cert,
            "--tls-key-file", self.key, "--tls-replication", "yes",
            "--tls-protocols", "TLSv1.2 TLSv1.3",
        ]  # fmt: skip

    def cli_args(self) -> list[str]:
        return ["--tls", "--cacert", self.ca, "--cert", self.cert, "--key", self.key]

    def client(self, port: int, password: str | None = PASSWORD) -> redis.Redis:
        """As `up`'s probes connect (pinned_tls): the same TLS cost per check."""
        return pinned_client(
            host="127.0.0.1", port=port, password=password, ssl=True, ssl_ca_certs=self.ca,
            ssl_certfile=self.cert, ssl_keyfile=self.key, socket_timeout=1,
            socket_connect_timeout=1,
        )  # fmt: skip


@dataclass(frozen=True)
class _Spawned:
    what: str  # "redis-server on port N", "sentinel on port N"
    process: subprocess.Popen[bytes]
    log: Path  # its stdout and stderr


@contextmanager
def _processes() -> Iterator[list[_Spawned]]:
    started: list[_Spawned] = []
    try:
        yield started
    finally:
        for spawned in started:
            spawned.process.kill()
        for spawned in started:
            spawned.process.wait(timeout=10)


def _log_tail(spawned: _Spawned) -> str:
    try:
        lines = spawned.log.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _until(check: Callable[[], bool], watched: list[_Spawned], timeout_s: float = 60.0) -> None:
    """Until `check` holds; fails at once, with its log, if a watched process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        for spawned in watched:
            if spawned.process.poll() is not None:
                raise AnchorError(
                    f"native anchor: the {spawned.what} exited ({spawned.process.returncode}); "
                    f"its log:\n{_log_tail(spawned)}"
                )
        time.sleep(0.02)
    tails = "\n".join(f"the {s.what}:\n{_log_tail(s)}" for s in watched)
    raise AnchorError(f"native anchor not ready within {timeout_s:.0f} s; logs:\n{tails}")


def _spawn(what: str, command: list[str], log: Path, started: list[_Spawned]) -> None:
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    started.append(_Spawned(what, process, log))


def measure_native(kind: str, *, masters: int = 3, node_timeout_ms: int = 5000) -> NativeBringUp:
    """Bring the topology up natively once and time it (the caller repeats for medians)."""
    with tempfile.TemporaryDirectory() as tmp, _processes() as started:
        directory = Path(tmp)
        tls = _Tls(directory, kind)
        server = directory / "redis-server"
        server.symlink_to(_server_binary())
        base = [str(server), "--port", "0", "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--requirepass", PASSWORD, "--masterauth", PASSWORD,
                # As the deployment's redis.conf: replicas sync at once, no 5 s wait.
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
                *tls.server_args()]  # fmt: skip

        def spawn(port: int, *extra: str) -> None:
            workdir = directory / str(port)
            workdir.mkdir()
            command = [*base, "--tls-port", str(port), "--dir", str(workdir), *extra]
            _spawn(f"redis-server on port {port}", command, workdir / "redis.log", started)

        if kind == "single":
            (port,) = _free_ports(1)
            began = time.monotonic()
            spawn(port)
            _until(lambda: bool(tls.client(port).ping()), started)
            return NativeBringUp(kind, 1, time.monotonic() - began, 0.0)
        if kind == "sentinel":
            return _sentinel(tls, spawn, started, directory, server)
        return _cluster(tls, spawn, started, masters, node_timeout_ms)


def _sentinel(
    tls: _Tls,
    spawn: Callable[..., None],
    started: list[_Spawned],
    directory: Path,
    server: Path,
) -> NativeBringUp:
    ports = _free_ports(6)
    data, sentinels = ports[:3], ports[3:]
    began = time.monotonic()
    spawn(data[0])
    for port in data[1:]:
        spawn(port, "--replicaof", "127.0.0.1", str(data[0]))
    # Seeded as the deployment's sentinel.conf is (its id, the replicas, its peers), so
    # the anchor converges as fast as Sentinel can, not after its 10 s INFO cycle.
    ids = {port: f"{port:040x}" for port in sentinels}
    for port in sentinels:
        config = directory / f"sentinel-{port}.conf"
        config.write_text(
            f"port 0\ntls-port {port}\nbind 127.0.0.1\ntls-replication yes\n"
            f"tls-ca-cert-file {tls.ca}\ntls-cert-file {tls.cert}\ntls-key-file {tls.key}\n"
            f"sentinel monitor mymaster 127.0.0.1 {data[0]} 2\n"
            f"sentinel auth-pass mymaster {PASSWORD}\n"
            "sentinel down-after-milliseconds mymaster 3000\n"
            f"sentinel myid {ids[port]}\n"
            + "".join(f"sentinel known-replica mymaster 127.0.0.1 {r}\n" for r in data[1:])
            + "".join(
                f"sentinel known-sentinel mymaster 127.0.0.1 {peer} {ids[peer]}\n"
                for peer in sentinels
                if peer != port
            )
        )
        _spawn(
            f"sentinel on port {port}",
            [str(server), str(config), "--sentinel"],
            directory / f"sentinel-{port}.log",
            started,
        )

    def converged() -> bool:
        for port in sentinels:
            client = tls.client(port, password=None)
            # redis-py parses both replies: SENTINEL MASTER a dict, REPLICAS a list of them.
            master: dict[str, Any] = client.sentinel_master("mymaster")  # type: ignore[assignment]
            flags = [replica["flags"] for replica in client.sentinel_slaves("mymaster")]
            # Peers reached, as `up` counts them (observe_sentinel.sentinel_view).
            peers: list[dict[str, Any]] = client.sentinel_sentinels("mymaster")  # type: ignore[assignment]
            reached = [p for p in peers if p["flags"] == "sentinel" and p["last-ping-sent"] == 0]
            if master["flags"] != "master" or len(reached) != 2 or flags != ["slave", "slave"]:
                return False
        return all(
            tls.client(port).info("replication").get("master_link_status") == "up"
            for port in data[1:]
        )

    _until(converged, started)
    return NativeBringUp("sentinel", 6, time.monotonic() - began, 0.0)


def _sees_every_replica(cluster_nodes: str, masters: int) -> bool:
    """As `redis-infra up` checks (observe_cluster.cluster_problems): this node sees
    `masters` masters serving slots, each with one healthy replica."""
    view = parse_cluster_nodes(cluster_nodes)
    serving = [peer.node_id for peer in view if peer.is_master and peer.slots > 0]
    replicas = [peer.master_id for peer in view if not peer.is_master and not peer.failing]
    return len(serving) == masters and all(replicas.count(m) == 1 for m in serving)


def _cluster(
    tls: _Tls,
    spawn: Callable[..., None],
    started: list[_Spawned],
    masters: int,
    node_timeout_ms: int,
) -> NativeBringUp:
    ports = _free_ports(masters * 2, with_bus=True)
    began = time.monotonic()
    for port in ports:
        spawn(port, "--cluster-enabled", "yes", "--cluster-node-timeout", str(node_timeout_ms),
              "--cluster-config-file", f"nodes-{port}.conf", "--tls-cluster", "yes")  # fmt: skip
    for port in ports:
        _until(lambda port=port: bool(tls.client(port).ping()), started)  # type: ignore[misc]
    formed = time.monotonic()
    subprocess.run(
        ["redis-cli", *tls.cli_args(), "-a", PASSWORD, "--no-auth-warning", "--cluster",
         "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "1",
         "--cluster-yes"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
    )  # fmt: skip
    formation = time.monotonic() - formed

    def ready() -> bool:
        for port in ports:
            client = tls.client(port)
            info = client.execute_command("CLUSTER", "INFO").decode()
            fields = dict(line.split(":", 1) for line in info.split("\r\n") if ":" in line)
            if fields.get("cluster_state") != "ok" or int(fields["cluster_known_nodes"]) != len(
                ports
            ):
                return False
            replication = client.info("replication")
            if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                return False
            nodes = client.execute_command("CLUSTER", "NODES").decode()
            if not _sees_every_replica(nodes, masters):
                return False
        return True

    _until(ready, started)
    return NativeBringUp("cluster", len(ports), time.monotonic() - began, formation)
