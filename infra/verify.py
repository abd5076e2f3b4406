"""`redis-infra verify`: prove a running deployment works and is locked down.

What an operator wants to see after `up`: a real round trip through TLS as the
application user, and the doors that must stay shut actually shut.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

import redis
from infra.client import no_retry, node_client, tls_options
from infra.connection import ConnectionInfo, NodeAddress


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def _check(name: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(name, True, probe())
    except AssertionError as exc:
        return Check(name, False, str(exc))
    except (redis.RedisError, OSError) as exc:
        return Check(name, False, f"{type(exc).__name__}: {exc}")


def verify_node(info: ConnectionInfo, node: NodeAddress) -> list[Check]:
    """Checks against one data node reachable from this host."""
    assert node.host is not None and node.port is not None
    host, port = node.host, node.port

    def round_trip() -> str:
        app = node_client(info, node, retry=no_retry(), decode_responses=True)
        key = f"redis-infra:verify:{secrets.token_hex(4)}"
        assert app.set(key, "ok", ex=30), "SET was not acknowledged"
        assert app.get(key) == "ok", "GET did not return the value just written"
        app.delete(key)
        return f"SET/GET/DEL as '{info.users['app'].username}' over TLS ({host}:{port})"

    def app_denied() -> str:
        app = node_client(info, node, retry=no_retry())
        for command in (("FLUSHALL",), ("CONFIG", "GET", "dir"), ("KEYS", "*")):
            try:
                app.execute_command(*command)  # type: ignore[no-untyped-call]
            except redis.exceptions.NoPermissionError:
                continue
            raise AssertionError(f"the app user may run {command[0]}")
        return "app user refused FLUSHALL, CONFIG, KEYS"

    def anonymous_refused() -> str:
        anonymous = redis.Redis(
            host=host,
            port=port,
            protocol=2,
            retry=no_retry(),
            socket_timeout=5,
            **tls_options(info),
        )
        try:
            anonymous.ping()
        except redis.AuthenticationError:
            return "unauthenticated PING refused (default user off)"
        raise AssertionError("an unauthenticated client got an answer")

    def plaintext_refused() -> str:
        with socket.create_connection((host, port), timeout=5) as plain:
            plain.sendall(b"PING\r\n")
            plain.settimeout(5)
            try:
                reply = plain.recv(64)
            except (ConnectionResetError, TimeoutError):
                reply = b""
        assert b"PONG" not in reply, "a plaintext PING was answered"
        return "plaintext connection refused"

    def persistence() -> str:
        admin = node_client(info, node, role="admin", retry=no_retry(), decode_responses=True)
        stats = admin.info("persistence")
        policy = admin.config_get("maxmemory-policy")["maxmemory-policy"]
        role = admin.execute_command("ROLE")[0]  # type: ignore[no-untyped-call]
        assert stats["aof_enabled"] == 1, "AOF is off"
        return (
            f"role {role}, AOF on, last AOF write {stats['aof_last_write_status']}, policy {policy}"
        )

    return [
        _check("TLS round trip", round_trip),
        _check("least privilege", app_denied),
        _check("authentication", anonymous_refused),
        _check("TLS only", plaintext_refused),
        _check("persistence", persistence),
    ]


def verify(info: ConnectionInfo) -> list[Check]:
    """Checks for every published data node of the deployment."""
    results: list[Check] = []
    for node in info.data_nodes():
        if node.host is None:
            results.append(
                Check(f"{node.name}", False, "not published; cannot verify from this host")
            )
            continue
        results += [
            Check(f"{node.name}: {c.name}", c.passed, c.detail) for c in verify_node(info, node)
        ]
    return results
