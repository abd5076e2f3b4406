"""The load path's connection: one TLS socket, commands packed once, replies by hiredis.

Under gevent, redis-py's `Redis` client costs ~135 us of CPU per request (a poll
per pool checkout, a gevent Timeout per read, pool bookkeeping, its command
layers), so a load process saturates itself long before Redis. This connection
does the least a client must: write the packed command, read until hiredis has
the reply. There is no per-read timeout either (each one is a gevent timer): a
`Watchdog` closes connections whose request has waited too long instead.
`import locust` (or gevent's monkey patching) must come first, as in the
locustfile, so `socket` cooperates with gevent.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any

import gevent
import hiredis

Address = tuple[str, int]


def pack(*parts: str | bytes | int | float) -> bytes:
    """One command in RESP."""
    encoded = [p if isinstance(p, bytes) else str(p).encode() for p in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(
        b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded
    )


class ReplyError(Exception):
    """Redis answered with an error (the message starts with its code: MOVED, OOM...)."""


def tls_context(ca_file: str, cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    """Server verified against the deployment's CA; the client certificate where one is
    required (single, Sentinel)."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file and key_file:
        context.load_cert_chain(cert_file, key_file)
    return context


class Connection:
    """One authenticated TLS connection to one node."""

    def __init__(
        self,
        address: Address,
        context: ssl.SSLContext,
        username: str,
        password: str,
        *,
        connect_timeout_s: float = 2.0,
    ) -> None:
        self.address = address
        raw = socket.create_connection(address, timeout=connect_timeout_s)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw, server_hostname=address[0])
        self.sock.settimeout(None)  # see the module's docstring: the watchdog times out
        self.reader = hiredis.Reader()
        self.waiting_since = 0  # perf_counter_ns of the request in flight, 0 when idle
        self.closed = False
        reply = self.request(pack("AUTH", username, password))
        if isinstance(reply, hiredis.ReplyError):
            self.close()
            raise ReplyError(f"AUTH as {username} refused by {address[0]}:{address[1]}: {reply}")

    def request(self, packed: bytes, replies: int = 1) -> Any:
        """Send `packed` (one command, or several pipelined) and read `replies` replies.

        Error replies come back as hiredis.ReplyError values, for the caller to judge
        (a redirect is not a failure).
        """
        self.waiting_since = time.perf_counter_ns()
        try:
            self.sock.sendall(packed)
            got: list[Any] = []
            while len(got) < replies:
                reply = self.reader.gets()
                if reply is False:
                    data = self.sock.recv(65536)
                    if not data:
                        raise ConnectionError(f"{self.address[0]}:{self.address[1]} closed")
                    self.reader.feed(data)
                    continue
                got.append(reply)
        except OSError:
            self.close()
            raise
        except ValueError as exc:  # the socket was closed under us: the watchdog fired
            if not self.closed:
                raise
            raise TimeoutError(
                f"{self.address[0]}:{self.address[1]} did not answer in time (watchdog)"
            ) from exc
        finally:
            self.waiting_since = 0
        return got[0] if replies == 1 else got

    def read_push(self) -> Any:
        """The next message pushed to a subscriber."""
        while (reply := self.reader.gets()) is False:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"{self.address[0]}:{self.address[1]} closed")
            self.reader.feed(data)
        return reply

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.close()


class Watchdog:
    """Closes connections whose request has waited longer than `timeout_s`: a paused or
    partitioned master then shows as errors, not as connections hung for good."""

    def __init__(self, timeout_s: float, period_s: float = 0.1) -> None:
        self.timeout_ns = int(timeout_s * 1e9)
        self.period_s = period_s
        self.connections: list[Connection] = []
        self.fired = 0
        self._greenlet = gevent.spawn(self._run)

    def watch(self, connection: Connection) -> Connection:
        self.connections = [c for c in self.connections if not c.closed]
        self.connections.append(connection)
        return connection

    def _run(self) -> None:
        while True:
            gevent.sleep(self.period_s)
            now = time.perf_counter_ns()
            for connection in self.connections:
                since = connection.waiting_since
                if since and now - since > self.timeout_ns:
                    self.fired += 1
                    connection.close()

    def stop(self) -> None:
        self._greenlet.kill(block=False)


def error_code(reply: object) -> str | None:
    """'MOVED', 'OOM'... for an error reply, None for any other reply."""
    if isinstance(reply, hiredis.ReplyError):
        return str(reply).split(" ", 1)[0]
    return None


def errors_in(replies: Sequence[object]) -> list[str]:
    return [str(reply) for reply in replies if isinstance(reply, hiredis.ReplyError)]
