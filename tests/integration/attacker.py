"""A compromised application: only what an application holds, and what it can do with it.

It holds the application's connection file (the `app` user and its password, the
client certificate and key, the CA) and may run a container on the deployment's
network. Nothing here reads the operator's files: an attack that needs them is not
an application's attack.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import socket
import ssl
import struct
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import redis
from infra.core.connection import ConnectionInfo, NodeAddress, read_connection_file
from infra.operations.client import (
    AddressMap,
    cluster_client,
    no_retry,
    node_client,
    sentinel_manager,
)
from infra.operations.drills.cluster import ClusterTarget
from infra.operations.drills.report import WriteOutcome, write_outcome
from infra.operations.drills.sentinel import SentinelTarget
from infra.operations.drills.writer import SequencedWriter, WriteLog


@dataclass
class Application:
    info: ConnectionInfo  # the application's file only: no operator credential in it
    engine: docker.DockerClient

    @classmethod
    def holding(cls, connection_file: Path, engine: docker.DockerClient) -> Application:
        return cls(read_connection_file(connection_file), engine)

    def client(self, node: NodeAddress | str | None = None, **options: Any) -> redis.Redis:
        target = node or self.info.data_nodes()[0]
        return node_client(self.info, target, retry=no_retry(), **options)

    def raw(self, node: NodeAddress | None = None) -> ssl.SSLSocket:
        """A TLS socket to a node, authenticated as the app user, for hand-made traffic."""
        address = node or self.info.data_nodes()[0]
        assert address.host is not None and address.port is not None
        context = ssl.create_default_context(cafile=self.info.tls.ca_file)
        if self.info.tls.cert_file and self.info.tls.key_file:
            context.load_cert_chain(self.info.tls.cert_file, self.info.tls.key_file)
        context.check_hostname = False
        tls = context.wrap_socket(socket.create_connection((address.host, address.port), 10))
        credentials = self.info.credentials("app")
        tls.sendall(_command("AUTH", credentials.username, credentials.password))
        assert tls.recv(16) == b"+OK\r\n"
        return tls

    def run_on_network(self, image: str, script: str, files: dict[str, bytes]) -> tuple[int, str]:
        """A container on the deployment's network running `script` with `files` under
        /probe (the application's certificate among them): its exit code and output."""
        container = self.engine.containers.create(
            image,
            ["sh", "-c", script],
            network=self.info.network,
            user="999:999",
            labels={"redis-infra.role": "attack-probe"},
        )
        try:
            container.put_archive("/", _archive({f"probe/{k}": v for k, v in files.items()}))
            container.start()
            exit_code = int(container.wait(timeout=60)["StatusCode"])
            return exit_code, container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)

    def tls_files(self) -> dict[str, bytes]:
        """Every TLS file the application holds, plus a certificate of its own making."""
        files = {"ca.crt": Path(self.info.tls.ca_file).read_bytes(), **self_signed("own")}
        if self.info.tls.cert_file and self.info.tls.key_file:
            files["app.crt"] = Path(self.info.tls.cert_file).read_bytes()
            files["app.key"] = Path(self.info.tls.key_file).read_bytes()
        return files


def hold_names(
    app: Application, node: NodeAddress, connections: int, length: int, per_batch: int = 16
) -> list[ssl.SSLSocket]:
    """`connections` connections, each named with `length` bytes by HELLO's SETNAME (no
    ACL check on HELLO in Redis 7.0). While a long argument is read, its query buffer
    is client memory and a burst of them gets clients evicted; once read, the name is
    not counted at all. So the names go `per_batch` at a time, with a pause for Redis
    to shrink the idle query buffers (clientsCron, about once a second per client)."""
    name = b"n" * length
    held = []
    for batch in range(0, connections, per_batch):
        for _ in range(min(per_batch, connections - batch)):
            sock = app.raw(node)
            sock.sendall(_command("HELLO", "2", "SETNAME", name))
            sock.settimeout(10)
            seen = b""
            while b"modules" not in seen:  # the last field of HELLO's reply
                data = sock.recv(4096)
                assert data and not data.startswith(b"-"), data[:200]
                seen += data
            held.append(sock)
        time.sleep(1.5)
    return held


def self_signed(name: str) -> dict[str, bytes]:
    """A key and a self-signed certificate, as anyone can make."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return {
        f"{name}.crt": certificate.public_bytes(pem),
        f"{name}.key": key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }


def _archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.uid, info.gid = len(data), 0o444, 999, 999
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _command(*parts: str | bytes) -> bytes:
    encoded = [p.encode() if isinstance(p, str) else p for p in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded)


def command(*parts: str | bytes) -> bytes:
    """One command in RESP, as a client would send it."""
    return _command(*parts)


# -- the cluster bus --------------------------------------------------------------------

BUS_HEADER = 2256  # sizeof(clusterMsg) without its data union (Redis 7.0, cluster.h)
FAIL = 3  # CLUSTERMSG_TYPE_FAIL


def forged_fail(sender_id: str, failing_id: str, port: int) -> bytes:
    """A cluster bus FAIL message claiming to come from `sender_id` (a real node: Redis
    7.0 believes the sender's name in the header on an inbound link)."""
    header = struct.pack(
        ">4sIHHHHQQQ40s2048s40s46sH30sHHHB3s",
        b"RCmb",
        BUS_HEADER + 40,  # totlen: header + clusterMsgDataFail
        1,  # protocol version
        port,
        FAIL,
        0,
        0,  # currentEpoch
        0,  # configEpoch
        0,  # replication offset
        sender_id.encode(),
        b"",  # no slots claimed
        b"",  # slaveof: none (a master)
        b"",  # myip
        0,  # extensions
        b"",
        0,  # pport
        port + 10000,  # cport
        1,  # flags: CLUSTER_NODE_MASTER
        0,  # state: ok
        b"",
    )
    assert len(header) == BUS_HEADER
    return header + failing_id.encode()


# -- the application's own writes, counted ----------------------------------------------


class _SingleTarget:
    def __init__(self, info: ConnectionInfo) -> None:
        self.client = node_client(info, info.data_nodes()[0], socket_timeout=0.5, retry=no_retry())
        self.node = info.data_nodes()[0].name

    def write(self, key: str, value: str) -> str | None:
        if self.client.set(key, value) is not True:
            raise redis.ResponseError("SET not acknowledged")
        return self.node

    def recover(self) -> None:
        self.client.connection_pool.disconnect()

    def close(self) -> None:
        self.client.close()


def _target(info: ConnectionInfo) -> Any:
    if info.topology == "sentinel":
        return SentinelTarget(info, socket_timeout=0.5)
    if info.topology == "cluster":
        client = cluster_client(info, socket_timeout=0.5, retry=no_retry())
        return ClusterTarget(client, AddressMap(info))
    return _SingleTarget(info)


def _reader(info: ConnectionInfo) -> tuple[Any, Any]:
    if info.topology == "sentinel":
        manager = sentinel_manager(info)
        client: Any = manager.master_for(str(info.service_name))
    elif info.topology == "cluster":
        client = cluster_client(info)
    else:
        client = node_client(info, info.data_nodes()[0])
    return (lambda keys: list(client.mget(list(keys)))), client


@contextlib.contextmanager
def acknowledged_writes(info: ConnectionInfo) -> Iterator[list[WriteOutcome]]:
    """Sequenced application writes (200/s, no retries) while the block runs; afterwards
    the outcome, counted against what the data holds (one hash tag: one Cluster slot)."""
    prefix = f"{{attack-{time.monotonic_ns() % 10**9}}}"
    writer = SequencedWriter(_target(info), prefix, rate_per_s=200, max_seconds=120).start()
    outcome: list[WriteOutcome] = []
    try:
        time.sleep(0.3)
        yield outcome
    finally:
        time.sleep(0.3)
        log: WriteLog = writer.stop()
        read, client = _reader(info)
        try:
            outcome.append(write_outcome(log, read, 0.3))
            keys = [log.key(r.seq) for r in log.records]
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
        finally:
            client.close()
